"""A timed recognizer for the fake Deepgram: it hears WORDS BY TIME, not a script in order (issue 22's hall
bench).

A microphone's `WordTimeline` holds every word that reaches it, `(start, end, word, source)` on that
microphone's audio timeline (seconds since its first sample): the speaker's own words, another speaker's
picked up across a table, an interpretation played by a loudspeaker. `TimedRecognizer` is one connection's
ear: it receives the audio the connection received (`hear`), finds where the microphone's audio lies in it
(`aligned`: the first 0.4 s of sound matched against what was played, by normalized cross-correlation; found
again after every run of digital silence of 40 ms or more, as a local track that ran dry inserts silence and
a lossy path drops audio), and then answers, on the connection's own timeline,

- `voiced(start, end)`: a word of the timeline overlaps the span (voice activity from the reference, so a
  steady noise is never heard as speech, as Deepgram's own VAD would not);
- `words(start, end)`: the words whose midpoint falls in the segment, unless a voice 6 dB louder or more
  covers more than half of the word (masked: Deepgram transcribes the dominant voice), or the word's audio
  was lost on the way: more than half of its 10 ms windows where the reference is voiced arrived as
  near-digital silence (below −70 dBFS). What it heard is kept (`heard`, in microphone time) for the figures.

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
SEARCH_S = 12.0  # how far into what was played the first sound is looked for
GAP_S = 0.04  # digital silence this long in the received stream: the microphone is found again after it
REALIGN_S = 0.2  # sound matched after such a gap
NEAR_S = 0.5  # ... within this far of where it was expected
MASK_DB = 6.0  # a voice this much louder masks a quieter one where they overlap


@dataclass(frozen=True, slots=True)
class TimedWord:
    start: float  # microphone timeline (s)
    end: float
    word: str  # as written in the script (punctuation kept)
    source: str  # who said it: a speaker, or `echo` for a loudspeaker's interpretation
    sentence: int = -1  # the sentence of its source's script it belongs to (-1: none)
    index: int = 0  # its place in that sentence
    language: str = "en"
    level_db: float = 0.0  # how loud it reaches the microphone, against the speaker's own voice

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
        """The words whose midpoint lies in [start, end), but those masked by a louder voice."""
        return [w for w in self.words if start <= w.mid < end and not self.masked(w)]

    def masked(self, word: TimedWord) -> bool:
        """A word MASK_DB or more quieter than another word over more than half of its length is not heard
        (the recognizer transcribes the dominant voice)."""
        over = sum(
            max(0.0, min(word.end, w.end) - max(word.start, w.start))
            for w in self.words
            if w.level_db - word.level_db >= MASK_DB
        )
        return over * 2 > word.end - word.start


@dataclass(frozen=True, slots=True)
class HeardSegment:
    """A final the recognizer gave: its span and the words it heard, in microphone time."""

    start: float
    end: float
    words: tuple[TimedWord, ...]
    lost: tuple[TimedWord, ...]  # words whose midpoint lay there but whose audio was lost
    cut_at: float | None = None  # ended by the client's Finalize: where it came (else an endpoint)


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
    loss (for which windows of a word are voiced), default `played`. `realign`: find the audio again after
    each gap (a lossy path's jitter moves it); off where sound that is not in `played` is mixed in live (a
    loudspeaker's echo: matched against `played`, the echo alone in a pause gave offsets 0.3-1.2 s wrong,
    and segments that overlapped)."""

    def __init__(
        self,
        timeline: WordTimeline,
        played: np.ndarray,
        rate: int,
        reference: np.ndarray | None = None,
        *,
        realign: bool = True,
    ) -> None:
        self.timeline = timeline
        self.rate = rate
        self._realign_on = realign
        self._all_played = played
        self._played = played[: round(SEARCH_S * rate)]
        self._reference_rms = _window_rms(played if reference is None else reference, self._window)
        self._chunks: list[np.ndarray] = []
        self._received: np.ndarray = np.zeros(0, np.int16)
        self.offset_s: float | None = None  # where the microphone's sample 0 lies on the connection
        self.breaks: list[tuple[float, float]] = []  # (connection time, offset from there on)
        self.heard: list[HeardSegment] = []
        self._received_n = 0
        self._last_sound = -1  # the last loud sample received (index)
        self._onsets: list[int] = []  # sound after a gap, to find again once REALIGN_S of it arrived

    @property
    def _window(self) -> int:
        return max(1, round(self.rate * WINDOW_S))

    def hear(self, samples: np.ndarray) -> None:
        self._chunks.append(samples.astype(np.int16))
        base, self._received_n = self._received_n, self._received_n + len(samples)
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= SOUND)
        if len(loud):
            first = base + int(loud[0])
            if self._realign_on and self._last_sound >= 0 and first - self._last_sound > GAP_S * self.rate:
                self._onsets.append(first)
            self._last_sound = base + int(loud[-1])
        if self.offset_s is None:
            self._align()
        else:
            self._realign()

    def _realign(self) -> None:
        n = round(REALIGN_S * self.rate)
        while self._onsets and self._received_n - self._onsets[0] >= n:
            onset = self._onsets.pop(0)
            expected = onset - round(self._offset_at(onset / self.rate) * self.rate)
            near = round(NEAR_S * self.rate)
            lo = max(0, expected - near)
            window = self._all_played[lo : expected + near + n]
            if len(window) < n:
                continue
            at = lo + locate(self._all()[onset : onset + n], window)
            offset = (onset - at) / self.rate
            if abs(offset - self._offset_at(onset / self.rate)) * self.rate >= 1:
                self.breaks.append((onset / self.rate, offset))

    def _offset_at(self, t: float) -> float:
        """The offset of the connection's time `t`."""
        return next((o for start, o in reversed(self.breaks) if start <= t), self.offset_s or 0.0)

    def _connection(self, t: float) -> float:
        """The connection's time of the microphone's time `t`."""
        return t + next((o for start, o in reversed(self.breaks) if start - o <= t), self.offset_s or 0.0)

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
        self._onsets = [o for o in self._onsets if o > first]

    @property
    def aligned(self) -> bool:
        return self.offset_s is not None

    @property
    def settled(self) -> int:
        """Samples received whose place on the microphone's timeline is known (the VAD waits for it)."""
        if self.offset_s is None:
            return 0
        return self._onsets[0] if self._onsets else self._received_n

    def _mic(self, t: float) -> float:
        return t - self._offset_at(t)

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
            at = round(self._connection(i * WINDOW_S) * self.rate)
            window = received[max(at, 0) : max(at, 0) + w]
            silent += len(window) == w and float(np.sqrt(np.mean((window / 32768.0) ** 2))) < LOST_RMS
        return voiced > 0 and silent * 2 > voiced

    def words(
        self, start: float, end: float, *, final: bool = True, cut_at: float | None = None
    ) -> list[TimedWord]:
        """The words recognized in the segment [start, end) of the connection's timeline (a final's are
        kept in `heard`, with where a Finalize cut it, `cut_at`; an interim's are not)."""
        inside = self.timeline.between(self._mic(start), self._mic(end))
        kept = [w for w in inside if not self._lost(w)]
        if final:
            lost = tuple(w for w in inside if w not in kept)
            cut = None if cut_at is None else self._mic(cut_at)
            self.heard.append(HeardSegment(self._mic(start), self._mic(end), tuple(kept), lost, cut))
        return kept
