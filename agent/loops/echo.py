"""The interpreter never interprets itself: what a speaker's microphone picked up of an interpretation the
room was playing (a loudspeaker next to it) is dropped, not translated nor captioned as their words.

The interpreter knows exactly what it said: every translated caption (published when its audio starts, and
again when it ends) is noted here with when it was on the air (`EchoBook.said`). A speaker's final is cut
into sentences; a sentence whose words are, all but a few, the words of something said on some track while
it was playing or up to `TAIL_S` after (a loudspeaker's delay, the output's buffer, the STT's word times) is
echo (`EchoBook.own_words` returns the rest). Words are compared as sets, case and punctuation aside, so an
echo the STT heard imperfectly still matches: at least `MATCH` of the sentence's words must be in what was
said, and a sentence of fewer than `SHORT_WORDS` words must match all of them. Any language: an echo is
usually transcribed in the language it was spoken in (with `auto`: detected as it), but a speaker of that
language hears it too.

The partial case (echo and the speaker's own words in one final): sentences that are echo go, the others
stay. Inside a sentence that is the speaker's, an echo's words go too where they cannot be the speaker's:
a run of `RUN_WORDS` or more words that were said in that order in one translation on the air, or, at the
very start or end of the final, a run of one or two words of a translation on the air in another language
than the speaker's (`language`): the tail of an echo heard just before the speaker spoke again, or its
start heard as they stopped. The speaker's own words around them stay.

`similar` is shared with cross-talk (`crosstalk.py`): two microphones transcribing one voice.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agent.language.codes import base_language
from agent.loops.captions import Caption

TAIL_S = 3.0  # after its audio ended, a translation may still be heard back this long (s)
LEAD_S = 0.5  # ... and from this long before its caption went out (clock jitter between tracks)
KEEP_S = 30.0  # what was said is kept this long after it ended
KEEP_MAX = 256  # and at most this many translations (oldest dropped first)
MATCH = 0.75  # share of a sentence's words found in what was said: echo
SHORT_WORDS = 5  # a sentence shorter than this is echo only if every word matches
RUN_WORDS = 3  # inside a speaker's sentence, this many words said in that order in one translation: echo
EDGE_WORDS = 2  # ... at the final's start or end, this few of a translation in another language: echo

_WORD_RE = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)
_SENTENCE_RE = re.compile(r"[^.!?…。！？؟।]+[.!?…。！？؟।]*")


def words(text: str) -> list[str]:
    """The words of a text, casefolded, without punctuation."""
    return [w.casefold() for w in _WORD_RE.findall(text)]


def similar(heard: list[str], said: set[str] | list[str], threshold: float = MATCH) -> bool:
    """Whether `heard`'s words are (almost all) words of `said`: at least `threshold` of them, all of
    them for fewer than SHORT_WORDS words."""
    if not heard:
        return False
    said_set = said if isinstance(said, set) else set(said)
    found = sum(1 for w in heard if w in said_set)
    if len(heard) < SHORT_WORDS:
        return found == len(heard)
    return found / len(heard) >= threshold


def sentences(text: str) -> list[str]:
    """The text cut after each sentence end (what follows the last one is a sentence too)."""
    return [s.strip() for s in _SENTENCE_RE.findall(text) if s.strip()]


def in_order(run: list[str], sequence: list[str]) -> bool:
    """Whether `run`'s words appear in `sequence` in that order (others may come between)."""
    position = 0
    for word in run:
        try:
            position = sequence.index(word, position) + 1
        except ValueError:
            return False
    return True


@dataclass(slots=True)
class _Said:
    words: set[str]
    sequence: list[str]  # its latest text's words, in order
    language: str
    start: float  # clock time its caption first went out (its audio starting)
    end: float  # clock time it was last seen (its final caption: its audio ended)


class EchoBook:
    """What the interpreter said recently, on every track; tells a speaker's words from its echo."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._said: dict[tuple[str, str], _Said] = {}  # (segment id, language) -> what was said
        self._order: deque[tuple[str, str]] = deque()
        self.dropped = 0  # sentences dropped as echo

    def said(self, caption: Caption) -> None:
        """A translated caption went out: its text is on the air now (until its final, plus TAIL_S)."""
        if not caption.translated or not caption.text:
            return
        now = self._clock()
        key = (caption.segment_id, caption.language)
        entry = self._said.get(key)
        said = words(caption.text)
        if entry is None:
            self._said[key] = _Said(set(said), said, caption.language, now, now)
            self._order.append(key)
        else:
            entry.words |= set(said)
            entry.sequence = said
            entry.end = now
        self._forget(now)

    def languages(self, start: float, end: float) -> set[str]:
        """The languages of what was on the air between clock times `start` and `end`."""
        return {s.language for s in self._on_air(start, end)}

    def _on_air(self, start: float, end: float) -> list[_Said]:
        return [s for s in self._said.values() if s.start - LEAD_S <= end and start <= s.end + TAIL_S]

    def own_words(
        self, text: str, start: float, end: float, *, language: str | None = None, count: bool = True
    ) -> tuple[str, int]:
        """`text` heard between clock times `start` and `end`, without what is echo of what was said then
        (`language`: the speaker's, if known): (what is left, sentences and runs of words dropped; added
        to `dropped` if `count`)."""
        on_air = self._on_air(start, end)
        if not on_air:
            return text, 0
        kept: list[str] = []
        dropped = 0
        parts = sentences(text)
        for i, sentence in enumerate(parts):
            heard = words(sentence)
            if heard and any(similar(heard, said.words) for said in on_air):
                dropped += 1
                continue
            runs = _echo_runs(heard, on_air, language, at_start=i == 0, at_end=i == len(parts) - 1)
            dropped += len(runs)
            if left := _without(sentence, runs) if runs else sentence:
                kept.append(left)
        self.dropped += dropped if count else 0
        return (" ".join(kept) if dropped else text), dropped

    def _forget(self, now: float) -> None:
        while self._order and (len(self._order) > KEEP_MAX or self._said[self._order[0]].end < now - KEEP_S):
            self._said.pop(self._order.popleft(), None)


def _echo_runs(
    heard: list[str], on_air: list[_Said], language: str | None, *, at_start: bool, at_end: bool
) -> list[tuple[int, int]]:
    """The runs of `heard` (word index ranges) that are echo inside a speaker's sentence (see the module's
    docstring): RUN_WORDS or more said in that order in one translation, or EDGE_WORDS or fewer at the
    final's start or end of a translation in another language than `language`."""
    if language is None:
        return []
    # only what was said in another language than the speaker's: their own language's interpretation (a
    # two-way conversation) says the same things in the same words
    others = [said for said in on_air if base_language(said.language) != base_language(language)]
    out = []
    said_words = set().union(*(said.words for said in others))
    i = 0
    while i < len(heard):
        if heard[i] not in said_words:
            i += 1
            continue
        j = i
        while j < len(heard) and heard[j] in said_words:
            j += 1
        run, edge = heard[i:j], (at_start and i == 0) or (at_end and j == len(heard))
        in_one = len(run) >= RUN_WORDS and any(in_order(run, said.sequence) for said in others)
        at_edge = (
            edge
            and len(run) <= EDGE_WORDS
            and len(run) < len(heard)
            and any(set(run) <= x.words for x in others)
        )
        if in_one or at_edge:
            out.append((i, j))
        i = j
    return out


def _without(sentence: str, runs: list[tuple[int, int]]) -> str:
    """`sentence` without the words of `runs` (word index ranges, as `words` counts them), each with what
    follows it up to the next word."""
    spans = [m.span() for m in _WORD_RE.finditer(sentence)]
    cut = []
    for i, j in runs:
        end = spans[j][0] if j < len(spans) else len(sentence)
        cut.append((spans[i][0], end))
    out, position = [], 0
    for a, b in cut:
        out.append(sentence[position:a])
        position = b
    out.append(sentence[position:])
    return " ".join("".join(out).split()).strip(" ,;:")
