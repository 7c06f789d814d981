"""The received audio's timeline for the fake Deepgram's connections (`/v1/listen` and Flux's `/v2/listen`).

`AudioClock` takes the connection's linear16 audio as it arrives and cuts it into 10 ms VAD windows; each
window is voiced or not (its energy against a threshold, or, with a timed recognizer, the recognizer's words
by time) and is handed to `_on_window` with its span on the connection's own timeline, which starts at 0 on
every connection. Time is the audio received, not the wall clock, so what the fakes send is deterministic.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from tests.fakes.timed_words import TimedRecognizer

VAD_WINDOW_S = 0.01


class AudioRecord(Protocol):
    """What the clock keeps up to date on its connection's record."""

    audio_s: float


class AudioClock:
    """VAD windows over one connection's audio; subclasses act on each window (`_on_window`)."""

    def __init__(
        self,
        record: AudioRecord,
        *,
        sample_rate: int,
        vad_threshold: float,
        recognizer: TimedRecognizer | None = None,
    ) -> None:
        self.record = record
        self.recognizer = recognizer
        self.sample_rate = sample_rate
        self._vad_threshold = vad_threshold
        self._window = max(1, int(sample_rate * VAD_WINDOW_S))
        self._pending = bytearray()
        self._samples = 0

    @property
    def heard_s(self) -> float:
        """The audio heard so far (whole VAD windows, or all after a flush), on the connection's timeline."""
        return self._samples / self.sample_rate

    def feed(self, data: bytes) -> None:
        self.record.audio_s += len(data) / 2 / self.sample_rate
        self._pending += data
        usable = len(self._pending) // (2 * self._window) * (2 * self._window)
        if self.recognizer is not None:  # held until the microphone's audio is found in the stream
            self.recognizer.hear(np.frombuffer(data, dtype="<i2"))
            settled = max(0, self.recognizer.settled - self._samples) // self._window * self._window
            usable = min(usable, 2 * settled)
        if usable:
            self._vad(bytes(self._pending[:usable]), self._window)
            del self._pending[:usable]

    def flush(self) -> None:
        """Hear the audio left over from the last whole VAD window (a flush covers all audio sent)."""
        usable = len(self._pending) // 2 * 2
        if usable:
            self._vad(bytes(self._pending[:usable]), usable // 2)
            del self._pending[:usable]

    def _vad(self, data: bytes, window: int) -> None:
        pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        rms = np.sqrt(np.mean(np.square(pcm.reshape(-1, window)), axis=1))
        for level in rms:
            start = self._samples / self.sample_rate
            self._samples += window
            end = self._samples / self.sample_rate
            if self.recognizer is not None:
                voiced = self.recognizer.voiced(start, end)  # the reference's words, not the energy
            else:
                voiced = bool(level >= self._vad_threshold)
            self._on_window(voiced, start, end)

    def _on_window(self, voiced: bool, start: float, end: float) -> None:
        raise NotImplementedError
