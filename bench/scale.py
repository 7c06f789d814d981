"""The scale workload (`python -m bench scale`, one of the latency workloads of `bench/latency.py`): N
sessions at once in one process against the modelled providers, for each N of `--scale-sessions`; CPU time per
session-minute, peak memory, and the overhead over the modelled floor. Each step runs in a fresh process
(`python -m bench.scale MODEL_JSON SESSIONS SECONDS`, started here), so its CPU and peak memory are its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import aiohttp

from bench.harness.figures import UtteranceFigures, figures
from bench.harness.machine import MachineLoad, rss_mb
from bench.harness.model import LatencyModel
from bench.harness.modelled_providers import fetch_records, modelled_providers, reset_records
from bench.harness.session import ENDPOINTING_MS, bench_settings, run_session
from bench.harness.speech import dialogue
from bench.harness.stats import summary_ms

TARGET_P95_MS = 20.0  # the overhead a step must keep to count


async def scale_step(
    model: LatencyModel, sessions: int, seconds: float, settings: dict[str, str]
) -> dict[str, Any]:
    """N sessions at once in this process (the fakes run in another)."""
    async with modelled_providers(model, length_factor=1.1) as urls, aiohttp.ClientSession() as http:
        worker = bench_settings(urls, STT_ENDPOINTING_MS=str(ENDPOINTING_MS), **settings)
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
        runs = await asyncio.gather(*(run_session(worker, p, http, f"s{i}") for i, p in enumerate(pcms)))
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


def run_scale_step_in_child(
    model: LatencyModel, sessions: int, seconds: float, settings: dict[str, str]
) -> dict[str, Any]:
    """Each step in a fresh process, so CPU and peak memory are that step's alone."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.scale", json.dumps(model.as_dict()), str(sessions), f"{seconds}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_SETTINGS": json.dumps(settings)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def workload_scale(
    model: LatencyModel, steps: list[int], seconds: float, settings: dict[str, str]
) -> dict[str, Any]:
    results = []
    for n in steps:
        step = run_scale_step_in_child(model, n, seconds, settings)
        results.append(step)
        busy = step["machine"]["cpu_busy_share"]
        print(
            f"  scale: {n} sessions → overhead p95 {step['overhead_ms']['p95']} ms"
            f" (all cores {busy * 100:.0f}% busy)",
            flush=True,
        )
    ok = [s for s in results if s["overhead_ms"]["p95"] <= TARGET_P95_MS and s["failed"] == 0]
    cpu_per_session_minute = statistics.fmean(s["cpu_s_per_session_minute"] for s in results)
    return {
        "seconds_per_session": seconds,
        "steps": results,
        # all sessions of a step share one event loop on one core: the most that kept the target
        "most_sessions_within_20ms_p95": max((s["sessions"] for s in ok), default=0),
        "sessions_per_core_by_cpu": round(60 / cpu_per_session_minute, 1),
    }


def print_scale(s: dict[str, Any]) -> None:
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


def main() -> None:
    """One step, in the child: prints its figures as the last line."""
    logging.basicConfig(level=logging.ERROR)
    settings = json.loads(os.environ.get("BENCH_SETTINGS", "{}"))
    model = LatencyModel.from_dict(json.loads(sys.argv[1]))
    print(json.dumps(asyncio.run(scale_step(model, int(sys.argv[2]), float(sys.argv[3]), settings))))


if __name__ == "__main__":
    main()
