"""The command line every workload shares: its parser, worker settings (`--set NAME=VALUE`), and where its
results go.

By default every benchmark writes to `bench-results/` at the repository root (ignored by git), so a run
never overwrites the committed figures in `bench/results/`; `--write-results` writes there instead, and
`--out` names any folder.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from bench.harness.model import add_model_arguments

COMMITTED = Path(__file__).parent.parent / "results"
SCRATCH = Path(__file__).parent.parent.parent / "bench-results"
SET_HELP = "a worker setting, NAME=VALUE"


def command_parser(command: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of `python -m bench <command>`, its help the workload's docstring."""
    return argparse.ArgumentParser(
        prog=f"python -m bench {command}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_speech_arguments(
    parser: argparse.ArgumentParser,
    workloads: Iterable[str],
    *,
    monologue_minutes: float,
    length_factor: float,
) -> None:
    """The workloads to run (all by default) and the sizes of the dialogue and monologue speech."""
    parser.add_argument("workloads", nargs="*", default=list(workloads))
    parser.add_argument("--dialogue-utterances", type=int, default=60)
    parser.add_argument("--monologue-minutes", type=float, default=monologue_minutes)
    help = "translated/original speech length"
    parser.add_argument("--length-factor", type=float, default=length_factor, help=help)


def add_run_arguments(parser: argparse.ArgumentParser, set_help: str = SET_HELP) -> None:
    """The options of a run on the modelled providers: the latency model, `--set`, where the results go."""
    add_model_arguments(parser)
    add_settings_argument(parser, set_help)
    add_output_arguments(parser)


def add_settings_argument(parser: argparse.ArgumentParser, help: str = SET_HELP) -> None:
    parser.add_argument("--set", action="append", default=[], help=help)


def worker_settings(args: argparse.Namespace) -> dict[str, str]:
    """The `--set NAME=VALUE` worker settings, by name."""
    return dict(item.split("=", 1) for item in args.set)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=None, help=f"write the results to this folder (default: {SCRATCH.name}/)"
    )
    parser.add_argument(
        "--write-results",
        action="store_true",
        help=f"write to the committed {COMMITTED.parent.name}/{COMMITTED.name}/ (overwriting it)",
    )


def output_dir(args: argparse.Namespace, committed: Path = COMMITTED) -> Path:
    """Where the results go: `--out`, `committed` with `--write-results` (a workload may keep its own
    folder in bench/results/), else bench-results/."""
    if args.out is not None and args.write_results:
        raise SystemExit("--out and --write-results name two folders: give one")
    out: Path = args.out if args.out is not None else committed if args.write_results else SCRATCH
    out.mkdir(parents=True, exist_ok=True)
    print(f"results go to {out}", flush=True)
    return out
