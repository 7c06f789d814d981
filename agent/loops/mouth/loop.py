"""Mouth: plays each `Speech` in order into an audio output (the published `rtc.AudioSource`).

Frames arrive at the TTS's sample rate (24 kHz), which is the source's rate, so nothing is resampled.
Each utterance's audio fades in over a few milliseconds and its last frame fades out, so joins
between segments do not click. The mouth notes when each utterance's audio started and finished
playing, and publishes the translated caption when its audio starts (updated when it ends).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import numpy as np
from livekit import rtc

from agent.loops.captions import CaptionSink, translated_caption
from agent.loops.models import Speech
from agent.loops.mouth.trim import SilenceTrim, TrimOptions
from agent.loops.pace import Pace
from agent.telemetry.latency import LatencyTracker, Mark

logger = logging.getLogger("agent.mouth")

# How much audio the published source buffers ahead of playout. Everything queued there is heard
# later by that much, so it is kept small; 200 ms still absorbs the event loop's hiccups.
OUTPUT_QUEUE_MS = 200
PLAYED_KEPT = 100


class AudioOutput(Protocol):
    """What the mouth plays into; `rtc.AudioSource` is one."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def queued_duration(self) -> float: ...

    async def capture_frame(self, frame: rtc.AudioFrame) -> None: ...


def fade(frame: rtc.AudioFrame, *, fade_in: bool, fade_out: bool, fade_s: float) -> rtc.AudioFrame:
    """A copy of the frame with a linear fade over its first and/or last `fade_s` seconds."""
    if not (fade_in or fade_out):
        return frame
    samples = np.frombuffer(frame.data, dtype=np.int16).astype(np.float32)
    samples = samples.reshape(-1, frame.num_channels)
    n = min(len(samples), max(1, int(frame.sample_rate * fade_s)))
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
    if fade_in:
        samples[:n] *= ramp
    if fade_out:
        samples[-n:] *= ramp[::-1]
    return rtc.AudioFrame(
        data=samples.astype(np.int16).tobytes(),
        sample_rate=frame.sample_rate,
        num_channels=frame.num_channels,
        samples_per_channel=frame.samples_per_channel,
    )


class Mouth:
    def __init__(
        self,
        *,
        output: AudioOutput,
        inbox: asyncio.Queue[Speech | None],
        tracker: LatencyTracker,
        captions: CaptionSink | None = None,
        fade_s: float = 0.005,
        on_playing: Callable[[bool], None] | None = None,
        pace: Pace | None = None,
        trim: TrimOptions | None = None,
        wait_turn: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._output = output
        # awaited before each speech: another interpreter handing this room over may still be speaking
        self._wait_turn = wait_turn
        self._inbox = inbox
        self._tracker = tracker
        self._captions = captions
        self._fade_s = fade_s
        self._on_playing = on_playing  # told True when an utterance starts playing, False when it ends
        self._pace = pace
        # one trim for all the speeches, so the gap also holds from one utterance to the next
        self._trim = SilenceTrim(trim) if trim is not None else None  # None: every frame is played
        self._playout_end = float("-inf")  # when the audio played so far ends
        # the latest utterance ids in the order their audio played (bounded: sessions run for hours)
        self.played: deque[str] = deque(maxlen=PLAYED_KEPT)

    async def run(self) -> None:
        while (speech := await self._inbox.get()) is not None:
            if self._wait_turn is not None:
                await self._wait_turn()
            try:
                await self._play(speech)
            finally:
                if self._on_playing is not None and self._inbox.empty():
                    self._on_playing(False)

    async def _play(self, speech: Speech) -> None:
        ids = speech.utterance.record_ids
        first = True
        async for frame, join, last in speech.frames(self._trim):
            if first and frame.sample_rate != self._output.sample_rate:
                raise ValueError(
                    f"TTS audio at {frame.sample_rate} Hz cannot play on a {self._output.sample_rate} Hz"
                    " source: configure both to the same rate"
                )
            frame = fade(frame, fade_in=join, fade_out=last, fade_s=self._fade_s)
            if first:
                now = self._tracker.clock()
                heard_at = now + self._output.queued_duration  # once what is queued ahead has played
                self._tracker.mark(ids, Mark.FIRST_FRAME, at=now)
                self._tracker.mark(ids, Mark.PLAYOUT_START, at=heard_at)
                if self._pace is not None and speech.first_audio_at is not None:
                    # > 0: the audio waited that long for the track; < 0: the track was idle that long
                    self._pace.observe(max(-10.0, self._playout_end - speech.first_audio_at))
                if self._on_playing is not None:
                    self._on_playing(True)
                if self._captions is not None:
                    self._captions.publish(translated_caption(speech, final=False))
                first = False
            await self._output.capture_frame(frame)
        speech.mouth_done = True
        if speech.trimmed_s > 0:
            logger.debug(
                "silence between clauses not played",
                extra={"utterance_id": speech.utterance.id, "trimmed_ms": round(speech.trimmed_s * 1000)},
            )
        if first:  # no audio at all: the brain reported why, and publishes the caption if any
            self._tracker.complete(ids, spoken=False, outcome="captioned" if speech.caption_only else None)
            return
        self._playout_end = self._tracker.clock() + self._output.queued_duration
        self._tracker.mark(ids, Mark.PLAYOUT_END, at=self._playout_end)
        if self._pace is not None:
            u = speech.utterance
            self._pace.observe_ratio(speech.played_s * speech.speed, u.audio_end - u.audio_start)
        self._tracker.complete(ids, spoken=not speech.failed)
        self.played.append(speech.utterance.id)
        if self._captions is not None and speech.input_ended and not speech.caption_final:
            speech.caption_final = True  # else the brain publishes it once the translation is complete
            self._captions.publish(translated_caption(speech, final=True))
