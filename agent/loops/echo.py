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
stay. Echo and own words inside one sentence (no sentence end between them) are kept whole: the speaker's
words are never dropped to remove an echo.

`similar` is shared with cross-talk (`crosstalk.py`): two microphones transcribing one voice.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agent.loops.captions import Caption

TAIL_S = 3.0  # after its audio ended, a translation may still be heard back this long (s)
LEAD_S = 0.5  # ... and from this long before its caption went out (clock jitter between tracks)
KEEP_S = 30.0  # what was said is kept this long after it ended
KEEP_MAX = 256  # and at most this many translations (oldest dropped first)
MATCH = 0.75  # share of a sentence's words found in what was said: echo
SHORT_WORDS = 5  # a sentence shorter than this is echo only if every word matches

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


@dataclass(slots=True)
class _Said:
    words: set[str]
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
        if entry is None:
            self._said[key] = _Said(set(words(caption.text)), now, now)
            self._order.append(key)
        else:
            entry.words |= set(words(caption.text))
            entry.end = now
        self._forget(now)

    def own_words(self, text: str, start: float, end: float, *, count: bool = True) -> tuple[str, int]:
        """`text` heard between clock times `start` and `end`, without its sentences that are echo of
        what was said then: (what is left, sentences dropped; added to `dropped` if `count`)."""
        on_air = [s.words for s in self._said.values() if s.start - LEAD_S <= end and start <= s.end + TAIL_S]
        if not on_air:
            return text, 0
        kept: list[str] = []
        dropped = 0
        for sentence in sentences(text):
            heard = words(sentence)
            if heard and any(similar(heard, said) for said in on_air):
                dropped += 1
            else:
                kept.append(sentence)
        self.dropped += dropped if count else 0
        return (" ".join(kept) if dropped else text), dropped

    def _forget(self, now: float) -> None:
        while self._order and (len(self._order) > KEEP_MAX or self._said[self._order[0]].end < now - KEEP_S):
            self._said.pop(self._order.popleft(), None)
