"""What `python -m bench fleet` prints (each scenario's table, the goals beside the figures) and draws
(fleet.png: request → at work per room in each burst; back at work after a worker was killed; a deploy's
room as the listener heard it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness.output import pyplot


def seconds(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f}"


def trio(s: dict[str, Any]) -> str:
    """p50 / p95 / max of a spread (`figures.spread`)."""
    return " / ".join(seconds(s[k]) for k in ("p50", "p95", "max"))


def verdict(g: dict[str, Any]) -> str:
    return f"{'met' if g['met'] else 'NOT met'} ({g['goal']})"


def cut_text(c: dict[str, int] | None) -> str:
    if not c:
        return "-"
    return (
        f"{c.get('lost', 0)}/{c.get('sentences', 0)} lost ({c.get('lost_words', 0)} of "
        f"{c.get('words', 0)} words), {c.get('doubled', 0)} doubled, {c.get('merged', 0)} merged"
    )


def trouble(run: dict[str, Any]) -> None:
    placed = run.get("placed", {})
    print(
        f"      source captions placed by their length {placed.get('by_length', 0)}, by time "
        f"{placed.get('by_time', 0)}, not at all {placed.get('unplaced', 0)}"
    )
    if lag := run.get("observer_lag_s"):
        print(
            f"      the benchmark's own event loop ran late by p95 {seconds(lag['p95'])} / max "
            f"{seconds(lag['max'])} s: what its participants saw, they saw as late at most"
        )
    if rooms := run.get("rooms_in_trouble"):
        print(
            f"      WARNING: the benchmark's own speaker or listener fell behind or lost its connection in "
            f"{', '.join(rooms)}: the machine could not run them, these figures are not the interpreter's"
        )


def print_report(results: dict[str, Any]) -> None:
    if runs := results.get("burst"):
        lost_after = results["sizes"]["lost_after_s"]
        print(
            f"\nBurst: rooms asking within one second (lost: none at work {lost_after} s after its request)"
        )
        print("  s from each room's request: joined / at work (lk.agent.state listening), p50 / p95 / max")
        for r in runs:
            print(
                f"  {r['workers']} worker(s), {r['mode']:>5}: {r['interpreted']}/{r['rooms']} interpreted, "
                f"{r['lost']} lost, {r['doubled']} doubled (longest {r['longest_doubled_s']} s); "
                f"joined {trio(r['joined_s'])}; at work {trio(r['listening_s'])}"
            )
            print(f"      sentences: all {cut_text(r['cuts'])}; once at work {cut_text(r['cuts_at_work'])}")
            print(f"      goal: {verdict(r['goal'])}")
            trouble(r)
    for name, title in (
        ("kill", "A worker killed (SIGKILL of its process tree)"),
        ("deploy", "A deploy (SIGTERM)"),
    ):
        if e := results.get(name):
            served = f"{e['served_before']} interpreted before"
            print(f"\n{title}, a second worker registered: {e['rooms']} rooms, {served}")
            print(
                f"  another interpreter at work after {trio(e['back_s'])} s (p50 / p95 / max; "
                f"{e['never_back']} never within {e['window_s']} s); {e['doubled']} rooms doubled"
            )
            print(f"  sentences from {2:g} s before on: {cut_text(e['cuts'])}")
            print(
                f"  longest silence heard that the original did not have: {e['gap_s']} s "
                f"(before the {name}: {e['usual_gap_s']} s at most)"
            )
            print(f"  goal: {verdict(e['goal'])}")
            trouble(e)


def draw(results: dict[str, Any], out: Path) -> list[str]:
    panels = [k for k in ("burst", "kill", "deploy") if results.get(k)]
    if not panels:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, name in zip(axes[0], panels, strict=True):
        {"burst": draw_burst, "kill": draw_back, "deploy": draw_deploy}[name](ax, results)
    fig.tight_layout()
    fig.savefig(out / "fleet.png", dpi=110)
    plt.close(fig)
    return ["fleet.png"]


def draw_burst(ax: Any, results: dict[str, Any]) -> None:
    lost_after = results["sizes"]["lost_after_s"]
    for x, run in enumerate(results["burst"]):
        rows = run["per_room"]
        xs = [x + 0.3 * (i / max(1, len(rows) - 1) - 0.5) for i in range(len(rows))]  # side by side
        values = [lost_after if r["lost"] else r["listening_s"] for r in rows]
        ax.scatter(xs, values, marker="o", alpha=0.6)
        lost = [(x, v) for x, v, r in zip(xs, values, rows, strict=True) if r["lost"]]
        ax.scatter([x for x, _ in lost], [v for _, v in lost], marker="x", color="red", s=60)
    ax.axhline(3.0, color="green", ls=":", lw=1, label="goal: p95 ≤ 3 s")
    ax.set_xticks(range(len(results["burst"])))
    ax.set_xticklabels(
        [f"{r['workers']} worker{'s' * (r['workers'] > 1)}\n{r['mode']}" for r in results["burst"]]
    )
    ax.set_ylabel("request → interpreter at work (s); × lost")
    ax.set_title(f"Burst of {results['sizes']['rooms']} rooms within 1 s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def draw_back(ax: Any, results: dict[str, Any]) -> None:
    e = results["kill"]
    window = e["window_s"]
    rows = e["per_room"]
    values = [window if r["back_s"] is None else r["back_s"] for r in rows]
    colors = ["red" if r["back_s"] is None else "tab:blue" for r in rows]
    ax.bar(range(len(rows)), values, color=colors)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["room"].rsplit("-", 1)[-1] for r in rows])
    ax.axhline(10.0, color="green", ls=":", lw=1, label="goal: p95 ≤ 10 s")
    ax.set_xlabel("room (red: none back within the window)")
    ax.set_ylabel("worker killed → another interpreter at work (s)")
    ax.set_title("A worker killed, a second registered")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def draw_deploy(ax: Any, results: dict[str, Any]) -> None:
    """The first room of the deploy: what the speaker said, what the listener heard, who was in the room."""
    e = results["deploy"]
    room = e["records"][0]
    rows = [("speaker", room["sentences"], "tab:gray"), ("listener heard", room["loud"], "tab:blue")]
    for i in room["interpreters"]:
        end = i["left"] if i["left"] is not None else room["ended"]
        rows.append((f"interpreter {i['identity'][-6:]}", [(i["joined"], end)], "tab:orange"))
        if i["draining"] is not None:
            ax.plot([i["draining"]], [len(rows) - 1], "k|", ms=14)
    for y, (_, spans, color) in enumerate(rows):
        ax.broken_barh([(a, b - a) for a, b in spans], (y - 0.35, 0.7), color=color)
    ax.axvline(e["at_s"], color="red", lw=1, label="SIGTERM")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[0] for r in rows], fontsize=8)
    ax.set_xlabel("s since the scenario began")
    ax.set_title(f"A deploy: room 1 of {e['rooms']} (longest gap {e['gap_s']} s)")
    ax.legend(fontsize=8)
