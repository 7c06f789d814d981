"""The fake providers of a benchmark in a process of their own, so their CPU and memory are not the worker's.

The parent starts `python -m <module> CONFIG_JSON` (`provider_process`); the child builds its fakes from the
config, prints one JSON line with their base URLs (and its `pid`), then serves until its standard input
closes (`serve_main`). `provider_env` is the worker's environment that points every provider at them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol


class Fakes(Protocol):
    async def start(self) -> dict[str, str]:
        """Start serving; the base URLs by provider name."""
        ...

    async def aclose(self) -> None: ...


@contextlib.asynccontextmanager
async def provider_process(module: str, config: Mapping[str, Any]) -> AsyncIterator[dict[str, str]]:
    """The fakes `module` serves (`serve_main`) on `config`, in a child process; yields their URLs and the
    child's `pid`, and ends the child after."""
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once per run, before any session)
        [sys.executable, "-m", module, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = await asyncio.to_thread(proc.stdout.readline)
        yield json.loads(line)
    finally:
        proc.stdin.close()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def serve(make: Callable[[], Fakes]) -> None:
    fakes = make()
    urls = await fakes.start()
    print(json.dumps({**urls, "pid": str(os.getpid())}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
    await fakes.aclose()


def serve_main(make: Callable[[dict[str, Any]], Fakes]) -> None:
    """The child's `__main__`: the fakes `make` builds from the config on the command line, until the parent
    closes our standard input."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the parent's to handle: it closes our stdin
    config = json.loads(sys.argv[1])
    asyncio.run(serve(lambda: make(config)))


def provider_env(urls: Mapping[str, str]) -> dict[str, str]:
    """The worker's settings for the fakes at `urls`: every provider's base URL and a key."""
    return {
        "DEEPGRAM_API_KEY": "bench",
        "DEEPGRAM_BASE_URL": urls["deepgram"],
        "CEREBRAS_API_KEY": "bench",
        "CEREBRAS_BASE_URL": urls["cerebras"],
        "GROQ_API_KEY": "bench",
        "GROQ_BASE_URL": urls["groq"],
        "CARTESIA_API_KEY": "bench",
        "CARTESIA_BASE_URL": urls["cartesia"],
    }
