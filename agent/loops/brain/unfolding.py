"""What a task makes one piece at a time, read by another later: a draft's clauses (`drafts.py`), a clause's
audio synthesized ahead (`synthesis.PreparedClause`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Generic, TypeVar

T = TypeVar("T")


class Unfolding(Generic[T]):
    """The items made so far, whether the making ended (and with what error), and the task making them."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self.done = False
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def add(self, item: T) -> None:
        self.items.append(item)
        self._changed.set()

    def end(self, error: BaseException | None = None) -> None:
        self.done, self.error = True, error
        self._changed.set()

    def cancel(self) -> None:
        """Stop the making (what was made stays)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def replay(self) -> AsyncGenerator[T, None]:
        """Every item, those made already at once, then each as it comes; the making's error at the end."""
        given = 0
        while True:
            while given < len(self.items):
                given += 1
                yield self.items[given - 1]
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            self._changed.clear()
            await self._changed.wait()
