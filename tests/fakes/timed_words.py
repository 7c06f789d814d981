"""A timed recognizer for the fake Deepgram: it hears WORDS BY TIME, not a script in order (issue 22's hall
bench).

A microphone's `WordTimeline` holds every word that reaches it, `(start, end, word, source)` on that
microphone's audio timeline (seconds since its first sample): the speaker's own words, another speaker's
picked up across a table, an interpretation played by a loudspeaker. `TimedRecognizer` is one connection's
ear: it receives the audio the connection received (`hear`), finds where the microphone's audio lies in it
(`aligned`: the first 0.4 s of sound matched against what was played, by normalized cross-correlation), and
then answers, on the connection's own timeline,

- `voiced(start, end)`: a word of the timeline overlaps the span (voice activity from the reference, so a
  steady noise is never heard as speech, as Deepgram's own VAD would not);
- `words(start, end)`: the words whose midpoint falls in the segment, unless the word's audio was lost on
  the way: more than half of its 10 ms windows where the reference is voiced arrived as near-digital
  silence (below −70 dBFS). What it heard is kept (`heard`, in microphone time) for the figures.

Recognition errors (a word misheard in noise) are not modelled: what is heard is what was said and arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WINDOW_S = 0.01
LOST_RMS = 10 ** (-70 / 20)  # near-digital silence, full scale 1.0
VOICED_RMS = 0.01  # about −40 dBFS: a reference window above it is speech
ALIGN_S = 0.4  # sound matched to find the microphone's audio in the received stream
SOUND = 64  # a sample this loud (s16) is sound, not the idle track's digital silence
SEARCH_S = 12.0  # how far into what was played the sound is looked for


@dataclass(frozen=True, slots=True)
class TimedWord:
    start: float  # microphone timeline (s)
    end: float
    word: str  # as written in the script (punctuation kept)
    source: str  # who said it: a speaker, or `echo` for a loudspeaker's interpretation
    sentence: int = -1  # the sentence of its source's script it belongs to (-1: none)
    index: int = 0  # its place in that sentence
    language: str = "en"

    @property
    def mid(self) -> float:
        return (self.start + self.end) / 2


@dataclass
class WordTimeline:
    """Every word reaching one microphone; words may be added while it is heard (a live echo)."""

    words: list[TimedWord] = field(default_factory=list)

    def add(self, *words: TimedWord) -> None:
        self.words.extend(words)
        self.words.sort(key=lambda w: w.start)

    def voiced(self, start: float, end: float) -> bool:
        return any(w.start < end and w.end > start for w in self.words)

    def between(self, start: float, end: float) -> list[TimedWord]:
        """The words whose midpoint lies in [start, end)."""
        return [w for w in self.words if start <= w.mid < end]


@dataclass(frozen=True, slots=True)
class HeardSegment:
    """A final the recognizer gave: its span and the words it heard, in microphone time."""

    start: float
    end: float
    words: tuple[TimedWord, ...]
    lost: tuple[TimedWord, ...]  # words whose midpoint lay there but whose audio was lost


def _window_rms(samples: np.ndarray, window: int) -> np.ndarray:
    usable = samples[: len(samples) // window * window].astype(np.float64) / 32768.0
    return np.sqrt(np.mean(np.square(usable.reshape(-1, window)), axis=1))


def locate(chunk: np.ndarray, played: np.ndarray) -> int:
    """Where `chunk` begins in `played` (samples): the normalized cross-correlation's peak."""
    a, b = chunk.astype(np.float64), played.astype(np.float64)
    n = len(a)
    if len(b) < n:
        b = np.pad(b, (0, n - len(b)))
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)[: len(b) - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(b**2)])
    norms = np.sqrt(np.maximum(energy[n:] - energy[:-n], 1e-9))
    return int(np.argmax(corr / norms))


class TimedRecognizer:
    """One connection's ear on a microphone's `timeline`. `played`: the microphone's audio as it was sent
    (int16, `rate`), to find it in the received stream; `reference`: what the words sound like without
    loss (for which windows of a word are voiced), default `played`."""

    def __init__(
        self, timeline: WordTimeline, played: np.ndarray, rate: int, reference: np.ndarray | None = None
    ) -> None:
        self.timeline = timeline
        self.rate = rate
        self._played = played[: round(SEARCH_S * rate)]
        self._reference_rms = _window_rms(played if reference is None else reference, self._window)
        self._chunks: list[np.ndarray] = []
        self._received: np.ndarray = np.zeros(0, np.int16)
        self.offset_s: float | None = None  # where the microphone's sample 0 lies on the connection
        self.heard: list[HeardSegment] = []

    @property
    def _window(self) -> int:
        return max(1, round(self.rate * WINDOW_S))

    def hear(self, samples: np.ndarray) -> None:
        self._chunks.append(samples.astype(np.int16))
        if self.offset_s is None:
            self._align()

    def _all(self) -> np.ndarray:
        if self._chunks:
            self._received = np.concatenate([self._received, *self._chunks])
            self._chunks.clear()
        return self._received

    def _align(self) -> None:
        received = self._all()
        loud = np.flatnonzero(np.abs(received.astype(np.int32)) >= SOUND)
        n = round(ALIGN_S * self.rate)
        if not len(loud) or len(received) - loud[0] < n:
            return
        first = int(loud[0])
        self.offset_s = (first - locate(received[first : first + n], self._played)) / self.rate

    @property
    def aligned(self) -> bool:
        return self.offset_s is not None

    def _mic(self, t: float) -> float:
        return t - (self.offset_s or 0.0)

    def voiced(self, start: float, end: float) -> bool:
        return self.aligned and self.timeline.voiced(self._mic(start), self._mic(end))

    def _lost(self, word: TimedWord) -> bool:
        """More than half of the word's reference-voiced 10 ms windows arrived as near-digital silence."""
        received = self._all()
        w = self._window
        first, last = int(word.start / WINDOW_S), int(np.ceil(word.end / WINDOW_S))
        voiced = silent = 0
        for i in range(max(first, 0), min(last, len(self._reference_rms))):
            if self._reference_rms[i] < VOICED_RMS:
                continue
            voiced += 1
            at = i * w + round((self.offset_s or 0.0) * self.rate)
            window = received[max(at, 0) : max(at, 0) + w]
            silent += len(window) == w and float(np.sqrt(np.mean((window / 32768.0) ** 2))) < LOST_RMS
        return voiced > 0 and silent * 2 > voiced

    def words(self, start: float, end: float, *, final: bool = True) -> list[TimedWord]:
        """The words recognized in the segment [start, end) of the connection's timeline (a final's are
        kept in `heard`; an interim's are not)."""
        inside = self.timeline.between(self._mic(start), self._mic(end))
        kept = [w for w in inside if not self._lost(w)]
        if final:
            lost = tuple(w for w in inside if w not in kept)
            self.heard.append(HeardSegment(self._mic(start), self._mic(end), tuple(kept), lost))
        return kept
