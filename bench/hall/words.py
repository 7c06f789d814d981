"""The words of the committed speech fixtures, timed: each sentence's span found in its audio, its words laid
over the span's voiced stretches by character count (computed at run time, nothing generated is committed).

A sentence's span is a run of 10 ms windows above 0.02 of full scale (the fixtures README's measure), runs
closer than `JOIN_S` joined: the dialogue's three sentences, the monologue's eight, the one sentence. Inside
a span, the voiced stretches (runs of voiced windows, gaps under `GAP_S` bridged) take the words in order,
each stretch as many words as its share of the span's voiced time, each word a share of its stretch's time
by its length in characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tests.fakes.timed_words import TimedWord, WordTimeline

WINDOW_S = 0.01
VOICED = 0.02  # full scale 1.0: the fixtures README's speech windows
JOIN_S = 0.4  # closer runs of speech are one sentence (the fixtures' sentences are 0.9 s or more apart)
GAP_S = 0.05  # within a sentence, silences shorter than this are inside a word


@dataclass(frozen=True, slots=True)
class Said:
    """One speaker's script as spoken: sentences (text, span) and the timed words."""

    speaker: str
    sentences: tuple[tuple[str, float, float], ...]
    words: tuple[TimedWord, ...]

    def shifted(self, delay_s: float, *, speaker: str | None = None, level_db: float = 0.0) -> Said:
        """The same speech `delay_s` later (said by `speaker`, reaching the microphone at `level_db`)."""
        who = speaker or self.speaker
        return Said(
            who,
            tuple((t, a + delay_s, b + delay_s) for t, a, b in self.sentences),
            tuple(
                TimedWord(
                    w.start + delay_s, w.end + delay_s, w.word, who, w.sentence, w.index, w.language, level_db
                )
                for w in self.words
            ),
        )


def runs(voiced: np.ndarray, join_windows: int) -> list[tuple[int, int]]:
    """Runs of True (window indices, end exclusive), runs closer than `join_windows` joined."""
    out: list[tuple[int, int]] = []
    for i in np.flatnonzero(voiced):
        if out and i - out[-1][1] < join_windows:
            out[-1] = (out[-1][0], int(i) + 1)
        else:
            out.append((int(i), int(i) + 1))
    return out


def voiced_windows(samples: np.ndarray, rate: int) -> np.ndarray:
    n = round(rate * WINDOW_S)
    usable = samples[: len(samples) // n * n].astype(np.float64).reshape(-1, n) / 32768.0
    return np.asarray(np.sqrt(np.mean(np.square(usable), axis=1)) >= VOICED)


def spread(words: list[str], stretches: list[tuple[float, float]]) -> list[tuple[str, float, float]]:
    """`words` over `stretches` (s) in order: stretches take words by their share of the time, words share
    their stretch by characters."""
    total = sum(b - a for a, b in stretches)
    chars = [len(w) for w in words]
    out: list[tuple[str, float, float]] = []
    # place each word by its character offset into the sentence, mapped onto the voiced time
    offsets = np.cumsum([0, *chars]) / max(sum(chars), 1) * total

    def at(v: float) -> float:
        for a, b in stretches:
            if v <= b - a + 1e-9:
                return a + v
            v -= b - a
        return stretches[-1][1]

    for i, w in enumerate(words):
        out.append((w, at(float(offsets[i])), at(float(offsets[i + 1]))))
    return out


def script_words(text: str) -> list[str]:
    return text.split()


def timed_script(speaker: str, samples: np.ndarray, rate: int, sentences: list[str]) -> Said:
    """The `sentences` of a fixture found in its audio and their words timed."""
    voiced = voiced_windows(samples, rate)
    spans = runs(voiced, round(JOIN_S / WINDOW_S))
    if len(spans) != len(sentences):
        raise ValueError(f"{len(spans)} stretches of speech in the audio for {len(sentences)} sentences")
    timed: list[TimedWord] = []
    said = []
    for k, ((a, b), text) in enumerate(zip(spans, sentences, strict=True)):
        stretches = [(x * WINDOW_S, y * WINDOW_S) for x, y in runs(voiced[a:b], round(GAP_S / WINDOW_S))]
        stretches = [(a * WINDOW_S + x, a * WINDOW_S + y) for x, y in stretches]
        said.append((text, a * WINDOW_S, b * WINDOW_S))
        for i, (w, s, e) in enumerate(spread(script_words(text), stretches)):
            timed.append(TimedWord(round(s, 3), round(e, 3), w, speaker, k, i))
    return Said(speaker, tuple(said), tuple(timed))


def normalized(text: str) -> list[str]:
    """Words compared: lower case, punctuation dropped."""
    return [w for w in (re.sub(r"[^\w'-]", "", t).lower() for t in text.split()) if w]


def timeline_of(*said: Said) -> WordTimeline:
    return WordTimeline(sorted((w for s in said for w in s.words), key=lambda w: w.start))
