"""Every room gets its interpreter, and keeps it: `python -m bench fleet` (issue 20).

    uv run python -m bench fleet                         # burst, kill, deploy (about 7 minutes)
    uv run python -m bench fleet burst --rooms 4 --workers 1 --dispatch token    # one small burst
    uv run python -m bench fleet kill deploy --meeting-rooms 2

Against a real LiveKit server, with workers as production runs them (`python -m agent start`, subprocesses,
one job process per room; DRAIN_TIMEOUT_S from --drain-timeout), their providers the modelled fakes of
`python -m bench` in a process of their own, and in each room a speaker saying synthetic dialogue and a
listener recording the interpretation (`bench/room/`):

- burst: N rooms (--rooms) ask for an interpreter within one second, against fresh workers (--workers: one,
  and two), by token (N people joining with a token that asks for it) and by API (N dispatches into rooms
  whose people are there): per room, seconds from the request until an interpreter of ours joined and until
  it was at work (its `lk.agent.state` listening); rooms lost (none at work --lost-after s after the
  request), rooms doubled (two rival interpreters of ours live at once);
- kill: --meeting-rooms rooms interpreted by worker A, a worker B registered, then A's machine dies (A and
  every process under it SIGSTOPped, then SIGKILLed): seconds until each room has another interpreter at
  work, and the words spoken meanwhile whose sentence was never interpreted;
- deploy: the same, but A is sent SIGTERM (the worker process, as Fly sends it): the longest silence the
  listener heard that the original did not have, and the sentences lost or doubled.

Every scenario ends within its set time (--lost-after, --before, --after) whether or not rooms get their
interpreter. The figures come from what the listener saw and heard (bench/fleet/figures.py says how), beside
issue 20's goals: 0 rooms lost or doubled, request → at work p95 ≤ 3 s in a burst, back within 10 s p95
after a worker is killed, a deploy costs ≤ 1 s of gap and nothing lost.

Writes fleet.json and fleet.png to bench-results/ (`--out` another folder, `--write-results` the committed
bench/results/), and prints each scenario's figures with the machine's load.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Any

from bench.fleet.report import draw, print_report
from bench.fleet.scenarios import Sizes, burst, meeting
from bench.harness.cli import command_parser, output_dir, worker_settings
from bench.harness.machine import MachineLoad
from bench.harness.model import LatencyModel
from bench.harness.output import write_results
from bench.room.rooms import Context
from bench.room.stage import parse_run, run_to_end, stage

SCENARIOS = ("burst", "kill", "deploy")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = command_parser("fleet", __doc__)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help=", ".join(SCENARIOS))
    d = Sizes()
    parser.add_argument("--rooms", type=int, default=d.rooms, help="burst: rooms asking within one second")
    parser.add_argument("--workers", default="1,2", help="burst: workers registered, comma-separated runs")
    parser.add_argument("--dispatch", default="token,api", help="burst: how rooms ask (token, api)")
    parser.add_argument("--lost-after", type=float, default=d.lost_after_s, help="s without an interpreter")
    parser.add_argument("--speech", type=float, default=d.speech_s, help="burst: s each speaker talks")
    parser.add_argument("--meeting-rooms", type=int, default=d.meeting_rooms, help="kill, deploy: rooms")
    parser.add_argument("--before", type=float, default=d.before_s, help="kill, deploy: s of talk before")
    parser.add_argument("--after", type=float, default=d.after_s, help="kill, deploy: s watched after")
    parser.add_argument("--settle", type=float, default=d.settle_s, help="s after a worker registered")
    parser.add_argument("--drain-timeout", type=int, default=10, help="the workers' DRAIN_TIMEOUT_S")
    parser.add_argument(
        "--sessions-per-core", type=int, default=7, help="the workers' SESSIONS_PER_CORE (production's)"
    )
    parser.add_argument("--length-factor", type=float, default=1.1, help="translated/original speech length")
    return parse_run(parser, argv, "scenarios", SCENARIOS)


def sizes_of(args: argparse.Namespace) -> Sizes:
    return Sizes(
        rooms=args.rooms,
        lost_after_s=args.lost_after,
        speech_s=args.speech,
        meeting_rooms=args.meeting_rooms,
        before_s=args.before,
        after_s=args.after,
        settle_s=args.settle,
    )


async def run_scenarios(ctx: Context, args: argparse.Namespace, results: dict[str, Any]) -> None:
    sizes = sizes_of(args)
    timings: dict[str, float] = results["scenario_s"]
    if "burst" in args.scenarios:
        results["burst"] = []
        for workers in (int(w) for w in args.workers.split(",")):
            for mode in args.dispatch.split(","):
                print(f"burst: {sizes.rooms} rooms, {workers} worker(s), {mode}…", flush=True)
                started = time.perf_counter()
                results["burst"].append(await burst(ctx, sizes, workers, mode))
                timings[f"burst {workers} {mode}"] = round(time.perf_counter() - started, 1)
    for event in ("kill", "deploy"):
        if event in args.scenarios:
            print(f"{event}: {sizes.meeting_rooms} rooms…", flush=True)
            started = time.perf_counter()
            results[event] = await meeting(ctx, sizes, event)
            timings[event] = round(time.perf_counter() - started, 1)


async def run(args: argparse.Namespace, model: LatencyModel, settings: dict[str, str]) -> dict[str, Any]:
    results: dict[str, Any] = {
        "model": model.as_dict(),
        "settings": settings,
        "sizes": dataclasses.asdict(sizes_of(args)),
        "scenario_s": {},
        "machine": {"cpus": os.cpu_count()},
    }
    async with stage(args, model, "bench-fleet-") as (server, urls, workdir):
        ctx = Context(server, urls, model, settings, workdir, args.sessions_per_core, args.lost_after)
        await run_scenarios(ctx, args, results)
    return results


def main(argv: list[str]) -> None:
    args = parse(argv)
    # the workers' settings: a drain short enough to end within the run; a sentence transcribed in one piece
    # (no cut after a second of speech: each transcript's length then says which sentence it is); `--set`'s
    settings = {
        "DRAIN_TIMEOUT_S": str(args.drain_timeout),
        "STT_MAX_SEGMENT_S": "0",
        **worker_settings(args),
    }
    out = output_dir(args)
    model = LatencyModel.from_args(args)
    load = MachineLoad()
    results = run_to_end(run(args, model, settings))
    results["command"] = " ".join(["python -m bench fleet", *argv])
    write_results(out, "fleet.json", results, load, draw=draw, report=print_report)
