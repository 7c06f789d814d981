"""What the ears' cuts did to the script's sentences, from the script alone (never the interpreter's view).

Pure functions on plain inputs (unit-tested in tests/test_bench_cuts.py), all on the speaker's audio timeline
(seconds since their audio began, `bench/harness/speech.py`):

- **phrases**: the script's voiced stretches (`Timeline.voiced` as (start, end)), each a clause: a monologue
  sentence is `phrases_per_sentence` of them joined by 80-200 ms breaths, a dialogue turn is one;
- **sentences**: the script's sentences (first word's start, last word's end);
- **pieces**: the source segments the ears cut (the source captions' `start_s`..`end_s`), one per utterance.

Figures:

- **pieces per sentence**: how many pieces share more than `MIN_SHARE_S` of a sentence's span (a piece
  reaching a VAD window past a sentence's edge does not count for it; one spanning two sentences counts for
  both; a sentence no piece holds counts 0);
- **words per piece**: the script's voiced time inside the piece's span × `WORDS_PER_S` (the synthetic
  speech speaks that many words a second, `bench/harness/model.py`). The script's time rather than the
  caption's text: the fake STT writes its text from the segment's length with an id word, a 5-character
  minimum and a clipped last word, which counts the interpreter's view; a breath inside a piece says no word;
- a **cut** is the end of a piece; it is at a **clause end** when it falls in a pause after a phrase (a
  breath, a sentence's pause, a turn's silence, after the last phrase) or at most `CLAUSE_END_TOLERANCE_S`
  before a phrase's end; otherwise (further inside a phrase) it is **mid-clause**.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.harness.model import WORDS_PER_S
from bench.harness.speech import Sentence
from bench.harness.stats import quantile

# How far before a phrase's end a cut still counts as at its end: the STT's word ends and the ears' spans are
# not exact (the fake STT's VAD works in 10 ms windows, a timer cut lands on a 20 ms frame, a word end may be
# a syllable early), and 0.15 s is under half a word (0.4 s at 2.5 words/s): a cut that late leaves a sliver
# of the clause to the next piece (which pieces per sentence still counts), one earlier a word or more.
CLAUSE_END_TOLERANCE_S = 0.15
# A piece counts for a sentence when it shares more than this of the sentence's span: a span may start or end
# a 10 ms VAD window off, which is no share of a sentence; 50 ms is an eighth of a word.
MIN_SHARE_S = 0.05

Span = tuple[float, float]  # (start, end) on the audio timeline, s


def phrase_spans(voiced: Iterable[tuple[float, float]]) -> list[Span]:
    """The script's phrases as (start, end), from `Timeline.voiced`'s (start, duration)."""
    return [(start, start + duration) for start, duration in voiced]


def overlap(a: Span, b: Span) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def pieces_per_sentence(sentences: Iterable[Sentence], pieces: Sequence[Span]) -> list[int]:
    """Per sentence, how many pieces share more than `MIN_SHARE_S` of it."""
    return [sum(1 for p in pieces if overlap((s.start, s.end), p) > MIN_SHARE_S) for s in sentences]


def words_in(piece: Span, phrases: Iterable[Span]) -> float:
    """The script's words in a piece: its voiced time × WORDS_PER_S."""
    return sum(overlap(piece, ph) for ph in phrases) * WORDS_PER_S


def mid_clause(cut: float, phrases: Iterable[Span], *, tolerance: float = CLAUSE_END_TOLERANCE_S) -> bool:
    """Whether a cut falls inside a phrase, more than `tolerance` before its end."""
    return any(start < cut < end - tolerance for start, end in phrases)


@dataclass(frozen=True, slots=True)
class Cuts:
    pieces_per_sentence: list[int]  # per script sentence (turn, in a dialogue)
    words_per_piece: list[float]  # per piece, in the pieces' order
    cuts: int  # piece ends
    mid_clause_cuts: int

    @property
    def mid_clause_share(self) -> float | None:
        return self.mid_clause_cuts / self.cuts if self.cuts else None

    def figures(self) -> dict[str, float | int | None]:
        """The figures `python -m bench lag` reports (lag.json keys)."""
        return {
            "pieces_per_sentence_p50": quantile(self.pieces_per_sentence, 50),
            "pieces_per_sentence_mean": (
                statistics.fmean(self.pieces_per_sentence) if self.pieces_per_sentence else None
            ),
            "words_per_piece_p50": quantile(self.words_per_piece, 50),
            "mid_clause_cuts": self.mid_clause_cuts,
            "cuts": self.cuts,
            "mid_clause_share": self.mid_clause_share,
        }


def cuts(
    phrases: Sequence[Span],
    sentences: Iterable[Sentence],
    pieces: Iterable[Span],
    *,
    tolerance: float = CLAUSE_END_TOLERANCE_S,
) -> Cuts:
    """What the cuts did to the sentences: `phrases` and `sentences` from the script, `pieces` the source
    segments' spans."""
    ordered = sorted(pieces)
    return Cuts(
        pieces_per_sentence=pieces_per_sentence(sentences, ordered),
        words_per_piece=[words_in(p, phrases) for p in ordered],
        cuts=len(ordered),
        mid_clause_cuts=sum(1 for _, end in ordered if mid_clause(end, phrases, tolerance=tolerance)),
    )
