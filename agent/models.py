"""The typed messages that flow one way between the loops: ears → brain → mouth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from livekit import rtc


@dataclass(slots=True)
class Utterance:
    """One finalized segment of what a speaker said, as the ears heard it."""

    id: str
    speaker: str
    text: str
    language: str
    audio_start: float  # seconds on the speaker's audio timeline where the first word starts
    audio_end: float  # ... and where the last word ends
    speech_end_at: float  # clock time at which the last word ended (audio timeline mapped to the clock)
    final_at: float  # clock time at which the final transcript arrived
    # ids of every utterance folded into this one while the brain was behind (see UtteranceQueue)
    record_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.record_ids:
            self.record_ids = [self.id]

    def absorb(self, later: Utterance) -> None:
        """Fold a later utterance into this one: nothing said is lost, one translation serves both."""
        self.text = f"{self.text} {later.text}"
        self.audio_end = later.audio_end
        self.record_ids.extend(later.record_ids)


class Speech:
    """The translated audio of one utterance, streamed from the brain to the mouth as it is made.

    The brain hands a `Speech` to the mouth as soon as translation starts, in utterance order, and
    fills it frame by frame; the mouth plays each `Speech` to its end before the next.
    """

    def __init__(self, utterance: Utterance, language: str) -> None:
        self.utterance = utterance
        self.language = language
        self.clauses: list[str] = []
        self.failed = False
        self.audio_frames = 0
        self.audio_s = 0.0
        self.speed = 1.0  # the speaking rate the TTS was asked for
        self.first_audio_at: float | None = None  # clock time the first frame was ready
        self._frames: asyncio.Queue[tuple[rtc.AudioFrame, bool] | None] = asyncio.Queue()
        self._ended = False

    @property
    def text(self) -> str:
        """The translation spoken so far (the clauses sent to TTS)."""
        return " ".join(self.clauses)

    def push(self, frame: rtc.AudioFrame, *, last: bool = False) -> None:
        """Add a frame; `last` marks the end of the synthesized audio (the mouth fades it out)."""
        if self._ended:
            raise RuntimeError("Speech already ended")
        self.audio_frames += 1
        self.audio_s += frame.samples_per_channel / frame.sample_rate
        self._frames.put_nowait((frame, last))

    def end(self, *, failed: bool = False) -> None:
        if self._ended:
            return
        self.failed = failed
        self._ended = True
        self._frames.put_nowait(None)

    async def frames(self) -> AsyncIterator[tuple[rtc.AudioFrame, bool]]:
        """(frame, last) pairs until the brain ends the speech."""
        while (item := await self._frames.get()) is not None:
            yield item
