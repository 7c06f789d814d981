"""The latency benchmark: the real three loops and plugins against fake providers on a latency model.

    uv run python -m bench                      # all workloads (about 20 minutes, real time)
    uv run python -m bench dialogue monologue   # some of them
    uv run python -m bench --monologue-minutes 2 --scale-sessions 1,5,10   # shorter
    uv run python -m bench room --help          # through a real LiveKit server (bench/room/rooms.py)
    uv run python -m bench lag --help           # per-sentence lags, today's behaviour against the new one

Writes results.json, latency_cdf.png and lag.png to bench-results/ (`--out` another folder,
`--write-results` the committed bench/results/), and prints a table with the machine's load during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness.cli import add_output_arguments, add_settings_argument, output_dir, worker_settings
from bench.harness.figures import UtteranceFigures, figures, overhead_summary
from bench.harness.machine import MachineLoad, rss_mb
from bench.harness.model import LatencyModel, add_model_arguments
from bench.harness.modelled_providers import fetch_records, modelled_providers, reset_records
from bench.harness.output import plot_cdf, pyplot, summary_table, write_results
from bench.harness.session import ENDPOINTING_MS, bench_settings, run_session
from bench.harness.speech import dialogue, monologue
from bench.harness.stats import slope, summary_ms

# worker settings for the run, as environment variables (e.g. `--set STT_MAX_SEGMENT_S=1.0`)
SETTINGS: dict[str, str] = {}


async def workload_dialogue(model: LatencyModel, utterances: int) -> dict[str, Any]:
    pcm, _ = dialogue(utterances, random.Random(model.seed))
    async with modelled_providers(model, length_factor=1.1) as urls, aiohttp.ClientSession() as http:
        settings = bench_settings(urls, STT_ENDPOINTING_MS=str(ENDPOINTING_MS), **SETTINGS)
        run = await run_session(settings, pcm, http, "dialogue")
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


async def workload_monologue(model: LatencyModel, minutes: float, length_factor: float) -> dict[str, Any]:
    pcm, _ = monologue(minutes, random.Random(model.seed))
    rss: list[tuple[float, float]] = []
    async with (
        modelled_providers(model, length_factor=length_factor) as urls,
        aiohttp.ClientSession() as http,
    ):
        settings = bench_settings(urls, STT_ENDPOINTING_MS=str(ENDPOINTING_MS), **SETTINGS)
        sampler = asyncio.create_task(_sample_rss(rss))
        try:
            run = await run_session(settings, pcm, http, "monologue")
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


async def scale_step(model: LatencyModel, sessions: int, seconds: float) -> dict[str, Any]:
    """N sessions at once in this process (the fakes run in another)."""
    async with modelled_providers(model, length_factor=1.1) as urls, aiohttp.ClientSession() as http:
        settings = bench_settings(urls, STT_ENDPOINTING_MS=str(ENDPOINTING_MS), **SETTINGS)
        base_rss = rss_mb()
        peak = [base_rss]

        async def watch() -> None:
            while True:
                peak.append(rss_mb())
                await asyncio.sleep(1)

        watcher = asyncio.create_task(watch())
        load = MachineLoad()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        rng = random.Random(model.seed)
        pcms = [dialogue(int(seconds / 3.2) + 1, random.Random(rng.random()))[0] for _ in range(sessions)]
        runs = await asyncio.gather(*(run_session(settings, p, http, f"s{i}") for i, p in enumerate(pcms)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        machine = load.figures()
        watcher.cancel()
        records = await fetch_records(urls, http)
        await reset_records(urls, http)
    figs: list[UtteranceFigures] = []
    for run in runs:
        figs += figures(run, records, model, endpointing_s=ENDPOINTING_MS / 1000)
    minutes = sum(p.duration for p in pcms) / 60
    return {
        "sessions": sessions,
        "session_minutes": round(minutes, 2),
        "cpu_s_per_session_minute": round(cpu / minutes, 3),
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "peak_rss_mb": round(max(peak), 1),
        "rss_per_session_mb": round((max(peak) - base_rss) / sessions, 2),
        "overhead_ms": summary_ms([f.overhead_s for f in figs]),
        "failed": sum(r.tracker.failed for r in runs),
        "machine": machine,  # the load this step's figures were measured under
    }


def run_scale_step_in_child(model: LatencyModel, sessions: int, seconds: float) -> dict[str, Any]:
    """Each step in a fresh process, so CPU and peak memory are that step's alone."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.latency",
            "_scale_step",
            json.dumps(model.as_dict()),
            str(sessions),
            f"{seconds}",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_SETTINGS": json.dumps(SETTINGS)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def workload_scale(model: LatencyModel, steps: list[int], seconds: float) -> dict[str, Any]:
    results = []
    for n in steps:
        step = run_scale_step_in_child(model, n, seconds)
        results.append(step)
        busy = step["machine"]["cpu_busy_share"]
        print(
            f"  scale: {n} sessions → overhead p95 {step['overhead_ms']['p95']} ms"
            f" (all cores {busy * 100:.0f}% busy)",
            flush=True,
        )
    ok = [s for s in results if s["overhead_ms"]["p95"] <= 20.0 and s["failed"] == 0]
    cpu_per_session_minute = statistics.fmean(s["cpu_s_per_session_minute"] for s in results)
    return {
        "seconds_per_session": seconds,
        "steps": results,
        # all sessions of a step share one event loop on one core: the most that kept the target
        "most_sessions_within_20ms_p95": max((s["sessions"] for s in ok), default=0),
        "sessions_per_core_by_cpu": round(60 / cpu_per_session_minute, 1),
    }


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
        print("\nScale (sessions in one worker process):")
        print(
            f"{'sessions':>9}{'cpu s/sess-min':>16}{'core use':>10}{'MB/session':>12}{'overhead p95':>14}"
            f"{'machine busy':>14}{'load 1m':>9}"
        )
        for step in s["steps"]:
            machine = step.get("machine", {})
            busy = machine.get("cpu_busy_share")
            print(
                f"{step['sessions']:>9}{step['cpu_s_per_session_minute']:>16}{step['cpu_share_of_one_core']:>10}"
                f"{step['rss_per_session_mb']:>12}{step['overhead_ms']['p95']:>14}"
                f"{'?' if busy is None else f'{busy * 100:.0f}%':>14}"
                f"{machine.get('loadavg_after', ['?'])[0]:>9}"
            )
        print(f"  most sessions with overhead p95 ≤ 20 ms: {s['most_sessions_within_20ms_p95']}")
        print(f"  sessions per core by CPU time: {s['sessions_per_core_by_cpu']}")
        print("  (figures at saturation move with the machine's load: compare runs only under like load)")


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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "room":  # through a real LiveKit server: bench/room/rooms.py
        from bench.room.rooms import main as room_main

        room_main(sys.argv[2:])
        return
    if (
        len(sys.argv) > 1 and sys.argv[1] == "lag"
    ):  # per-sentence lags, today against new: bench/lag/workload.py
        from bench.lag.workload import main as lag_main

        lag_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_scale_step":
        logging.basicConfig(level=logging.ERROR)
        SETTINGS.update(json.loads(os.environ.get("BENCH_SETTINGS", "{}")))
        model = LatencyModel.from_dict(json.loads(sys.argv[2]))
        print(json.dumps(asyncio.run(scale_step(model, int(sys.argv[3]), float(sys.argv[4])))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workloads", nargs="*", default=["dialogue", "monologue", "scale"])
    parser.add_argument("--dialogue-utterances", type=int, default=60)
    parser.add_argument("--monologue-minutes", type=float, default=10.0)
    parser.add_argument("--length-factor", type=float, default=1.25, help="translated/original speech length")
    parser.add_argument("--scale-sessions", default="1,10,20,30,40", help="comma-separated steps")
    parser.add_argument("--scale-seconds", type=float, default=60.0)
    add_model_arguments(parser)
    add_output_arguments(parser)
    add_settings_argument(parser)
    args = parser.parse_args()
    SETTINGS.update(worker_settings(args))
    logging.basicConfig(level=logging.ERROR)

    out = output_dir(args)
    model = LatencyModel.from_args(args)
    load = MachineLoad()
    results: dict[str, Any] = {"model": model.as_dict()}
    if "dialogue" in args.workloads:
        print("running the dialogue workload…", flush=True)
        results["dialogue"] = asyncio.run(workload_dialogue(model, args.dialogue_utterances))
    if "monologue" in args.workloads:
        print("running the monologue workload…", flush=True)
        results["monologue"] = asyncio.run(
            workload_monologue(model, args.monologue_minutes, args.length_factor)
        )
    if "scale" in args.workloads:
        print("running the scale workload…", flush=True)
        steps = [int(n) for n in args.scale_sessions.split(",")]
        results["scale"] = workload_scale(model, steps, args.scale_seconds)
    write_results(out, "results.json", results, load, draw=draw, report=print_report)


if __name__ == "__main__":
    main()
