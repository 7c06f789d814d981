"""What the ears heard of one speaker and the STT has not finalized yet: replayed to a reopened stream.

The speaker's audio timeline (seconds of audio received) is kept here with the frames since the last
final word, and those that arrived while the STT link was down: a reopened stream first hears them
again, so words spoken during a gap are transcribed once the link is back, and none twice. The buffer
is bounded (`limit_s`); what falls off it while the link is down is never transcribed, and reported.
`AudioClock` tells when a moment of that timeline was spoken.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator

import numpy as np
from livekit import rtc

logger = logging.getLogger("agent.ears")


class AudioClock:
    """Maps the speaker's audio timeline (seconds of audio received) to clock time.

    Each frame is noted with the clock time it arrived. Live audio arrives in real time, so the
    moment audio time T was spoken is the arrival of the frame holding T, less what of that frame
    came after T.
    """

    def __init__(self, maxlen: int = 6000) -> None:
        self._points: deque[tuple[float, float]] = deque(maxlen=maxlen)  # (audio end, arrived at)

    @property
    def points(self) -> int:
        """The frames noted (the newest `maxlen` are kept)."""
        return len(self._points)

    def note(self, audio_end: float, arrived_at: float) -> None:
        self._points.append((audio_end, arrived_at))

    def to_clock(self, audio_t: float) -> float | None:
        if not self._points:
            return None
        # the frame holding audio_t: the oldest point whose audio end reaches it (searched from the
        # newest, since what is asked about is recent); later than everything noted: extrapolate
        point = self._points[-1]
        for audio_end, arrived_at in reversed(self._points):
            if audio_end < audio_t:
                break
            point = (audio_end, arrived_at)
        audio_end, arrived_at = point
        return arrived_at - (audio_end - audio_t)

    def to_audio(self, at: float) -> float | None:
        """The inverse: the audio time spoken at clock time `at` (the frame that arrived first at or after
        it, less what of it came after `at`); earlier or later than everything noted: extrapolated."""
        if not self._points:
            return None
        point = self._points[-1]
        for audio_end, arrived_at in reversed(self._points):
            if arrived_at < at:
                break
            point = (audio_end, arrived_at)
        audio_end, arrived_at = point
        return max(0.0, audio_end - (arrived_at - at))


class ReplayBuffer:
    """One speaker's audio timeline and the audio on it not finalized yet (true while any is kept)."""

    def __init__(self, limit_s: float, *, speaker: str) -> None:
        self._limit_s = limit_s
        self._speaker = speaker
        self.timeline = 0.0  # seconds of audio received so far
        self.clock = AudioClock()
        self._pending: deque[tuple[float, rtc.AudioFrame]] = deque()  # (audio start, frame)
        self.dropped_s = 0.0  # audio that fell off the buffer while the link was down

    def __bool__(self) -> bool:
        return bool(self._pending)

    @property
    def pending_frames(self) -> int:
        """The frames kept: what a reopened stream would hear again."""
        return len(self._pending)

    @property
    def start(self) -> float:
        """Where the audio kept begins on the timeline (its end when nothing is kept)."""
        return self._pending[0][0] if self._pending else self.timeline

    def frames(self) -> Iterator[rtc.AudioFrame]:
        """The audio kept, oldest first: what a reopened stream hears before going live."""
        return (frame for _, frame in self._pending)

    def timed_frames(self) -> Iterator[tuple[float, rtc.AudioFrame]]:
        """The audio kept, oldest first, each frame with where it starts on the timeline."""
        return iter(self._pending)

    def level(self, start: float, end: float) -> float:
        """The RMS (full scale 1.0) of the audio kept between `start` and `end` on the timeline (whole
        frames overlapping it); 0.0 when none is kept there."""
        squares, count = 0.0, 0
        for at, frame in self._pending:
            if at >= end:
                break
            if at + frame.samples_per_channel / frame.sample_rate <= start:
                continue
            samples = np.frombuffer(frame.data, dtype=np.int16).astype(np.float64) / 32768.0
            squares += float(np.sum(np.square(samples)))
            count += samples.size
        return (squares / count) ** 0.5 if count else 0.0

    def add(self, frame: rtc.AudioFrame, arrived_at: float, *, link_up: bool) -> None:
        """A frame received at clock time `arrived_at`; `link_up`: a stream is there to hear it."""
        start = self.timeline
        self.timeline += frame.samples_per_channel / frame.sample_rate
        self.clock.note(self.timeline, arrived_at)
        self._pending.append((start, frame))
        self._trim(link_up)

    def _trim(self, link_up: bool) -> None:
        while self._pending and self.timeline - self._pending[0][0] > self._limit_s:
            _, frame = self._pending.popleft()
            if not link_up:  # the link is down: this audio will never be transcribed
                if self.dropped_s == 0:
                    logger.error(
                        "speech recognition down longer than the replay buffer; audio is being lost",
                        extra={"speaker": self._speaker, "replay_limit_s": self._limit_s},
                    )
                self.dropped_s += frame.samples_per_channel / frame.sample_rate

    def finalized_until(self, audio_t: float) -> None:
        """Audio before `audio_t` has been transcribed: it is never replayed (a frame that straddles
        `audio_t` keeps only its part after it, so a finalized word cannot be heard twice)."""
        while self._pending:
            start, frame = self._pending[0]
            duration = frame.samples_per_channel / frame.sample_rate
            if start + duration <= audio_t:
                self._pending.popleft()
                continue
            if start < audio_t:
                cut = round((audio_t - start) * frame.sample_rate)
                if 0 < cut < frame.samples_per_channel:
                    self._pending[0] = (start + cut / frame.sample_rate, _tail(frame, cut))
            break


def _tail(frame: rtc.AudioFrame, skip_samples: int) -> rtc.AudioFrame:
    """The frame without its first `skip_samples` samples (per channel)."""
    data = frame.data[skip_samples * frame.num_channels :]
    return rtc.AudioFrame(
        data=data.tobytes(),
        sample_rate=frame.sample_rate,
        num_channels=frame.num_channels,
        samples_per_channel=frame.samples_per_channel - skip_samples,
    )
