"""What the soak reports: the result (soak.json) from the samples and the speakers' counts (`soak_result`),
a row per sample as it is taken (`row`), and the summary printed at the end (`print_report`)."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from agent.telemetry.latency import LatencyTracker, format_table
from bench.soak.sampling import Sample, growth

if TYPE_CHECKING:
    from bench.soak.run import Soak


def soak_result(
    soak: Soak, tracker: LatencyTracker, heard: int, end_containers: dict[str, int | float], closed_tasks: int
) -> dict[str, Any]:
    """The run's result: what was fed and heard, memory, tasks and containers from the first sample to the
    last, what grew most between them, and the latency."""
    opts, stats = soak.options, list(soak.conductor.stats.values())
    start, end = soak.samples[0], soak.samples[-1]
    segments = sum(s.segments for s in stats)
    return {
        "options": {**asdict(opts), "latency": asdict(opts.latency)},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "speakers": [{k: v for k, v in asdict(s).items() if k != "open_bursts"} for s in stats],
        "simulated_s_per_speaker": end.sim_s,
        "simulated_speech_s_total": round(sum(s.audio_s for s in stats) - opts.warmup_s * len(stats), 1),
        "voiced_s_total": round(sum(s.voiced_s for s in stats), 1),
        "warmup_s_per_speaker": opts.warmup_s,
        "wall_s": end.wall_s,
        "speedup": round(end.sim_s / end.wall_s, 1) if end.wall_s else None,
        "segments_fed": segments,
        "utterances_heard": heard,
        "utterances_cut_short": sum(s.unmatched for s in stats),  # cut by STT_MAX_SEGMENT_S
        "one_utterance_per_segment": heard == segments and not any(s.unmatched for s in stats),
        "utterances_spoken": tracker.spoken,
        "utterances_failed": tracker.failed,
        "captions": asdict(soak.captions),
        "played_audio_s": {k: v for k, v in end_containers.items() if k.endswith(".played_audio_s")},
        "stalls": sum(s.stalls for s in stats),
        "rss_mb": {
            "start": start.rss_mb,
            "end": end.rss_mb,
            "delta": round(end.rss_mb - start.rss_mb, 1),
        },
        "tasks": {
            "before_session": soak.tasks_before_session,
            "start": start.tasks,
            "end": end.tasks,
            "after_close": closed_tasks,
        },
        "task_names": soak.task_names,
        "gc_objects": {"start": start.gc_objects, "end": end.gc_objects},
        "containers_end": end_containers,
        "type_growth": _type_growth(soak),
        "allocation_growth": _allocation_growth(soak),
        "samples": [asdict(s) for s in soak.samples],
        "latency_ms": tracker.summary_ms(),
    }


def _spans(samples: list[Sample]) -> list[tuple[Sample, Sample]]:
    """Where growth is told: start → end and middle → end."""
    start, middle, end = samples[0], samples[len(samples) // 2], samples[-1]
    return [(start, end), (middle, end)]


def _type_growth(soak: Soak) -> dict[str, list[dict[str, Any]]]:
    """The gc-tracked types that grew most (none without the censuses)."""
    out: dict[str, list[dict[str, Any]]] = {}
    if soak.censuses:
        for first, end in _spans(soak.samples):
            grown = growth(soak.censuses[first.label], soak.censuses[end.label])
            out[f"{first.label} → {end.label}"] = [{"type": t, "from": a, "to": b} for t, a, b in grown]
    return out


def _allocation_growth(soak: Soak) -> dict[str, list[dict[str, Any]]]:
    """The allocation sites that grew most (none unless tracemalloc traced)."""
    out: dict[str, list[dict[str, Any]]] = {}
    if soak.snapshots:
        for first, end in _spans(soak.samples):
            stats_diff = soak.snapshots[end.label].compare_to(soak.snapshots[first.label], "lineno")
            out[f"{first.label} → {end.label}"] = [
                {
                    "where": f"{d.traceback[0].filename}:{d.traceback[0].lineno}",
                    "size_diff_kb": round(d.size_diff / 1024, 1),
                    "count_diff": d.count_diff,
                    "size_kb": round(d.size / 1024, 1),
                }
                for d in stats_diff[:15]
            ]
    return out


def row(s: Sample, *, header: bool) -> str:
    c = s.containers
    pairs = [v for k, v in c.items() if ".context_pairs[" in k]
    played = sum(int(v) for k, v in c.items() if k.endswith(".mouth.played"))
    line = (
        f"{s.label:>8}{s.sim_s:>9.0f}{s.wall_s:>8.0f}{s.rss_mb:>9.1f}{s.tasks:>7}{s.gc_objects:>10}"
        f"{s.heard:>7}{s.spoken:>7}{s.failed:>6}{max(pairs, default=0):>6}{c['tracker.open']:>6}"
        f"{c['tracker.completed']:>7}{c['tracker.samples.max']:>8}{played:>8}"
    )
    if not header:
        return line
    head = (
        f"{'sample':>8}{'sim s':>9}{'wall s':>8}{'RSS MB':>9}{'tasks':>7}{'gc objs':>10}"
        f"{'heard':>7}{'spoken':>7}{'fail':>6}{'ctx':>6}{'open':>6}{'recs':>7}{'window':>8}{'played':>8}"
    )
    return head + "\n" + "-" * len(head) + "\n" + line


def print_report(r: dict[str, Any]) -> None:
    print()
    print(
        f"simulated: {r['simulated_s_per_speaker']:.0f} s per speaker × {len(r['speakers'])} speakers"
        f" = {r['simulated_speech_s_total']:.0f} s of speech audio ({r['voiced_s_total']:.0f} s voiced,"
        f" after a {r['warmup_s_per_speaker']:.0f} s warm-up);"
        f" wall {r['wall_s']:.0f} s ({r['speedup']}× real time)"
    )
    print(
        f"utterances: {r['segments_fed']} segments fed, {r['utterances_heard']} heard, "
        f"{r['utterances_spoken']} spoken, {r['utterances_failed']} failed; stalls {r['stalls']};"
        f" one utterance per segment: {r['one_utterance_per_segment']}"
        f" ({r['utterances_cut_short']} cut short of a pause)"
    )
    cap = r["captions"]
    print(
        f"captions: {cap['source_final']} source finals, {cap['translated_final']} translated finals, "
        f"{cap['interim']} interim; audio played per track (s): {r['played_audio_s']}"
    )
    rss, tasks = r["rss_mb"], r["tasks"]
    print(f"RSS MB: start {rss['start']}, end {rss['end']} (Δ {rss['delta']:+})")
    print(
        f"asyncio tasks: before the session {tasks['before_session']}, start {tasks['start']}, "
        f"end {tasks['end']}, after close {tasks['after_close']}"
    )
    print(f"gc objects: start {r['gc_objects']['start']}, end {r['gc_objects']['end']}")
    print("containers at the end:")
    for name, value in r["containers_end"].items():
        print(f"  {name:<44}{value}")
    for span, top in r["allocation_growth"].items():
        print(f"allocations (tracemalloc) that grew most {span}:")
        for a in top[:10]:
            print(f"  {a['where'][-70:]:<72}{a['size_diff_kb']:>+9.1f} KB{a['count_diff']:>+8} blocks")
    for span, grown in r["type_growth"].items():
        print(f"gc-tracked objects by type, most grown {span}:")
        for g in grown[:10]:
            print(f"  {g['type']:<60}{g['from']:>8} → {g['to']}")
    print("\nlatency (ms, sanity check only: the fakes answer in tens of ms):")
    print(format_table(r["latency_ms"]))
