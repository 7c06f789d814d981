"""Where each translation starts in what the listener heard: the fake TTS sounds each translation's first
clause at a tone its utterance id picks (`bench.harness.modelled_providers.tagged_freq`), every other
clause at OTHER_HZ, so the first frame of each utterance is found by its content, even right after the
previous one."""

from __future__ import annotations

import numpy as np

from bench.harness.modelled_providers import OTHER_HZ, TAG_HZ
from tests.participants import LISTEN_RATE


class Heard:
    """The listener's interpretation audio, each 20 ms window labelled with which tagged tone it holds:
    -1 silence or a mix, 0 the other clauses' tone, 1 + k the first-clause tone TAG_HZ[k]."""

    WINDOW = 480  # 20 ms at 24 kHz: 50 Hz bins, the tags are 100 Hz apart
    HOP = 120

    def __init__(self, frames: list[tuple[float, np.ndarray]]) -> None:
        self.x = np.concatenate([s for _, s in frames]).astype(np.float32) if frames else np.zeros(0)
        self.frame_end = np.cumsum([len(s) for _, s in frames]) if frames else np.zeros(0, int)
        self.arrival = np.array([t for t, _ in frames])
        freqs = np.array([OTHER_HZ, *TAG_HZ])
        t = np.arange(self.WINDOW) / LISTEN_RATE
        basis = np.hanning(self.WINDOW)[:, None] * np.exp(-2j * np.pi * t[:, None] * freqs[None, :])
        n = max(0, (len(self.x) - self.WINDOW) // self.HOP + 1)
        self.starts = np.arange(n) * self.HOP
        labels = np.full(n, -1, int)
        for lo in range(0, n, 4000):
            idx = self.starts[lo : lo + 4000, None] + np.arange(self.WINDOW)[None, :]
            w = self.x[idx]
            rms = np.sqrt(np.mean(w**2, axis=1))
            power = np.abs(w @ basis) ** 2
            order = np.sort(power, axis=1)
            clear = (rms > 800) & (order[:, -1] > 4 * order[:, -2])
            labels[lo : lo + 4000] = np.where(clear, np.argmax(power, axis=1), -1)
        self.labels = labels
        self.centre_time = np.array([self.time_of(int(s) + self.WINDOW // 2) for s in self.starts])

    def time_of(self, sample: int) -> float:
        """When the frame holding this sample arrived."""
        i = int(np.searchsorted(self.frame_end, sample, side="right"))
        return float(self.arrival[min(i, len(self.arrival) - 1)])

    def onset(self, freq: float, after: float) -> float | None:
        """Arrival of the first frame of a run of `freq` (≥ 2 windows) that starts after `after`."""
        label = 1 + TAG_HZ.index(freq)
        candidates = np.nonzero((self.labels == label) & (self.centre_time >= after))[0]
        for w in candidates:
            if w > 0 and self.labels[w - 1] == label:
                continue  # inside a run that began earlier (the previous utterance's tag)
            if w + 1 >= len(self.labels) or self.labels[w + 1] != label:
                continue  # a glitch
            start = int(self.starts[w])
            sample = start + self.WINDOW // 2  # after another tone: about the window's middle
            if w == 0 or self.labels[w - 1] == -1:  # after silence: the first loud sample
                lo = max(0, start - self.HOP)
                loud = np.nonzero(np.abs(self.x[lo : start + self.WINDOW]) > 1500)[0]
                if len(loud):
                    sample = lo + int(loud[0])
            return self.time_of(sample)
        return None
