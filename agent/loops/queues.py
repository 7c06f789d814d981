"""The bounded queue from the ears to the brain, and its policy when full; the session's control steps.

The ears must never block on the brain, and nothing a speaker said may be dropped. So `put_nowait`
never waits: when the queue is full, the new utterance is folded into the newest waiting one of the
same speaker (its text appended, its latency record kept). A brain that falls behind therefore gets
fewer, longer utterances — it catches up by translating more per request — and the backlog stays
bounded: `maxsize`, plus at most one per speaker with nothing waiting yet. Utterances of several
speakers wait in the order their speech ended. Captions never pass through this queue: the ears
publish them before queueing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from agent.loops.models import Utterance

T = TypeVar("T")


class UtteranceSink(Protocol):
    """Where the ears put utterances; it must never block."""

    def put_nowait(self, utterance: Utterance) -> None: ...


class DraftSink(Protocol):
    """Where the ears put drafts (an eager end of turn's transcript, `agent/loops/brain/drafts.py`): they skip
    the queue (a draft is worth something only at once) and never block."""

    def draft(self, utterance: Utterance) -> None: ...

    def withdraw(self, speaker: str) -> None:
        """The speaker's turn went on after the draft: it will not be the final's transcript."""
        ...


class UtteranceQueue:
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._items: deque[Utterance] = deque()
        self._closed = False
        self._changed = asyncio.Event()
        self.merged = 0  # how many utterances were folded into a waiting one

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, utterance: Utterance) -> None:
        """Queue in the order speech ended (several speakers may share a queue); never blocks."""
        if self._closed:
            raise RuntimeError("UtteranceQueue is closed")
        if len(self._items) >= self.maxsize:
            same_speaker = [u for u in self._items if u.speaker == utterance.speaker]
            if same_speaker:  # never fold one speaker's words into another's
                same_speaker[-1].absorb(utterance)
                self.merged += 1
                self._changed.set()
                return
            # no waiting utterance of this speaker: the queue grows by at most one per speaker
        index = len(self._items)
        while index > 0 and self._items[index - 1].speech_end_at > utterance.speech_end_at:
            index -= 1
        self._items.insert(index, utterance)
        self._changed.set()

    def close(self) -> None:
        """No more utterances: `get` returns None once the queue is empty."""
        self._closed = True
        self._changed.set()

    async def get(self) -> Utterance | None:
        while not self._items:
            if self._closed:
                return None
            self._changed.clear()
            await self._changed.wait()
        return self._items.popleft()


class StepQueue(Generic[T]):
    """Steps applied one at a time, in order, where a step put under a key already waiting is not queued
    again: keyed steps read the state they act on when they run (the room as it is now), so the waiting
    one covers the new request too. The queue therefore holds at most one step per key, plus the
    unkeyed ones (each caller of those waits for its own), however fast events come."""

    def __init__(self) -> None:
        self._items: deque[tuple[Hashable | None, T]] = deque()
        self._waiting: set[Hashable] = set()
        self._closed = False
        self._changed = asyncio.Event()
        self.coalesced = 0  # steps not queued because the same step was already waiting

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, step: T, key: Hashable | None = None) -> None:
        if self._closed:
            raise RuntimeError("StepQueue is closed")
        if key is not None:
            if key in self._waiting:
                self.coalesced += 1
                return
            self._waiting.add(key)
        self._items.append((key, step))
        self._changed.set()

    def close(self) -> None:
        """No more steps: `get` returns None once the queue is empty."""
        self._closed = True
        self._changed.set()

    async def get(self) -> T | None:
        while not self._items:
            if self._closed:
                return None
            self._changed.clear()
            await self._changed.wait()
        key, step = self._items.popleft()
        self._waiting.discard(key)
        return step
