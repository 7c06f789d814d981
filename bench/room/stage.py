"""What a workload through a real LiveKit server stands on (`python -m bench room`, `python -m bench fleet`):
the server and the modelled providers for the length of the run, in a scratch folder whose logs
`--keep-logs` keeps (`stage`), and the run taken to its end, whatever stops it (`run_to_end`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import psutil

from bench.harness.cli import add_run_arguments
from bench.harness.model import LatencyModel
from bench.harness.modelled_providers import modelled_providers
from tests.livekit_server import INSTALL_HINT, LiveKitServer, find_binary

T = TypeVar("T")


def parse_run(
    parser: argparse.ArgumentParser, argv: list[str], parts: str, known: tuple[str, ...]
) -> argparse.Namespace:
    """`argv` parsed by `parser` with the options of a run on the modelled providers and `--keep-logs`; the
    parts it names (the positional `parts`) checked against `known`."""
    add_run_arguments(parser)
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the server and worker logs here")
    args = parser.parse_args(argv)
    unknown = set(getattr(args, parts)) - set(known)
    if unknown:
        parser.error(f"unknown {parts} {sorted(unknown)}")
    return args


@contextlib.asynccontextmanager
async def stage(
    args: argparse.Namespace, model: LatencyModel, prefix: str
) -> AsyncIterator[tuple[LiveKitServer, dict[str, str], Path]]:
    """A LiveKit server and the modelled providers (tagged tones, `args.length_factor`), their scratch
    folder; the server stopped after, its folder copied to `args.keep_logs` if given."""
    binary = find_binary()
    if binary is None:
        raise SystemExit(INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        server = start_server(binary, workdir / "livekit-server.log")
        try:
            async with modelled_providers(model, length_factor=args.length_factor, tag_tones=True) as urls:
                yield server, urls, workdir
        finally:
            server.stop()
            if args.keep_logs:
                shutil.copytree(workdir, args.keep_logs, dirs_exist_ok=True)


def start_server(binary: str, log: Path, attempts: int = 3) -> LiveKitServer:
    """A LiveKit server started on free ports, again on others if one was taken meanwhile (`free_port` is
    only a guess on a machine where other runs start servers too)."""
    for attempt in range(1, attempts + 1):
        server = LiveKitServer(binary, log)
        try:
            server.start()
            return server
        except RuntimeError:
            if attempt == attempts or "address already in use" not in server.log_tail():
                raise
    raise AssertionError("unreachable")


def run_to_end(run: Coroutine[Any, Any, T]) -> T:
    """The workload's run; on Ctrl-C, a word and exit 130; either way no process of ours left running."""
    try:
        return asyncio.run(run)
    except KeyboardInterrupt:
        print("interrupted: rooms, workers, server and fakes were closed", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        for child in psutil.Process().children(recursive=True):  # anything of ours still running
            with contextlib.suppress(psutil.Error):
                child.kill()
