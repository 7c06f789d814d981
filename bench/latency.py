"""The latency workloads: the real three loops and plugins in this process against the fake providers on a
latency model (`bench/harness/model.py`), in real time.

    uv run python -m bench                      # dialogue, monologue and scale (about 20 minutes)
    uv run python -m bench dialogue monologue   # some of them (`python -m bench latency …` is the same)
    uv run python -m bench --monologue-minutes 2 --scale-sessions 1,5,10   # shorter
    uv run python -m bench dialogue --set STT_MAX_SEGMENT_S=0              # with a worker setting

- dialogue: short turns with pauses; per utterance, speech end → first translated frame, and the overhead
  over the modelled floor (the providers' time on the critical path), in all and per stage;
- monologue: continuous speech; the ear-voice lag of every source word over the talk, its drift, memory;
- scale (`bench/scale.py`): N sessions at once in one process; CPU per session-minute, memory, overhead.

Writes results.json, latency_cdf.png and lag.png to bench-results/ (`--out` another folder,
`--write-results` the committed bench/results/), and prints a table with the machine's load during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness.cli import (
    add_run_arguments,
    add_speech_arguments,
    command_parser,
    output_dir,
    worker_settings,
)
from bench.harness.figures import figures, overhead_summary
from bench.harness.machine import MachineLoad, rss_mb
from bench.harness.model import LatencyModel
from bench.harness.modelled_providers import fetch_records, modelled_providers
from bench.harness.output import plot_cdf, pyplot, summary_table, write_results
from bench.harness.session import ENDPOINTING_MS, bench_settings, run_session
from bench.harness.speech import dialogue, monologue
from bench.harness.stats import slope, summary_ms
from bench.scale import print_scale, workload_scale

WORKLOADS = ("dialogue", "monologue", "scale")


async def workload_dialogue(model: LatencyModel, utterances: int, settings: dict[str, str]) -> dict[str, Any]:
    pcm, _ = dialogue(utterances, random.Random(model.seed))
    async with modelled_providers(model, length_factor=1.1) as urls, aiohttp.ClientSession() as http:
        worker = bench_settings(urls, STT_ENDPOINTING_MS=str(ENDPOINTING_MS), **settings)
        run = await run_session(worker, pcm, http, "dialogue")
        records = await fetch_records(urls, http)
    figs = figures(run, records, model, endpointing_s=ENDPOINTING_MS / 1000)
    return {
        "utterances": len(run.tracker.completed),
        "joined": len(figs),
        "end_to_end_ms": summary_ms([f.end_to_end_s for f in figs]),
        **overhead_summary(figs),
        "waited_for_track": sum(1 for f in figs if f.track_busy_s > 0),
        "failed": run.tracker.failed,
        "points": [asdict(f) for f in figs],
    }


async def workload_monologue(
    model: LatencyModel, minutes: float, length_factor: float, settings: dict[str, str]
) -> dict[str, Any]:
    pcm, _ = monologue(minutes, random.Random(model.seed))
    rss: list[tuple[float, float]] = []
    async with (
        modelled_providers(model, length_factor=length_factor) as urls,
        aiohttp.ClientSession() as http,
    ):
        worker = bench_settings(urls, STT_ENDPOINTING_MS=str(ENDPOINTING_MS), **settings)
        sampler = asyncio.create_task(_sample_rss(rss))
        try:
            run = await run_session(worker, pcm, http, "monologue")
        finally:
            sampler.cancel()
        records = await fetch_records(urls, http)
    figs = figures(run, records, model, endpointing_s=ENDPOINTING_MS / 1000)
    lags = [point for f in figs for point in f.word_lags]  # every source word
    drift = slope(lags)
    spoken = [r for r in run.tracker.completed if r.outcome == "spoken"]
    return {
        "minutes": minutes,
        "length_factor": length_factor,
        "utterances": len(run.tracker.completed),
        "spoken": len(spoken),
        "failed": run.tracker.failed,
        "merged": run.merged,
        "lag_ms": summary_ms([lag for _, lag in lags]),  # per source word
        "last_word_lag_ms": summary_ms([f.ear_voice_s for f in figs if f.ear_voice_s is not None]),
        "drift_s_per_min": round(drift, 4),
        "speed_mean": round(statistics.fmean(f.speed for f in figs), 3) if figs else None,
        "end_to_end_ms": summary_ms([f.end_to_end_s for f in figs]),
        "overhead_ms": summary_ms([f.overhead_s for f in figs]),
        "rss_mb": [(round(t, 1), round(m, 1)) for t, m in rss],
        "lag_points": lags,
    }


async def _sample_rss(out: list[tuple[float, float]]) -> None:
    t0 = time.perf_counter()
    while True:
        out.append(((time.perf_counter() - t0) / 60, rss_mb()))
        await asyncio.sleep(10)


def print_report(results: dict[str, Any]) -> None:
    if d := results.get("dialogue"):
        print("\nDialogue: speech end → first translated frame (ms)")
        rows = [(name[:-3], d[name]) for name in ("end_to_end_ms", "floor_ms", "overhead_ms")]
        rows += [
            (f"  {name.removesuffix('_over_s').removesuffix('_s')}", s)
            for name, s in d["overhead_by_stage_ms"].items()
        ]
        summary_table(rows, 12)
    if m := results.get("monologue"):
        lag = m["lag_ms"]
        print(f"\nMonologue ({m['minutes']} min, translation {m['length_factor']}× longer):")
        drift = m["drift_s_per_min"]
        print(f"  ear-voice lag per word p50 {lag['p50']} ms, p95 {lag['p95']} ms; drift {drift} s/min")
        last = m["last_word_lag_ms"]
        print(f"  (at each utterance's last word: p50 {last['p50']} ms, p95 {last['p95']} ms)")
        print(
            f"  mean speaking rate {m['speed_mean']}; utterances {m['spoken']} spoken, {m['failed']} failed"
        )
        print(f"  memory (RSS MB, start → end): {m['rss_mb'][0][1]} → {m['rss_mb'][-1][1]}")
    if s := results.get("scale"):
        print_scale(s)


def draw(results: dict[str, Any], out_dir: Path) -> list[str]:
    plt = pyplot()
    drawn = []
    if d := results.get("dialogue"):
        fig, ax = plt.subplots(figsize=(7, 4))
        series = [
            ([p["end_to_end_s"] for p in d["points"]], "measured end to end"),
            ([p["floor_s"] for p in d["points"]], "modelled floor (providers, or the track still busy)"),
        ]
        plot_cdf(ax, series, "Dialogue latency CDF")
        fig.tight_layout()
        fig.savefig(out_dir / "latency_cdf.png", dpi=110)
        plt.close(fig)
        drawn.append("latency_cdf.png")
    if m := results.get("monologue"):
        fig, ax = plt.subplots(figsize=(7, 4))
        xs, ys = zip(*m["lag_points"], strict=True) if m["lag_points"] else ((), ())
        ax.plot(xs, ys, ".", markersize=2, label="ear-voice lag per source word")
        ax.axhline(2.0, color="red", linestyle="--", linewidth=1, label="target p95 2.0 s")
        ax.set_xlabel("minutes into the monologue")
        ax.set_ylabel("lag (s): word said → its translation heard")
        ax.set_title(f"Monologue lag over time (translation {m['length_factor']}× longer)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "lag.png", dpi=110)
        plt.close(fig)
        drawn.append("lag.png")
    return drawn


def parse(argv: list[str]) -> argparse.Namespace:
    parser = command_parser("latency", __doc__)
    add_speech_arguments(parser, WORKLOADS, monologue_minutes=10.0, length_factor=1.25)
    parser.add_argument("--scale-sessions", default="1,10,20,30,40", help="comma-separated steps")
    parser.add_argument("--scale-seconds", type=float, default=60.0)
    add_run_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse(argv)
    settings = worker_settings(args)
    logging.basicConfig(level=logging.ERROR)

    out = output_dir(args)
    model = LatencyModel.from_args(args)
    load = MachineLoad()
    results: dict[str, Any] = {"model": model.as_dict()}
    if "dialogue" in args.workloads:
        print("running the dialogue workload…", flush=True)
        results["dialogue"] = asyncio.run(workload_dialogue(model, args.dialogue_utterances, settings))
    if "monologue" in args.workloads:
        print("running the monologue workload…", flush=True)
        results["monologue"] = asyncio.run(
            workload_monologue(model, args.monologue_minutes, args.length_factor, settings)
        )
    if "scale" in args.workloads:
        print("running the scale workload…", flush=True)
        steps = [int(n) for n in args.scale_sessions.split(",")]
        results["scale"] = workload_scale(model, steps, args.scale_seconds, settings)
    write_results(out, "results.json", results, load, draw=draw, report=print_report)
