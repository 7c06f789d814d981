"""The loops the session runs (a speaker's ears, a language's channel): held by key (`Running`), and
stopped (`finish`) once they finished what they hold, within STOP_TIMEOUT_S, or at once once the room is
gone; never left running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TypeVar

from agent.telemetry.errors import log_unexpected

logger = logging.getLogger("agent.session")

STOP_TIMEOUT_S = 10.0

T = TypeVar("T")


class Running(Mapping[str, T]):
    """The loops of one kind the session runs, by key: read-only to all but their holder."""

    def __init__(self) -> None:
        self._running: dict[str, T] = {}

    def __getitem__(self, key: str) -> T:
        return self._running[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._running)

    def __len__(self) -> int:
        return len(self._running)


async def finish(task: asyncio.Task[None], limit_s: float, gone: asyncio.Event) -> None:
    """Let a loop end by itself within `limit_s` (unless the room is or goes away: nobody is left to
    hear what it would finish); cancel it past that. Never leaves it running."""
    waiter = asyncio.ensure_future(gone.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    if not task.done():
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as e:
            log_unexpected(logger, "a loop failed as it was cancelled", e)
    elif not task.cancelled() and (error := task.exception()) is not None:
        log_unexpected(logger, "a loop ended with an error", error)
