"""Local `rtc` objects standing in for the room: a speaker's track in, the interpretation track out."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

import numpy as np
from livekit import rtc

from agent.room.room_io import track_frames
from agent.run.filemode import Pcm, paced_frames


class LoopbackSpeaker:
    """A WAV spoken in real time into a local audio track, read back as a subscribed track would be."""

    def __init__(self, pcm: Pcm) -> None:
        self._pcm = pcm
        self.source = rtc.AudioSource(pcm.sample_rate, 1, queue_size_ms=100)
        self.track = rtc.LocalAudioTrack.create_audio_track("speaker-mic", self.source)
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start speaking (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._speak())

    async def _speak(self) -> None:
        try:
            async for frame in paced_frames(self._pcm):
                await self.source.capture_frame(frame)
        finally:
            self.done.set()

    async def frames(self, tail_s: float = 0.5) -> AsyncIterator[rtc.AudioFrame]:
        """The track's frames; ends `tail_s` after the speaker is done (the track itself never ends:
        an idle local source keeps yielding silence, as a muted-but-published mic would)."""
        frames = track_frames(self.track)
        assert isinstance(frames, AsyncGenerator)  # closed below, at once, not when collected
        self.start()
        tail = 0.0
        try:
            async for frame in frames:
                yield frame
                if self.done.is_set():
                    tail += frame.samples_per_channel / frame.sample_rate
                    if tail >= tail_s:
                        return
        finally:
            await frames.aclose()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.source.aclose()


class LoopbackListener:
    """Listens to the interpreter's published source through a local track, as a room member would."""

    def __init__(self, sample_rate: int, track: rtc.LocalAudioTrack | None = None) -> None:
        self.sample_rate = sample_rate
        self.source = rtc.AudioSource(sample_rate, 1, queue_size_ms=400)
        self.track = track or rtc.LocalAudioTrack.create_audio_track("interpretation", self.source)
        self.frames: list[tuple[float, np.ndarray]] = []  # (arrival time, samples)
        self._task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        stream = rtc.AudioStream.from_track(track=self.track, sample_rate=self.sample_rate, num_channels=1)
        try:
            async for event in stream:
                self.frames.append((time.perf_counter(), np.frombuffer(event.frame.data, np.int16).copy()))
        finally:
            await stream.aclose()

    def audio(self) -> np.ndarray:
        return np.concatenate([s for _, s in self.frames]) if self.frames else np.zeros(0, np.int16)

    async def aclose(self) -> None:
        await self.source.wait_for_playout()
        await asyncio.sleep(0.1)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.source.aclose()


def tone_sequence(
    samples: np.ndarray, sample_rate: int, *, window_s: float = 0.02, min_windows: int = 1
) -> list[float]:
    """The dominant frequency of each non-silent run of audio, in order (consecutive repeats merged).

    `min_windows` > 1 ignores runs of a frequency shorter than that many windows: through a codec (Opus in a
    real room) a tone's onset and tail are smeared, and a window holding only a sliver of it reads wrong."""
    n = int(sample_rate * window_s)
    runs: list[list[float]] = []  # [frequency, windows]
    for start in range(0, len(samples) - n, n):
        w = samples[start : start + n].astype(np.float32)
        if np.sqrt(np.mean(w**2)) < 1000:
            continue
        spectrum = np.abs(np.fft.rfft(w * np.hanning(n)))
        freq = float(np.fft.rfftfreq(n, 1 / sample_rate)[int(np.argmax(spectrum))])
        freq = round(freq / 100) * 100  # 50 Hz bins at 20 ms: round to the scenario's 100 Hz grid
        if runs and runs[-1][0] == freq:
            runs[-1][1] += 1
        else:
            runs.append([freq, 1])
    out: list[float] = []
    for freq, windows in runs:
        if windows >= min_windows and (not out or out[-1] != freq):
            out.append(freq)
    return out


def delayed(pcm: Pcm, seconds: float) -> Pcm:
    """The same speech, starting `seconds` later."""
    silence = np.zeros(round(seconds * pcm.sample_rate), dtype=np.int16)
    return Pcm(np.concatenate([silence, pcm.samples]), pcm.sample_rate)


async def eventually(condition: Callable[[], bool], within_s: float = 30.0, what: str = "condition") -> None:
    """Wait until `condition()` holds (polling); fail the test after `within_s` seconds."""

    async def holds() -> bool:
        return condition()

    await eventually_async(holds, within_s, what, poll_s=0.05)


async def eventually_async(
    condition: Callable[[], Awaitable[bool]],
    within_s: float = 30.0,
    what: str = "condition",
    poll_s: float = 0.2,
) -> None:
    """`eventually` for a condition that must be awaited (it asks a process, a server)."""
    deadline = time.perf_counter() + within_s
    while not await condition():
        if time.perf_counter() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(poll_s)


class LoudspeakerPath:
    """What a loudspeaker plays reaching a microphone next to it `delay` samples later: `play` what it
    played (as it arrives), `picked_up(n)` the microphone's next `n` samples of it (silence until `delay`
    samples have piled up: the delay)."""

    def __init__(self, delay: int) -> None:
        self._delay = delay
        self._played: deque[np.ndarray] = deque()  # played, not yet in the microphone
        self._samples = 0

    def play(self, samples: np.ndarray) -> None:
        self._played.append(samples)
        self._samples += len(samples)

    def picked_up(self, n: int) -> np.ndarray:
        out = np.zeros(n)
        if self._samples < n + self._delay:
            return out
        filled = 0
        while filled < n:
            chunk = self._played.popleft()
            take = min(n - filled, len(chunk))
            out[filled : filled + take] = chunk[:take]
            if take < len(chunk):
                self._played.appendleft(chunk[take:])
            filled += take
        self._samples -= n
        return out
