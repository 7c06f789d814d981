"""`python -m bench hall`: the interpreter in a hall (issue 22) — a loudspeaker's echo, cross-talk, hum and
babble, a lossy uplink — on the dialogue and the monologue, against the clean run.

    uv run python -m bench hall                          # every condition on both speeches (~6 min)
    uv run python -m bench hall --conditions clean,echo --workloads dialogue
    uv run python -m bench hall --dry-run                # the runs and the estimated run time

Each run is the real RoomSession with its loops and plugins in the room harness of the tests (the fake room
transport, loopback tracks, the fake providers at the wire in this process), at the worker's default
settings; the fake Deepgram hears each microphone's words by time (`tests/fakes/timed_words.py`: what was
said and reached the microphone, not a script in order). `bench/hall/mixes.py` says what each condition puts
on the microphones, `bench/hall/measure.py` how each figure is taken from the script. It prints one table
and the goals, and writes `hall.json` and `hall.png` to `bench-results/` (`--out`, `--write-results`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bench.hall.measure import measure, pooled
from bench.hall.mixes import CONDITIONS, SPEECHES, fixture, loss_available, mics
from bench.hall.report import draw, report
from bench.hall.room import run_condition
from bench.harness.cli import add_output_arguments, command_parser, output_dir
from bench.harness.machine import MachineLoad
from bench.harness.output import write_results

RUN_OVERHEAD_S = 9.0  # set-up, the last translation played out, the quiet wait that ends a run
EXTRA_S = {"echo": 6.0, "crosstalk": 2.4, "loss": 25.0}  # the echo's tail, B's pause, the relayed audio


def plan(speeches: list[str], conditions: list[str]) -> list[tuple[str, str, float]]:
    """(speech, condition, estimated seconds) of every run."""
    out = []
    for speech in speeches:
        seconds = len(fixture(speech)[0]) / 16000
        for name in conditions:
            kind = CONDITIONS[name].kind
            out.append((speech, name, seconds + EXTRA_S.get(kind, 0.0) + RUN_OVERHEAD_S))
    return out


def choose(value: str, known: dict[str, Any], what: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    if unknown := [v for v in chosen if v not in known]:
        raise SystemExit(f"unknown {what} {unknown} (known: {', '.join(known)})")
    return chosen


async def run_one(speech: str, condition: str) -> dict[str, Any]:
    run = await run_condition(await mics(speech, CONDITIONS[condition]))
    return measure(run)


def main(argv: list[str]) -> None:
    parser = command_parser("hall", __doc__)
    parser.add_argument(
        "--conditions", default=",".join(CONDITIONS), help="of: " + ", ".join(CONDITIONS).replace("%", "%%")
    )
    parser.add_argument("--workloads", default=",".join(SPEECHES), help="of: " + ", ".join(SPEECHES))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each condition, pooled (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs and the run time, run nothing")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    conditions = choose(args.conditions, CONDITIONS, "conditions")
    speeches = choose(args.workloads, SPEECHES, "workloads")
    skipped = []
    if any(CONDITIONS[c].kind == "loss" for c in conditions) and (why := loss_available()) is not None:
        skipped.append(f"the loss conditions: {why}")
        conditions = [c for c in conditions if CONDITIONS[c].kind != "loss"]
    runs = plan(speeches, conditions)
    total = sum(s for _, _, s in runs) * max(args.repeat, 1)
    print(f"{len(runs)} runs × {args.repeat}; estimated run time {total / 60:.1f} min", flush=True)
    for reason in skipped:
        print(f"not run: {reason}", flush=True)
    if args.dry_run:
        for speech, name, seconds in runs:
            print(f"  {speech:<10} {name:<13} ~{seconds:.0f} s")
        return
    out = output_dir(args)
    logging.basicConfig(level=logging.ERROR)
    load = MachineLoad()
    results: dict[str, Any] = {"runs": {}, "skipped": skipped, "estimated_s": round(total, 1)}
    for speech, name, _ in runs:
        print(f"running {speech}, {name}…", flush=True)
        each = [asyncio.run(run_one(speech, name)) for _ in range(max(args.repeat, 1))]
        results["runs"].setdefault(speech, {})[name] = pooled(each)
    write_results(out, "hall.json", results, load, draw=draw, report=report)
