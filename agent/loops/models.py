"""The typed messages that flow one way between the loops: ears → brain → mouth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from livekit import rtc

from agent.loops.mouth.trim import SilenceTrim, duration


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
    sentence: str | None = None  # the speaker's sentence this segment is a piece of (transcripts.py)
    level: float = 0.0  # RMS of its audio (full scale 1.0): the louder of two microphones hearing it
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


class ClauseAudio:
    """The audio of one clause, filled by that clause's own TTS stream.

    A clause's synthesis can be retried (`restart`) without the listener hearing anything twice:
    audio not yet played is thrown away and replaced; if some of it was already played, that much
    of the new attempt is skipped.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.frames: list[rtc.AudioFrame] = []
        self.final = False  # the TTS said this clause's audio is complete
        self.failed = False  # given up: the speech ends here
        self.cursor = 0  # frames handed to the mouth
        # seconds of this clause's audio handed to the mouth, or trimmed (silence decided not to play)
        self.played_s = 0.0
        self.attempts = 0  # restarts so far
        self.skip_s = 0.0  # seconds of the current attempt to skip (already heard from an earlier one)
        self.played = asyncio.Event()  # the mouth is past this clause (or will never play it)

    def restart(self) -> None:
        """A new synthesis attempt of the whole clause follows."""
        self.skip_s = self.played_s
        self.attempts += 1
        self.frames.clear()
        self.cursor = 0
        self.final = False


class Speech:
    """The translated audio of one utterance, streamed from the brain to the mouth as it is made.

    The brain hands a `Speech` to the mouth as soon as translation starts, in utterance order, and
    adds one `ClauseAudio` per clause, each filled by its own TTS stream (several at once); the mouth
    plays the clauses in order, each as its frames arrive, and each `Speech` to its end before the next.
    """

    def __init__(self, utterance: Utterance, language: str) -> None:
        self.utterance = utterance
        self.language = language
        self.parts: list[ClauseAudio] = []
        self.failed = False
        self.audio_frames = 0  # frames synthesized
        self.played_s = 0.0  # seconds handed to the mouth
        self.trimmed_s = 0.0  # seconds of silence not played (TRIM_SILENCE)
        self.speed = 1.0  # the speaking rate the TTS was asked for
        self.first_audio_at: float | None = None  # clock time the first frame was ready
        self.caption_only = False  # too late to speak: its translation is a caption only
        self.mouth_done = False  # the mouth has played what it will of this speech
        self.caption_final = False  # the final translated caption was published
        self._changed = asyncio.Event()
        self._input_ended = False  # no more clauses will be added
        self._ended = False

    @property
    def text(self) -> str:
        """The translation so far (every clause sent to TTS, spoken or not)."""
        return " ".join(part.text for part in self.parts)

    def add_clause(self, text: str) -> ClauseAudio:
        if self._input_ended:
            raise RuntimeError("Speech input already ended")
        part = ClauseAudio(text)
        self.parts.append(part)
        self._changed.set()
        return part

    def push(self, part: ClauseAudio, frame: rtc.AudioFrame, *, final: bool = False) -> None:
        """Add a frame of `part`; `final`: the last frame of that clause's synthesis."""
        self.audio_frames += 1
        part.frames.append(frame)
        part.final = part.final or final
        self._changed.set()

    def finish(self, part: ClauseAudio) -> None:
        """`part`'s synthesis is complete."""
        part.final = True
        self._changed.set()

    @property
    def input_ended(self) -> bool:
        return self._input_ended

    def fail(self, part: ClauseAudio) -> None:
        """`part` could not be synthesized: the audio stops there (the caption still carries it)."""
        part.failed = True
        self.failed = True
        self._changed.set()

    def restart(self, part: ClauseAudio) -> None:
        part.restart()
        self._changed.set()

    def end_input(self) -> None:
        """No more clauses will be added."""
        self._input_ended = True
        self._changed.set()

    def end(self, *, failed: bool = False) -> None:
        """Nothing more will be added to any clause: the mouth plays what is there and moves on."""
        self.failed = self.failed or failed
        self._input_ended = self._ended = True
        self._changed.set()

    async def frames(
        self, trim: SilenceTrim | None = None
    ) -> AsyncIterator[tuple[rtc.AudioFrame, bool, bool]]:
        """(frame, join, last) until the speech ends or a clause fails. `join`: the frame follows a
        cut (the first frame, or one right after a skip); `last`: no frame follows it. `trim`: silence
        at clause boundaries beyond a short gap is not played (see `agent.loops.mouth.trim`); None plays it
        all."""
        try:
            async for item in self._frames(trim):
                yield item
        finally:
            for part in self.parts:
                part.played.set()

    async def _frames(self, trim: SilenceTrim | None) -> AsyncIterator[tuple[rtc.AudioFrame, bool, bool]]:
        index, join, attempt = 0, True, 0
        if trim is not None:
            trim.begin_speech()
        while True:
            if index < len(self.parts):
                part = self.parts[index]
                if trim is not None and part.attempts != attempt:
                    trim.restart()  # the held silence is made again by the new attempt
                    attempt = part.attempts
                if part.cursor < len(part.frames):
                    frame: rtc.AudioFrame | None = part.frames[part.cursor]
                    part.cursor += 1
                    if part.skip_s > 0 and frame is not None:
                        frame, part.skip_s = _skip(frame, part.skip_s)
                        join = True
                    if frame is None:
                        continue
                    ends = part.cursor == len(part.frames) and part.final and self._input_ended
                    ends = ends and index == len(self.parts) - 1
                    if trim is None:
                        out, dropped_s = [frame], 0.0
                    else:
                        trimmed = trim.feed(frame)
                        out, dropped_s = trimmed.frames, trimmed.dropped_s
                        ends = ends and not trim.holding
                    for item in self._hand_over(part, out, dropped_s, join, ends):
                        yield item
                        join = False
                    continue
                if part.failed:
                    return
                if part.final or self._ended:
                    if trim is not None:
                        trimmed = trim.end_clause()
                        ends = part.final and self._input_ended and index == len(self.parts) - 1
                        for item in self._hand_over(part, trimmed.frames, trimmed.dropped_s, join, ends):
                            yield item
                            join = False
                    part.frames.clear()  # played: free it
                    part.played.set()
                    index, attempt = index + 1, 0
                    continue
            elif self._input_ended:
                return
            self._changed.clear()
            await self._changed.wait()

    def _hand_over(
        self, part: ClauseAudio, out: list[rtc.AudioFrame], dropped_s: float, join: bool, ends: bool
    ) -> list[tuple[rtc.AudioFrame, bool, bool]]:
        """`out` as (frame, join, last) items. All of it counts as played before the first is yielded,
        so a restart while they are being played skips them all."""
        seconds = duration(out)
        part.played_s += seconds + dropped_s
        self.played_s += seconds
        self.trimmed_s += dropped_s
        return [(f, join and i == 0, ends and i == len(out) - 1) for i, f in enumerate(out)]


def _skip(frame: rtc.AudioFrame, seconds: float) -> tuple[rtc.AudioFrame | None, float]:
    """Drop the first `seconds` of a frame: (what is left or None, seconds still to skip)."""
    n = frame.samples_per_channel
    drop = min(n, round(seconds * frame.sample_rate))
    left = seconds - drop / frame.sample_rate if drop == n else 0.0
    if drop == n:
        return None, max(0.0, left)
    data = memoryview(frame.data).cast("B")[drop * 2 * frame.num_channels :]
    rest = rtc.AudioFrame(
        data=bytes(data),
        sample_rate=frame.sample_rate,
        num_channels=frame.num_channels,
        samples_per_channel=n - drop,
    )
    return rest, 0.0
