"""A speaker's microphone in the room harness: its audio spoken in real time into a local track, and, with a
loudspeaker, the interpretation the room plays mixed in live, 150 ms late at −10 dB.

The echo's words go onto the microphone's timeline as they are mixed in. A voiced stretch of the
interpretation played (10 ms windows above −40 dBFS, stretches apart by 100 ms of silence or more) is the
translation whose audio started last when the stretch began: the room contract sends a translated caption
(not final) when its audio starts (docs/room-contract.md), so the newest segment of the loudspeaker's
language is the one playing. Its words are spread by characters over its stretches, from the first one's
start (over the length the fake TTS gives the caption until a stretch has ended, then to that end).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import numpy as np
from livekit import rtc

from bench.hall.mixes import ECHO_DELAY_S, ECHO_GAIN_DB, RATE, Mic
from bench.hall.words import spread
from tests.fakes.timed_words import TimedWord
from tests.loopback import LoudspeakerPath

WINDOW = RATE // 100
VOICED = 0.01  # full scale 1.0, of what the loudspeaker plays
STRETCH_GAP_S = 0.1
QUEUE_MS = 100  # the microphone's source is kept this far ahead of what is spoken


class EchoWords:
    """Puts the loudspeaker's words on the microphone's timeline, stretch by stretch."""

    def __init__(
        self, mic: Mic, playing: Callable[[], tuple[str, str] | None], duration_for: Callable[[str], float]
    ):
        self._mic, self._playing, self._duration_for = mic, playing, duration_for
        self.stretches: list[tuple[float, float]] = []
        self._open: tuple[float, float] | None = None  # (start, last voiced end)
        self._words: list[TimedWord] = []  # the words of the translation playing
        self._segment: str | None = None  # ... its segment id
        self._text = ""  # ... its text
        self._from = 0.0  # ... where its first stretch began
        self._translations = 0  # translations heard so far

    def hear(self, played: np.ndarray, at: float) -> None:
        """`played` (what the loudspeaker played, at full level) went into the microphone at `at` (s)."""
        for i in range(0, len(played) - WINDOW + 1, WINDOW):
            t = at + i / RATE
            rms = float(np.sqrt(np.mean(np.square(played[i : i + WINDOW] / 32768.0))))
            if rms >= VOICED:
                if self._open is None:
                    self._open = (t, t + WINDOW / RATE)
                    self._begin(t)
                else:
                    self._open = (self._open[0], t + WINDOW / RATE)
            elif self._open is not None and t - self._open[1] >= STRETCH_GAP_S:
                self._place(self._open[1])
                self.stretches.append(self._open)
                self._open = None

    def _begin(self, t: float) -> None:
        """A stretch begins at `t`: of the translation playing now, the one before's or a new one."""
        playing = self._playing()
        if playing is None:
            return
        segment, self._text = playing
        if segment != self._segment:
            self._segment, self._from, self._words = segment, t, []
            self._translations += 1
        self._place(max(t + WINDOW / RATE, self._from + self._duration_for(self._text)))

    def _place(self, end: float) -> None:
        """The translation playing's words spread over its stretches, from the first one's start to `end`."""
        if self._segment is None:
            return
        timeline = self._mic.timeline
        timeline.words = [w for w in timeline.words if w not in self._words]
        k = self._translations - 1
        words = spread(self._text.split(), [(self._from, end)]) if self._text else []
        self._words = [
            TimedWord(a, b, w, "echo", k, i, "es", ECHO_GAIN_DB) for i, (w, a, b) in enumerate(words)
        ]
        timeline.add(*self._words)


class MicSpeaker:
    """A microphone's audio spoken in real time into a local track (`t0`: the clock time its first sample
    was spoken, perf_counter), with a loudspeaker's echo when `echo` is given."""

    def __init__(self, mic: Mic, echo: EchoWords | None = None) -> None:
        self.mic, self.echo = mic, echo
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=QUEUE_MS)
        self.track = rtc.LocalAudioTrack.create_audio_track(f"{mic.speaker}-mic", self.source)
        self.t0: float | None = None
        self.done = asyncio.Event()
        # the loudspeaker's delay: what the microphone takes now is spoken a full queue later
        self._path = LoudspeakerPath(max(0, round((ECHO_DELAY_S - QUEUE_MS / 1000) * RATE)))
        self._tasks: list[asyncio.Task[None]] = []

    def loudspeaker(self, track: rtc.Track) -> None:
        """Play `track` (the interpretation) next to the microphone."""
        self._tasks.append(asyncio.create_task(self._play(track)))

    async def _play(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream.from_track(track=track, sample_rate=RATE, num_channels=1)
        try:
            async for event in stream:
                self._path.play(np.frombuffer(event.frame.data, np.int16).astype(np.float64))
        finally:
            await stream.aclose()

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._speak()))

    async def _speak(self) -> None:
        """Frames are pushed as fast as the source takes them: its queue stays full, so it never runs dry
        (a dry local source plays silence, which would shift the rest of the speech on the timeline)."""
        position, step = 0, RATE // 50
        try:
            for start in range(0, len(self.mic.pcm), step):
                chunk = self.mic.pcm[start : start + step]
                own = np.pad(chunk, (0, step - len(chunk))).astype(np.float64)
                if self.t0 is None:
                    self.t0 = time.perf_counter()  # an empty queue plays the first frame at once
                if self.echo is not None:
                    played = self._path.picked_up(len(own))
                    self.echo.hear(played, position / RATE)
                    own = own + played * 10 ** (ECHO_GAIN_DB / 20)
                mixed = np.clip(np.round(own), -32768, 32767).astype(np.int16)
                await self.source.capture_frame(rtc.AudioFrame(mixed.tobytes(), RATE, 1, len(mixed)))
                position += len(mixed)
        finally:
            self.done.set()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.source.aclose()
