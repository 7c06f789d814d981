"""The capacity sweep (`python -m bench capacity`, or `room capacity`): N rooms at once against one worker,
for each N of `--rooms`, until the listener's p95 rises too far, a room is refused, the participants fall
behind real time, or the machine's CPU saturates; CPU by process group, the worker's memory per room."""

from __future__ import annotations

import math
import os
import random
from typing import Any

from bench.harness.speech import dialogue
from bench.room.analysis import RunResult, latency_summary
from bench.room.rooms import Context, run_rooms

WITHIN_MS = 50  # a step keeps up while its listener p95 stays within this of one room's


async def workload_capacity(
    ctx: Context, steps: list[int], seconds: float, stop_ms: float, stagger_s: float
) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    base_p95: float | None = None
    stopped = ""
    for n in steps:
        rng = random.Random(ctx.model.seed + n)
        speech = [dialogue(max(1, int(seconds / 3.25)), random.Random(rng.random())) for _ in range(n)]
        result = await run_rooms(ctx, f"cap{n}", speech, stagger_s=stagger_s)
        s = latency_summary(result, ctx.model)
        s.pop("points")
        step = capacity_step(n, result, s)
        out.append(step)
        p95 = s["listener_e2e_ms"]["p95"]
        cpu = result.meter
        print(
            f"  capacity: {n} rooms ({result.dispatched} dispatched) → listener p95 {p95} ms, "
            f"worker {cpu['cores']['worker']:.2f} cores, machine {cpu['cores']['machine']:.2f}, "
            f"all served within {result.dispatch.get('ready_s_max')} s",
            flush=True,
        )
        if base_p95 is None and not math.isnan(p95):
            base_p95 = p95
        stopped = stop_reason(n, result, step, base_p95, stop_ms)
        if stopped:
            break
    return sweep_summary(out, base_p95, seconds, stopped)


def capacity_step(n: int, result: RunResult, s: dict[str, Any]) -> dict[str, Any]:
    """One step's figures: the rooms served, their latency, and what each room costs the worker."""
    cpu = result.meter
    worker_cores = cpu["cores"]["worker"]
    return {
        "rooms": n,
        "dispatched": result.dispatched,
        "refused": n - result.dispatched,
        "speaking_lag_s": s["speaking_lag_s"],
        "dispatch": result.dispatch,
        **{k: s[k] for k in ("outcomes", "at_pauses", "unmatched", "listener_e2e_ms", "worker_e2e_ms")},
        **{k: s[k] for k in ("sfu_added_ms", "uplink_ms", "downlink_ms", "overhead_ms")},
        "cpu_cores": cpu["cores"],
        # CPU-seconds per minute of a room talking (while all N talk at once)
        "worker_cpu_s_per_room_minute": round(worker_cores * 60 / result.dispatched, 2)
        if result.dispatched
        else None,
        "worker_cores_per_room": round(worker_cores / result.dispatched, 3) if result.dispatched else None,
        "worker_rss_mb": cpu["worker_rss_mb"],
        "worker_pss_mb": cpu["worker_pss_mb"],
        "window_s": cpu["seconds"],
    }


def stop_reason(
    n: int, result: RunResult, step: dict[str, Any], base_p95: float | None, stop_ms: float
) -> str:
    """Why the sweep stops after this step ("" to go on); a step the machine could not run is `broken`."""
    p95 = step["listener_e2e_ms"]["p95"]
    machine = result.meter["cores"]["machine"]
    if result.speaking_lag_s > 1.0 or math.isnan(p95):
        step["broken"] = True
        return (
            f"breakdown at {n} rooms: speakers {result.speaking_lag_s:.1f} s behind real time, "
            f"{step['at_pauses']} utterances matched (the machine cannot run the rooms and participants)"
        )
    if result.dispatched < n:
        return f"{n - result.dispatched} of {n} rooms not dispatched (refused)"
    if base_p95 is not None and p95 > base_p95 + stop_ms:
        return f"listener p95 {p95} ms > one room's {base_p95} + {stop_ms} ms"
    if machine >= 0.95 * (os.cpu_count() or 1):
        return f"the machine's CPU saturated ({machine} of {os.cpu_count()} cores busy)"
    return ""


def sweep_summary(
    out: list[dict[str, Any]], base_p95: float | None, seconds: float, stopped: str
) -> dict[str, Any]:
    """The sweep: its steps, the most rooms within WITHIN_MS of one room's p95, memory per extra room."""

    def over(s: dict[str, Any]) -> bool:
        p95 = s["listener_e2e_ms"]["p95"]
        return (
            bool(s.get("broken")) or math.isnan(p95) or (base_p95 is not None and p95 > base_p95 + WITHIN_MS)
        )

    within = [s["rooms"] for s in out if base_p95 is not None and s["refused"] == 0 and not over(s)]
    first_over = next((s["rooms"] for s in out if base_p95 is not None and over(s)), None)
    # memory per room: the worker tree's growth over the step with the fewest rooms, per extra room
    per_room_mb = None
    if len(out) >= 2 and out[-1]["dispatched"] > out[0]["dispatched"]:
        per_room_mb = round(
            (out[-1]["worker_pss_mb"] - out[0]["worker_pss_mb"])
            / (out[-1]["dispatched"] - out[0]["dispatched"]),
            1,
        )
    return {
        "seconds_per_room": seconds,
        "steps": out,
        "one_room_p95_ms": base_p95,
        "most_rooms_within_50ms_of_one": max(within, default=None),
        "first_rooms_over_50ms": first_over,
        "worker_pss_mb_per_extra_room": per_room_mb,
        "stopped": stopped or "the list of steps ended",
    }
