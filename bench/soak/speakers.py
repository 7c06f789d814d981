"""The soak's speakers and what stands in for real time: each speaker's synthetic audio, fed as fast as the
pipeline takes it (`Conductor.frames`) and held at its backlog bound and at every sampling point; the
router that tells the conductor of every utterance; and an AudioSource that plays out at once."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from livekit import rtc

from agent.loops.models import Utterance
from agent.loops.pipeline import Router
from agent.run.filemode import FRAME_S
from agent.telemetry import metrics
from agent.telemetry.latency import UtteranceRecord
from bench.harness.speech import RATE, tone

FRAME_SAMPLES = int(RATE * FRAME_S)
logger = logging.getLogger("bench.soak")


class FastAudioSource(rtc.AudioSource):
    """A real `rtc.AudioSource` (so a real track can be made of it) whose `capture_frame` returns at
    once: frames are counted, never queued, so the mouth plays as fast as the TTS delivers."""

    def __init__(
        self,
        sample_rate: int,
        num_channels: int,
        queue_size_ms: int = 1000,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(sample_rate, num_channels, queue_size_ms, loop)
        self.frames = 0
        self.seconds = 0.0

    @property
    def queued_duration(self) -> float:
        return 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        self.frames += 1
        self.seconds += frame.samples_per_channel / frame.sample_rate


@dataclass
class SpeakerStats:
    identity: str
    language: str
    segments: int = 0  # bursts fed, each followed by a pause longer than the endpointing
    audio_s: float = 0.0  # timeline fed, pauses included
    voiced_s: float = 0.0
    heard: int = 0  # utterances the ears handed on
    completed: int = 0  # utterances of this speaker completed by a channel (spoken or failed)
    stalls: int = 0  # times the backlog did not come down within the stall timeout
    finalized_s: float = 0.0  # the end of the latest utterance heard, on the speaker's timeline
    unmatched: int = 0  # utterances that ended short of a burst's end (cut by STT_MAX_SEGMENT_S)
    # ends of the bursts fed whose final transcript has not come yet
    open_bursts: collections.deque[float] = field(default_factory=collections.deque)

    def unspoken(self) -> int:
        """Bursts not yet transcribed and utterances not yet spoken."""
        return len(self.open_bursts) + self.heard - self.completed


class ObservingRouter(Router):
    """The session's router, telling the conductor about every utterance the ears hand on."""

    def __init__(self, on_utterance: Callable[[Utterance], None]) -> None:
        super().__init__()
        self._on_utterance = on_utterance

    def put_nowait(self, utterance: Utterance) -> None:
        self._on_utterance(utterance)
        super().put_nowait(utterance)


class Conductor:
    """Holds the speakers at each sampling point, and every speaker at its backlog bound."""

    def __init__(self, *, backlog: int, stall_timeout_s: float, speed: float = 0.0) -> None:
        self.backlog = backlog
        self.speed = speed  # at most this many times real time (0: no bound)
        self.stall_timeout_s = stall_timeout_s
        self.limit_s = 0.0  # speakers feed until their timeline reaches this
        self.finished = False  # no more audio: the frames iterators end
        self.stats: dict[str, SpeakerStats] = {}
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    def on_utterance(self, utterance: Utterance) -> None:
        stats = self.stats.get(utterance.speaker)
        if stats is None:
            return
        stats.heard += 1
        stats.finalized_s = max(stats.finalized_s, utterance.audio_end)
        matched = False
        while stats.open_bursts and stats.open_bursts[0] <= stats.finalized_s + 0.05:
            stats.open_bursts.popleft()
            matched = True
        stats.unmatched += not matched
        self.notify()

    def on_complete(self, record: UtteranceRecord) -> None:
        metrics.observe_record(record)  # as the worker's tracker does
        stats = self.stats.get(record.utterance_id.split("-", 1)[0])
        if stats is not None:
            stats.completed += 1
            self.notify()

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else time.perf_counter() + timeout_s
        while not condition():
            self._changed.clear()
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    def at_limit(self, stats: SpeakerStats) -> bool:
        return stats.audio_s >= self.limit_s - 1e-9

    def all_at_limit(self) -> bool:
        return all(self.at_limit(s) for s in self.stats.values())

    def drained(self) -> bool:
        return all(s.unspoken() <= 0 for s in self.stats.values())

    async def frames(
        self, stats: SpeakerStats, rng: random.Random, freq: float
    ) -> AsyncIterator[rtc.AudioFrame]:
        """A speaker's audio: a burst of tone, a pause, ... as 20 ms frames, as fast as allowed."""
        silence = np.zeros(FRAME_SAMPLES, dtype=np.int16).tobytes()
        while True:
            if self.at_limit(stats):
                self.notify()
                await self.wait_for(lambda: self.finished or not self.at_limit(stats))
                if self.finished:
                    return
            if not await self.wait_for(lambda: stats.unspoken() <= self.backlog, self.stall_timeout_s):
                stats.stalls += 1
                logger.warning("speaker %s: backlog not spoken in time", stats.identity)
            burst = round(rng.uniform(1.0, 4.0) / FRAME_S)  # frames
            pause = round(rng.uniform(0.5, 1.0) / FRAME_S)
            stats.open_bursts.append(stats.audio_s + burst * FRAME_S)
            started = time.perf_counter()
            for i, chunk in enumerate(
                itertools.chain(_tone_frames(burst, freq), itertools.repeat(silence, pause))
            ):
                yield rtc.AudioFrame(chunk, RATE, 1, FRAME_SAMPLES)
                ahead = started + (i + 1) * FRAME_S / self.speed - time.perf_counter() if self.speed else 0.0
                await asyncio.sleep(max(0.0, ahead))  # at least let the loop run
            stats.segments += 1
            stats.audio_s += (burst + pause) * FRAME_S
            stats.voiced_s += burst * FRAME_S


def _tone_frames(frames: int, freq: float) -> Iterator[bytes]:
    pcm = (tone(frames * FRAME_SAMPLES, freq) * 32767).astype(np.int16).tobytes()
    step = FRAME_SAMPLES * 2
    for i in range(0, len(pcm), step):
        yield pcm[i : i + step]
