"""What `python -m bench lag` prints and draws: one table of the lags per workload and profile with what the
cuts did to the sentences and the goals met, the details the table leaves out, and the lags over the speech
(lag_sentences.png)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.harness.output import pyplot
from bench.lag.cuts import CLAUSE_END_TOLERANCE_S
from bench.lag.goals import goals_text, issue_23


def _pair(figures: Mapping[str, Any], key: str) -> str:
    lo, hi = figures.get(f"{key}_p50_s"), figures.get(f"{key}_p95_s")
    if lo is None or hi is None:
        return "–"
    return f"{lo:.2f} / {hi:.2f}"


def _cuts(figures: Mapping[str, Any]) -> tuple[str, str, str]:
    """Pieces per sentence (p50 / mean), words per piece (p50), cuts mid-clause (share, count/cuts)."""
    p50, mean = figures.get("pieces_per_sentence_p50"), figures.get("pieces_per_sentence_mean")
    words, share = figures.get("words_per_piece_p50"), figures.get("mid_clause_share")
    pieces = "–" if p50 is None or mean is None else f"{p50:.0f} / {mean:.1f}"
    mid = "–" if share is None else f"{share:.0%} ({figures['mid_clause_cuts']}/{figures['cuts']})"
    return pieces, "–" if words is None else f"{words:.1f}", mid


def table(results: Mapping[str, Any]) -> str:
    header = (
        f"{'workload':<22}{'profile':<12}{'start lag p50/p95':>19}{'end lag p50/p95':>17}"
        f"{'first audio p50/p95':>21}{'sentences':>11}{'failed/merged':>15}"
        f"{'pieces/sentence':>17}{'words/piece':>13}{'mid-clause cuts':>17}{'LLM/utt':>9}{'TTS/utt':>9}"
        "  goal met?"
    )
    lines = [header, "-" * (len(header) + 20)]
    for w in results["workloads"]:
        for profile, f in w["profiles"].items():
            failed = f["failed"] + f["captioned"] + f["not_placed"]
            unmet = [name for name, ok in f["goals"].items() if not ok]
            verdict = "yes" if not unmet else "no: " + ", ".join(unmet)
            first = _pair(f, "first") if w["turns"] else ""
            dropped = f"{failed}/{f['merged']}"
            pieces, words, mid = _cuts(f)
            asked = f.get("llm_requests_per_utterance")
            per = "–" if asked is None else f"{asked:.2f}"
            synthesized = f.get("tts_contexts_per_utterance")
            tts = "–" if synthesized is None else f"{synthesized:.2f}"
            lines.append(
                f"{w['title']:<22}{profile:<12}{_pair(f, 'start'):>19}{_pair(f, 'end'):>17}{first:>21}"
                f"{f['sentences']:>11}{dropped:>15}{pieces:>17}{words:>13}{mid:>17}{per:>9}{tts:>9}"
                f"  {verdict}"
            )
    lines.append(
        "pieces/sentence: p50 / mean of the source segments a script sentence was cut into; words/piece: "
        "p50 of the script's words in a segment;\nmid-clause cuts: segment ends inside a phrase, more than "
        f"{CLAUSE_END_TOLERANCE_S:g} s before its end (bench/lag/cuts.py); LLM/utt, TTS/utt: LLM "
        "requests and TTS contexts per utterance (a draft thrown away cost one of each)"
    )
    return "\n".join(lines)


def details(results: Mapping[str, Any]) -> str:
    """What the table leaves out: dropped, overlap, the growth check, the clock mapping check."""
    lines = []
    for w in results["workloads"]:
        for profile, f in w["profiles"].items():
            head = f"{w['title']}, {profile}:"
            lines.append(
                f"{head} {f['utterances']} utterances → {f['translations_heard']} translations heard; "
                f"failed {f['failed']}, captioned only {f['captioned']}, not placed {f['not_placed']}, "
                f"open {f['open']}, merged {f['merged']} (queue {f['merged_by_queue']}); "
                f"sentences not heard {f['unheard_sentences']}; overlaps {f['overlaps']}"
                f" (max {f['max_overlap_s'] * 1000:.0f} ms); order breaks {f['order_breaks']}; "
                f"speech-end mark − (audio start + caption end) p50 "
                f"{_ms(f['speech_end_offset_s']['p50'])}, max {_ms(f['speech_end_offset_s']['max'])}"
            )
            if drafts := f.get("drafts"):
                lines.append(
                    f"  drafts: used {drafts['used']}, changed {drafts['changed']}, discarded "
                    f"{drafts['discarded']}; {f['llm_requests']} LLM requests, "
                    f"{f.get('tts_contexts', '–')} TTS contexts"
                )
            if "start_slope_s_per_min" in f:
                first, last = f["first_minute"], f["last_minute"]
                lines.append(
                    f"  growth: start lag {f['start_slope_s_per_min']:+.3f} s/min, end lag "
                    f"{f['end_slope_s_per_min']:+.3f} s/min; first minute start/end p95 "
                    f"{_s(first['start_p95_s'])} / {_s(first['end_p95_s'])} s, last minute "
                    f"{_s(last['start_p95_s'])} / {_s(last['end_p95_s'])} s"
                )
    return "\n".join(lines)


def _s(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v * 1000:.0f} ms"


COLOURS = {
    "today": "tab:grey",
    "new": "tab:blue",
    "clause": "tab:orange",
    "flux": "tab:purple",
    "flux-eager": "tab:red",
    "flux-clause": "tab:green",
}


def draw(results: Mapping[str, Any], out: Path) -> list[str]:
    plt = pyplot()
    loads = results["workloads"]
    if not loads:
        return []
    fig, axes = plt.subplots(len(loads), 1, figsize=(8, 2.8 * len(loads)), squeeze=False)
    for ax, w in zip(axes[:, 0], loads, strict=True):
        for profile, f in w["profiles"].items():
            _plot_profile(ax, profile, f, turns=w["turns"])
        ax.set_title(w["title"])
        ax.set_xlabel("minutes into the speech")
        ax.set_ylabel("lag (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "lag_sentences.png", dpi=100)
    plt.close(fig)
    return ["lag_sentences.png"]


def _plot_profile(ax: Any, profile: str, f: Mapping[str, Any], *, turns: bool) -> None:
    """One profile's lags on a workload's axis: end and start lag per sentence, first audio per turn."""
    colour = COLOURS.get(profile, "tab:green")
    # today's hollow and larger, so both show where they coincide
    marker = (
        {"color": colour, "markersize": 3}
        if profile != "today"
        else {"color": colour, "markersize": 5, "markerfacecolor": "none"}
    )
    for key, style, extra in (("end", "o", {}), ("start", "^", {"alpha": 0.5})):
        pts = [p for p in f["points"] if p[f"{key}_lag_s"] is not None]
        xs, ys = [p[f"{key}_s"] / 60 for p in pts], [p[f"{key}_lag_s"] for p in pts]
        ax.plot(xs, ys, style, **marker, **extra, label=f"{profile}: {key} lag")
    if turns:
        fa = [p for p in f["first_audio_points"] if p[1] is not None]
        ax.plot([p[0] for p in fa], [p[1] for p in fa], "x", **marker, label=f"{profile}: first audio")


def report(results: Mapping[str, Any]) -> None:
    print()
    print(table(results))
    print()
    print(details(results))
    print()
    print(goals_text())
    print("issue 23:")
    for goal, shown, met in issue_23(results):
        verdict = "–" if met is None else ("met" if met else "not met")
        print(f"  {goal}: {verdict} ({shown})")
