"""No dead air inside a translation: silence at a clause boundary beyond a short natural gap is not played.

Each clause is its own TTS context, and a context's audio may end (and start) with silence. The mouth
plays frames as they arrive, so a silent stretch is only known to be trailing once its clause ends.
`SilenceTrim` therefore holds back silent audio, never voiced audio (speech is never delayed): a voiced
frame that follows releases what was held (a pause inside the clause, played as it was), and the end of
the clause drops what is held beyond the kept gap. The silence kept across one clause boundary, the
clause's trailing silence plus the next one's leading silence, is at most `gap_s`. The mouth keeps one
`SilenceTrim` for all it plays, so the same holds from one utterance's last clause to the next one's first
(back to back in a monologue); after the track was idle, the next clause's leading silence is cut just
the same: it only delays the voice.

Silence is judged in 10 ms windows by their RMS level, and frames are cut at window edges, so a cut
always falls inside silence, next to at least `gap_s` of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from livekit import rtc

# The silence kept at a clause boundary. Chosen, not measured: ~100 ms still marks the boundary as a
# short breath, so clauses do not run into each other, while anything longer starts to be heard as a
# hesitation; it is also far longer than the mouth's 5 ms fades, so a cut always lands in silence.
GAP_S = 0.1
# A 10 ms window quieter than this RMS (full scale 1.0; about -50 dBFS) is silence.
SILENCE_RMS = 0.003
WINDOW_S = 0.01


@dataclass(frozen=True, slots=True)
class TrimOptions:
    gap_s: float = GAP_S  # silence kept across a clause boundary (trailing + leading)
    silence_rms: float = SILENCE_RMS
    window_s: float = WINDOW_S


@dataclass(slots=True)
class Trimmed:
    """What one step decided: frames to play now, and seconds of silence dropped."""

    frames: list[rtc.AudioFrame]
    dropped_s: float = 0.0


def voiced_span(frame: rtc.AudioFrame, options: TrimOptions) -> tuple[int, int] | None:
    """(first, end) sample of the frame's voiced windows, cut at window edges; None if all silent."""
    n = frame.samples_per_channel
    if n == 0:
        return None
    samples = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels)
    size = max(1, round(frame.sample_rate * options.window_s))
    windows = -(-n // size)
    padded = np.zeros((windows * size, frame.num_channels), np.float32)
    padded[:n] = samples
    counts = np.full(windows, size, np.float32)
    counts[-1] = n - (windows - 1) * size
    power = (padded.reshape(windows, -1) ** 2).sum(axis=1) / (counts * frame.num_channels)
    voiced = np.flatnonzero(power > (options.silence_rms * 32768) ** 2)
    if voiced.size == 0:
        return None
    return int(voiced[0]) * size, min(n, (int(voiced[-1]) + 1) * size)


def cut(frame: rtc.AudioFrame, start: int, end: int) -> rtc.AudioFrame:
    """Samples [start, end) of a frame."""
    width = 2 * frame.num_channels
    data = memoryview(frame.data).cast("B")[start * width : end * width]
    return rtc.AudioFrame(
        data=bytes(data),
        sample_rate=frame.sample_rate,
        num_channels=frame.num_channels,
        samples_per_channel=end - start,
    )


def duration(frames: list[rtc.AudioFrame]) -> float:
    return sum(f.samples_per_channel / f.sample_rate for f in frames)


class SilenceTrim:
    """The trim over the clauses a mouth plays, fed their frames in play order."""

    def __init__(self, options: TrimOptions) -> None:
        self.options = options
        self._held: list[rtc.AudioFrame] = []  # silence not decided yet
        self._voiced = False  # the current clause has had voiced audio
        self._lead_allowance_s = options.gap_s  # leading silence the current clause may keep
        self.dropped_s = 0.0  # in all, for the log and the tests

    def begin_speech(self) -> None:
        """A new utterance's audio starts: nothing of the previous one is held (a speech that failed
        mid-clause ends there), and its first clause starts with no voice yet."""
        self._held = []
        self._voiced = False

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def feed(self, frame: rtc.AudioFrame) -> Trimmed:
        """The next frame of the current clause: what can be played now."""
        span = voiced_span(frame, self.options)
        if span is None:
            self._held.append(frame)
            return Trimmed([])
        first, end = span
        if first > 0:
            self._held.append(cut(frame, 0, first))
        if self._voiced:
            out, dropped = self._held, 0.0  # a pause inside the clause: played as it was
        else:
            out, dropped = _keep_last(self._held, self._lead_allowance_s)  # leading silence
            self._voiced = True
        self._held = []
        out.append(cut(frame, first, end) if (first, end) != (0, frame.samples_per_channel) else frame)
        if end < frame.samples_per_channel:
            self._held.append(cut(frame, end, frame.samples_per_channel))
        self.dropped_s += dropped
        return Trimmed(out, dropped)

    def end_clause(self) -> Trimmed:
        """The current clause's audio is complete: its trailing silence is cut to the gap."""
        # a clause with no voice at all keeps at least a window, so an utterance that is all silence
        # still plays (else it would count as not spoken)
        allowance = self.options.gap_s if self._voiced else max(self._lead_allowance_s, self.options.window_s)
        out, dropped = _keep_first(self._held, allowance)
        self._held = []
        if self._voiced:
            self._lead_allowance_s = max(0.0, self.options.gap_s - duration(out))
            self._voiced = False
        else:  # a clause with no voice at all: its silence counts against the boundary's gap
            self._lead_allowance_s = max(0.0, self._lead_allowance_s - duration(out))
        self.dropped_s += dropped
        return Trimmed(out, dropped)

    def restart(self) -> None:
        """The clause is synthesized again: what is held was never decided, and the new attempt makes
        it again."""
        self._held = []


def _keep_first(frames: list[rtc.AudioFrame], seconds: float) -> tuple[list[rtc.AudioFrame], float]:
    """The first `seconds` of the frames, and how many seconds were left out."""
    out: list[rtc.AudioFrame] = []
    left = seconds
    dropped = 0.0
    for frame in frames:
        n = frame.samples_per_channel
        keep = min(n, max(0, round(left * frame.sample_rate)))
        if keep:
            out.append(frame if keep == n else cut(frame, 0, keep))
        left -= keep / frame.sample_rate
        dropped += (n - keep) / frame.sample_rate
    return out, dropped


def _keep_last(frames: list[rtc.AudioFrame], seconds: float) -> tuple[list[rtc.AudioFrame], float]:
    """The last `seconds` of the frames, and how many seconds were left out."""
    out: list[rtc.AudioFrame] = []
    left = seconds
    dropped = 0.0
    for frame in reversed(frames):
        n = frame.samples_per_channel
        keep = min(n, max(0, round(left * frame.sample_rate)))
        if keep:
            out.append(frame if keep == n else cut(frame, n - keep, n))
        left -= keep / frame.sample_rate
        dropped += (n - keep) / frame.sample_rate
    out.reverse()
    return out, dropped
