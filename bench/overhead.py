"""The pipeline's own overhead: the real three loops and plugins against fake providers that answer at
once, fed the committed speech fixtures in real time.

    uv run python -m bench overhead --runs 5

With providers that take no time, speech end → first frame is what the interpreter itself adds, plus the
STT's endpointing (the silence Deepgram waits for before it finalizes: a provider setting, reported
apart as `stt_finalize`). `after_final` (final transcript → first frame) is the pipeline's own part.
Prints the machine's load during the run with the table; writes nothing unless `--json FILE`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path

from agent.run.filemode import interpret_file
from agent.telemetry.latency import LatencyTracker, format_table
from bench.harness.cli import command_parser
from bench.harness.machine import MachineLoad, describe
from tests.conftest import DIALOGUE, ONE_SENTENCE, start_fakes, stop_fakes


async def run(runs: int) -> dict[str, dict[str, float | int]]:
    tracker = LatencyTracker()  # one over every run: its summary is the benchmark's figures
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            for scenario in (DIALOGUE, ONE_SENTENCE):
                fakes = await start_fakes(scenario)
                try:
                    await interpret_file(
                        fakes.settings(), scenario.wav, Path(tmp) / f"{i}.wav", source="en", target="es",
                        tracker=tracker,
                    )  # fmt: skip
                finally:
                    await stop_fakes(fakes)
    return tracker.summary_ms()


def main(argv: list[str]) -> None:
    parser = command_parser("overhead", __doc__)
    parser.add_argument("--runs", type=int, default=5, help="passes over the fixtures")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    load = MachineLoad()
    summary = asyncio.run(run(args.runs))
    machine = load.figures()
    print(format_table(summary))
    print(describe(machine))
    if args.json:
        args.json.write_text(json.dumps({"latency_ms": summary, "machine": machine}, indent=1))
