"""A recording of speech put on the timeline of what was said (`bench.hall.received`): the shift found by
cross-correlating 10 ms RMS envelopes, refined to the sample by the waveforms' correlation within ±10 ms of
it; what is left of the shift in each 1 s stretch of speech is the drift (a receiver changing its playout
delay, mostly in the pauses)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.run.filemode import Pcm

ENVELOPE_S = 0.01
REFINE_S = 0.01  # the waveforms' correlation looks this far either side of the envelopes' shift
DRIFT_BLOCK_S = 1.0
DRIFT_SPAN_S = 0.15  # ... and each 1 s stretch this far either side of the global shift


@dataclass(frozen=True)
class Aligned:
    pcm: Pcm  # the recording on the said audio's timeline, same length and rate
    offset_ms: float  # the recording lagged what was said by this
    correlation: float  # the waveforms' normalised correlation at that shift (1: identical)
    drift_ms: float  # the largest shift left in any 1 s stretch of speech


def envelope(samples: np.ndarray, rate: int) -> np.ndarray:
    n = int(rate * ENVELOPE_S)
    usable = samples[: len(samples) // n * n].astype(np.float64).reshape(-1, n)
    return np.asarray(np.sqrt(np.mean(usable**2, axis=1)))


def best_lag(said: np.ndarray, heard: np.ndarray, around: int, span: int) -> tuple[int, float]:
    """The shift in `around` ± `span` (samples) at which `heard[shift + t]` is most like `said[t]`, and the
    normalised correlation there (said: float, heard: float, zero-padded as needed)."""
    best, best_c = around, -1.0
    norm_said = float(np.linalg.norm(said)) or 1.0
    for lag in range(around - span, around + span + 1):
        part = _window(heard, lag, len(said))
        c = float(np.dot(said, part)) / (norm_said * (float(np.linalg.norm(part)) or 1.0))
        if c > best_c:
            best, best_c = lag, c
    return best, best_c


def _window(samples: np.ndarray, start: int, n: int) -> np.ndarray:
    """samples[start : start + n], zero-padded where it runs off either end."""
    out = np.zeros(n, samples.dtype)
    lo, hi = max(start, 0), min(start + n, len(samples))
    if hi > lo:
        out[lo - start : hi - start] = samples[lo:hi]
    return out


def align(pcm: Pcm, recording: np.ndarray, at_say: int) -> Aligned:
    """`recording` on `pcm`'s timeline (it lags by a shift found here), same length; `at_say`: how much had
    been recorded when the first sample was said."""
    rate = pcm.sample_rate
    said, heard = pcm.samples.astype(np.float64), recording.astype(np.float64)
    es, eh = envelope(pcm.samples, rate), envelope(recording, rate)
    es, eh = es - es.mean(), eh - (eh.mean() if len(eh) else 0.0)
    n = int(rate * ENVELOPE_S)
    if len(eh) and np.any(es):
        corr = np.correlate(eh, es, mode="full")  # index k: a shift of k - (len(es) - 1) windows
        coarse = (int(np.argmax(corr)) - (len(es) - 1)) * n
    else:
        coarse = 0
    lag, correlation = best_lag(said, heard, coarse, int(rate * REFINE_S))
    drift = 0
    block, span = int(rate * DRIFT_BLOCK_S), int(rate * DRIFT_SPAN_S)
    for start in range(0, len(said) - block + 1, block):
        part = said[start : start + block]
        if np.sqrt(np.mean(part**2)) > 300:  # speech in it (about -40 dBFS)
            local, _ = best_lag(part, heard, lag + start, span)
            drift = max(drift, abs(local - lag - start))
    out = _window(recording, lag, len(pcm.samples)).astype(np.int16)
    offset_ms, drift_ms = 1000 * (lag - at_say) / rate, 1000 * drift / rate
    return Aligned(Pcm(out, rate), offset_ms=offset_ms, correlation=correlation, drift_ms=drift_ms)
