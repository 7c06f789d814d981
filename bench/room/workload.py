"""The benchmark through a real LiveKit server: `python -m bench room`.

    uv run python -m bench room                                   # dialogue, monologue, capacity
    uv run python -m bench room dialogue --dialogue-utterances 10 # one workload, shorter
    uv run python -m bench room capacity --rooms 1,2,4 --room-seconds 30
    uv run python -m bench capacity --rooms 1,2,4 --room-seconds 30      # the same

The worker runs as production runs it (`python -m agent start`, a subprocess registered with a real
`livekit-server`, one job process per room), its providers the fakes of `python -m bench` on the latency
model in a process of their own. In each room a speaker participant says the synthetic speech of
`bench.harness.speech` into a microphone track (Opus through the SFU) and a listener participant subscribes to
`interpretation-es` (Opus, jitter buffer and all) and records every frame with its arrival time.

Figures, all on one clock (`time.perf_counter`, the machine's monotonic clock, in every process):
- the worker's own latency records, per utterance: a `sitecustomize` (bench/room/hook/) in the worker's
  processes appends each record its tracker completes to a file (observing only; no agent code changes);
- listener-side end to end: the speaker's speech end as sent (when the frame holding the last voiced sample
  was handed to the speaker's AudioSource, less the rest of that frame) → the first frame of the
  utterance's translation arriving at the listener. The fake TTS tags each translation's first clause with
  a tone whose frequency its id picks (every other clause at 300 Hz), so the listener finds where each
  utterance starts by content, even right after the previous one;
- what the SFU adds: listener-side minus the worker's own end to end, per utterance (joined by the
  translated caption's segment id = the worker record's id); split into uplink (speaker → the worker's
  speech end), the worker's source queue (first frame → heard at the worker's AudioSource) and downlink
  (heard at the source → arrived at the listener).

Capacity (`bench/room/capacity.py`): N rooms at once against one worker; CPU of the worker's process tree
(job processes included), the LiveKit server, the fakes and the participants (this process), each measured
with psutil while all N rooms talk. With `--load-cpu worker` (default) the worker runs with LOAD_CPU=worker:
the CPU term of its load function reads its own process tree instead of the whole machine, which is what the
machine's CPU is in production, where the machine runs only the worker.

Writes room.json and room.png to bench-results/ (`--out` another folder, `--write-results` the committed
bench/results/), prints a table with the machine's load during the run.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from typing import Any

from bench.harness.cli import (
    add_speech_arguments,
    command_parser,
    output_dir,
    worker_settings,
)
from bench.harness.machine import MachineLoad
from bench.harness.model import LatencyModel
from bench.harness.output import write_results
from bench.harness.speech import dialogue, monologue
from bench.room.analysis import latency_summary
from bench.room.capacity import workload_capacity
from bench.room.report import draw, print_report
from bench.room.rooms import Context, run_rooms
from bench.room.stage import parse_run, run_to_end, stage

WORKLOADS = ("dialogue", "monologue", "capacity")


async def workload_dialogue(ctx: Context, utterances: int) -> dict[str, Any]:
    speech = dialogue(utterances, random.Random(ctx.model.seed))
    result = await run_rooms(ctx, "dialogue", [speech])
    return latency_summary(result, ctx.model)


async def workload_monologue(ctx: Context, minutes: float) -> dict[str, Any]:
    speech = monologue(minutes, random.Random(ctx.model.seed))
    result = await run_rooms(ctx, "monologue", [speech])
    out = latency_summary(result, ctx.model)
    out["minutes"] = minutes
    return out


async def run(
    args: argparse.Namespace, model: LatencyModel, settings: dict[str, str], command: str
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "model": model.as_dict(),
        "settings": settings,
        "load_cpu": args.load_cpu,
        "open_interval_s": args.open_interval,
        "machine": {"cpus": os.cpu_count()},
        "command": command,
    }
    async with stage(args, model, "bench-room-") as (server, urls, workdir):
        ctx = Context(
            server,
            urls,
            model,
            settings,
            workdir,
            args.sessions_per_core,
            args.dispatch_timeout,
            args.load_cpu,
            args.open_interval,
        )
        if "dialogue" in args.workloads:
            print("running the dialogue workload through the SFU…", flush=True)
            results["dialogue"] = await workload_dialogue(ctx, args.dialogue_utterances)
        if "monologue" in args.workloads:
            print("running the monologue workload through the SFU…", flush=True)
            results["monologue"] = await workload_monologue(ctx, args.monologue_minutes)
        if "capacity" in args.workloads:
            print("running the capacity sweep…", flush=True)
            steps = [int(n) for n in args.rooms.split(",")]
            results["capacity"] = await workload_capacity(
                ctx, steps, args.room_seconds, args.stop_ms, args.stagger
            )
    return results


def parse(argv: list[str]) -> argparse.Namespace:
    parser = command_parser("room", __doc__)
    add_speech_arguments(parser, WORKLOADS, monologue_minutes=3.0, length_factor=1.1)
    parser.add_argument("--rooms", default="1,2,4,6,8,10,12,16", help="capacity: comma-separated room counts")
    parser.add_argument("--room-seconds", type=float, default=60.0, help="capacity: dialogue per room (s)")
    parser.add_argument("--stagger", type=float, default=3.0, help="capacity: rooms start within this many s")
    parser.add_argument(
        "--stop-ms", type=float, default=1000.0, help="capacity: stop once p95 rises this much"
    )
    parser.add_argument("--sessions-per-core", type=int, default=200, help="the worker's SESSIONS_PER_CORE")
    parser.add_argument(
        "--load-cpu",
        choices=("machine", "worker"),
        default="worker",
        help="the CPU term of the worker's load function: the worker's own process tree (default: what it "
        "reads in production, where the machine runs only the worker) or the whole machine's (the function "
        "unchanged; here the participants, server and fakes count against it)",
    )
    opening = "capacity: s between rooms opening (0: all at once, a burst the framework partly refuses)"
    parser.add_argument("--open-interval", type=float, default=1.0, help=opening)
    parser.add_argument("--dispatch-timeout", type=float, default=45.0, help="s for a room to get its agent")
    return parse_run(parser, argv, "workloads", WORKLOADS)


def main(argv: list[str]) -> None:
    args = parse(argv)
    settings = worker_settings(args)

    out = output_dir(args)
    model = LatencyModel.from_args(args)
    load = MachineLoad()
    started = time.perf_counter()
    results = run_to_end(run(args, model, settings, " ".join(["python -m bench room", *argv])))
    results["wall_s"] = round(time.perf_counter() - started, 1)
    write_results(out, "room.json", results, load, draw=draw, report=print_report)
