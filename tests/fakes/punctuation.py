"""Commas at pauses inside speech, as Deepgram's punctuation puts them (`FakeDeepgram(comma_pause_s=...)`).

Deepgram punctuates (`punctuate=true`, Flux always): a speaker's brief pause between clauses comes out as a
comma after the word before it. The fake cannot recognise speech, but its VAD hears the pauses, so:
- `PauseLog` records the silences of at least `min_s` between voiced audio in the current segment (v1) or
  turn (Flux), on the connection's audio timeline;
- a `transcript_for` that also has `with_pauses` (`PunctuatingTranscriptFor`, as `NumberedWords` and the
  bench's `WordsFor`) is told where each pause starts (seconds from the speech's start) and puts the commas;
  `punctuate` does that for words whose end times it is given;
- `make` and `tell` ask a `transcript_for` for a segment's text (used up, or a preview), with the pauses
  when it takes them.
Scripted transcripts carry their author's punctuation and the timed recognizer its own words: neither is
changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

_EPS = 1e-6  # timeline comparisons
CLAUSE_MARKS = ",.;:?!"


@runtime_checkable
class PreviewingTranscriptFor(Protocol):
    """A `transcript_for` that can also tell, without using it up, what it would answer (for interims)."""

    def __call__(self, duration_s: float) -> str: ...

    def preview(self, duration_s: float) -> str: ...


@runtime_checkable
class PunctuatingTranscriptFor(Protocol):
    """A `transcript_for` that places commas at pauses.

    `with_pauses(duration_s, pauses_s, preview=...)`: the transcript of `duration_s` of speech with a comma
    after the word that ends nearest before each pause (`pauses_s`: where each starts, in seconds from the
    speech's start), and the final period; `preview`: tell it without using it up (interims, Updates). A
    pause starting at the end of the speech (a preview while the speaker pauses) puts a comma in place of
    the final period."""

    def __call__(self, duration_s: float) -> str: ...

    def with_pauses(self, duration_s: float, pauses_s: Sequence[float], *, preview: bool = False) -> str: ...


def punctuate(
    words: Sequence[str], ends_s: Sequence[float], pauses_s: Sequence[float], duration_s: float
) -> str:
    """`words` (their end times `ends_s`, from the speech's start) joined, with the final period, and a
    comma after the last word that ends at or before each pause's start (the first word if none does).

    A word takes one mark: a pause that falls after the last word (it carries the period) adds none, unless
    the pause starts at `duration_s` or later, the end of the speech so far: then the last word's mark is a
    comma instead (the speaker is pausing now; the period comes when the speech is over)."""
    if not words:
        return ""
    if len(ends_s) != len(words):
        raise ValueError("one end time per word")
    marks = [""] * len(words)
    marks[-1] = "."
    for pause in pauses_s:
        if pause >= duration_s - _EPS:
            marks[-1] = ","
            continue
        before = [k for k, end in enumerate(ends_s) if end <= pause + _EPS]
        k = before[-1] if before else 0
        if k < len(words) - 1:
            marks[k] = ","
    return " ".join(w.rstrip(CLAUSE_MARKS) + m for w, m in zip(words, marks, strict=True))


def make(transcript_for: Callable[[float], str], duration_s: float, pauses_s: Sequence[float]) -> str:
    """The transcript `transcript_for` makes of `duration_s` of speech with pauses starting at `pauses_s`
    (commas when it can place them): used up, as a final's or an end of turn's."""
    if pauses_s and isinstance(transcript_for, PunctuatingTranscriptFor):
        return transcript_for.with_pauses(duration_s, pauses_s)
    return transcript_for(duration_s)


def tell(transcript_for: Callable[[float], str], duration_s: float, pauses_s: Sequence[float]) -> str | None:
    """What `make` would answer, without using it up (interims, Updates); None when it cannot tell."""
    if pauses_s and isinstance(transcript_for, PunctuatingTranscriptFor):
        return transcript_for.with_pauses(duration_s, pauses_s, preview=True)
    if isinstance(transcript_for, PreviewingTranscriptFor):
        return transcript_for.preview(duration_s)
    return None


def unfinished(text: str) -> str:
    """An interim's or an update's text: the speech goes on, so no sentence's end closes it (with commas
    on: a text that ends in its pause's comma keeps it)."""
    return text[:-1] if text.endswith(".") else text


class PauseLog:
    """The pauses of at least `min_s` (None: none are kept) between voiced audio since `start`, on a
    connection's audio timeline. Fed every voiced VAD window; a pause is kept once speech follows it."""

    def __init__(self, min_s: float | None) -> None:
        if min_s is not None and min_s <= 0:
            raise ValueError("comma_pause_s must be positive")
        self.min_s = min_s
        self._origin = 0.0
        self._voice_end: float | None = None
        self._pauses: list[tuple[float, float]] = []

    def start(self, at: float) -> None:
        """New speech (a segment, a turn) starts at `at`: the pauses before it are forgotten."""
        self._origin = at
        self._voice_end = None
        self._pauses.clear()

    def voiced(self, start: float, end: float) -> None:
        """A voiced window from `start` to `end`."""
        if self._voice_end is not None and self._long(start - self._voice_end):
            self._pauses.append((self._voice_end, start))
        self._voice_end = end

    @property
    def pauses(self) -> list[tuple[float, float]]:
        """The pauses kept (start, end), on the timeline."""
        return list(self._pauses)

    def starts(self, *, now: float | None = None) -> tuple[float, ...]:
        """Where the pauses kept start, in seconds from the speech's start; with `now` (the audio heard),
        also the pause going on since the last voiced audio, once it is `min_s` long."""
        kept = [start for start, _ in self._pauses]
        if now is not None and self._voice_end is not None and self._long(now - self._voice_end):
            kept.append(self._voice_end)
        return tuple(round(start - self._origin, 6) for start in kept)

    def _long(self, silence_s: float) -> bool:
        return self.min_s is not None and silence_s >= self.min_s - _EPS
