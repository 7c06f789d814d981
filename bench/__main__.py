"""The benchmarks, one command: `python -m bench <workload> [options]`.

    uv run python -m bench --help                # the workloads
    uv run python -m bench WORKLOAD --help       # a workload's options
    uv run python -m bench dialogue monologue    # latency workloads combine in one run (results.json)
    uv run python -m bench                       # none named: dialogue, monologue and scale (`latency`)

Every workload runs the real loops and plugins against local fake providers (the harness, bench/harness/),
writes its results to bench-results/ (`--out` another folder, `--write-results` the committed
bench/results/; `overhead` writes only with `--json FILE`) and prints them with the machine's load.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Command:
    module: str  # its `main(argv)` runs the workload
    summary: str
    named: bool = False  # the command's own name goes on as the workload's first argument


COMMANDS = {
    "latency": Command("bench.latency", "dialogue, monologue and scale in one run (about 20 minutes)"),
    "dialogue": Command(
        "bench.latency", "short turns: speech end → first translated frame, overhead per stage", named=True
    ),
    "monologue": Command(
        "bench.latency", "a long talk: ear-voice lag per word, its drift, memory", named=True
    ),
    "scale": Command("bench.latency", "N sessions in one process: CPU, memory, overhead", named=True),
    "lag": Command("bench.lag.workload", "per-sentence lags, today's behaviour against the new one"),
    "room": Command("bench.room.workload", "through a real LiveKit server: dialogue, monologue, capacity"),
    "capacity": Command(
        "bench.room.workload", "the capacity sweep of `room`: N rooms against one worker", named=True
    ),
    "fleet": Command(
        "bench.fleet.workload", "rooms keep their interpreter: a burst, a worker killed, a deploy (issue 20)"
    ),
    "cost": Command(
        "bench.cost.workload", "what a meeting costs: every language spoken always, against only while heard"
    ),
    "soak": Command(
        "bench.soak.run", "an hour of simulated speech through a room session, faster than real time"
    ),
    "overhead": Command("bench.overhead", "the pipeline's own overhead, against fakes that answer at once"),
    "flood": Command(
        "bench.flood", "the page's token endpoint flooded: answers/s, a person's join latency, RSS"
    ),
    "storm": Command("bench.storm", "one participant storms a real room's contract: what the others see"),
    "noise": Command("bench.noise", "the ears' pauses in hum and babble: found, mid-word cuts, CPU/frame"),
    "hall": Command(
        "bench.hall.workload",
        "echo, cross-talk, noise and loss in a room: self-interpretations, doubles, cuts, lags",
    ),
    "relay": Command(
        "bench.relay", "an interpretation track over a lossy downlink: RED and DTX at 0/2/5/10 % loss"
    ),
    "dtx": Command("bench.dtx", "the page's microphone in Chromium: what the ears get in its DTX silences"),
}
DEFAULT = "latency"  # what runs when no workload is named (options alone are `latency`'s, as ever)


def parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<11}{command.summary}" for name, command in COMMANDS.items())
    return argparse.ArgumentParser(
        prog="python -m bench",
        usage="python -m bench [WORKLOAD] [options]",
        description=__doc__,
        epilog=f"workloads:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str]) -> None:
    if argv and argv[0] in COMMANDS:
        name, rest = argv[0], argv[1:]
    elif not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        name, rest = DEFAULT, argv  # as `python -m bench` always ran: the latency workloads
    elif argv[0] in ("-h", "--help"):
        parser().print_help()
        return
    else:
        parser().error(f"unknown workload {argv[0]!r} (known: {', '.join(COMMANDS)})")
    command = COMMANDS[name]
    module = importlib.import_module(command.module)  # only the workload run is imported
    module.main([name, *rest] if command.named else rest)


if __name__ == "__main__":
    main(sys.argv[1:])
