"""The hall's table, its goals and its picture (`hall.png`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness.output import pyplot

END_P95_SLACK_S = 0.150  # at 5 % loss and at 20 dB noise, end-lag p95 within this of clean
HELD_CONDITIONS = ("loss 5 %", "hum 20 dB", "babble 20 dB")  # no more mid-word cuts, end lag held
COLUMNS = ("speech", "condition", "utterances", "echoes", "doubles", "mid-word", "missing",
           "start p50", "start p95", "end p50", "end p95")  # fmt: skip


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _lag(row: dict[str, Any], clean: dict[str, Any] | None, key: str) -> str:
    value = row.get(key)
    if clean is None or row is clean or value is None or clean.get(key) is None:
        return _ms(value)
    return f"{_ms(value)} ({(value - clean[key]) * 1000:+.0f})"


def rows(results: dict[str, Any]) -> list[list[str]]:
    out = []
    for speech, conditions in results["runs"].items():
        clean = conditions.get("clean")
        for name, row in conditions.items():
            out.append(
                [
                    speech,
                    name,
                    str(row["utterances"]),
                    str(row["echoes"]),
                    str(row["doubles"]),
                    f"{row['mid_word']}/{row['cuts']}",
                    f"{row['missing_words']}/{row['script_words']}",
                    *(_lag(row, clean, k) for k in ("start_p50_s", "start_p95_s", "end_p50_s", "end_p95_s")),
                ]
            )
    return out


def goals(results: dict[str, Any]) -> list[tuple[str, bool]]:
    """Each goal of issue 22 and whether this run met it."""
    out = []
    for speech, conditions in results["runs"].items():
        out.append((f"{speech}: 0 echoes interpreted", all(r["echoes"] == 0 for r in conditions.values())))
        out.append(
            (f"{speech}: 0 sentences interpreted twice", all(r["doubles"] == 0 for r in conditions.values()))
        )
        clean = conditions.get("clean")
        if clean is None:
            continue
        for name in HELD_CONDITIONS:
            row = conditions.get(name)
            if row is None:
                continue
            out.append((f"{speech}, {name}: mid-word cuts ≤ clean's", row["mid_word"] <= clean["mid_word"]))
            end, base = row["end_p95_s"], clean["end_p95_s"]
            held = end is not None and base is not None and end <= base + END_P95_SLACK_S
            out.append((f"{speech}, {name}: end-lag p95 within +150 ms of clean", held))
    return out


def report(results: dict[str, Any]) -> None:
    repeats = {row.get("runs", 1) for conditions in results["runs"].values() for row in conditions.values()}
    print(
        "\nlags in ms, (delta against clean); mid-word: cuts mid-word/cuts; missing: script words missing/all"
        f"; runs of each condition, pooled: {'/'.join(map(str, sorted(repeats)))}"
    )
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows(results):
        print("| " + " | ".join(row) + " |")
    for reason in results.get("skipped", []):
        print(f"not run: {reason}")
    print("\ngoals:")
    for goal, met in goals(results):
        print(f"  [{'met' if met else 'NOT met'}] {goal}")


def draw(results: dict[str, Any], out: Path) -> list[str]:
    plt = pyplot()
    speeches = list(results["runs"])
    fig, axes = plt.subplots(2, len(speeches), figsize=(6.5 * len(speeches), 7.5), squeeze=False)
    for col, speech in enumerate(speeches):
        conditions = results["runs"][speech]
        names = list(conditions)
        x = range(len(names))
        lag = axes[0][col]
        for offset, key, label in ((-0.2, "end_p50_s", "end lag p50"), (0.2, "end_p95_s", "end lag p95")):
            values = [(conditions[n][key] or 0.0) * 1000 for n in names]
            lag.bar([i + offset for i in x], values, width=0.4, label=label)
        if "clean" in conditions and conditions["clean"]["end_p95_s"] is not None:
            lag.axhline((conditions["clean"]["end_p95_s"] + END_P95_SLACK_S) * 1000, color="red", lw=0.8,
                        ls="--", label="clean p95 + 150 ms")  # fmt: skip
        lag.set_title(f"{speech}: end lag (ms)")
        lag.set_xticks(list(x), names, rotation=35, ha="right", fontsize=8)
        lag.legend(fontsize=8)
        counts = axes[1][col]
        keys = (("echoes", "echoes interpreted"), ("doubles", "interpreted twice"),
                ("mid_word", "mid-word cuts"), ("missing_words", "words missing"))  # fmt: skip
        for j, (key, label) in enumerate(keys):
            counts.bar(
                [i + (j - 1.5) * 0.2 for i in x], [conditions[n][key] for n in names], width=0.2, label=label
            )
        counts.set_title(f"{speech}: what went wrong (count)")
        counts.set_xticks(list(x), names, rotation=35, ha="right", fontsize=8)
        counts.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "hall.png", dpi=110)
    plt.close(fig)
    return ["hall.png"]
