"""The output guard: catches LLM output that is not a translation before it is spoken.

The prompt (see `prompt.py`) already frames the speech as data. The guard is the second line: it
checks every clause before it goes to TTS, and the whole reply at its end. It catches translator
talk (preambles, notes, meta-commentary, refusals: unless the speaker said such words), reasoning
that leaked out of its tags, code and tables, replies far longer than the speech (an answer or an
essay: stopped), replies far shorter than it (an order obeyed, like "just say hello"), and a
statement in reply to a question (an answer). It is deliberately conservative: a real translation
must pass, so it looks for patterns and proportions, not meaning.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Translator talk, in English (where models fall back) and in the commonest target languages.
_META = re.compile(
    r"^\s*(?:"
    r"(?:sure|okay|ok|alright|certainly|of course)\b[^.!?]{0,40}\btranslat\w*"
    r"|here(?:'s| is| are) (?:the|my|your|a) (?:\w+ )?translation"
    r"|(?:the )?user (?:says|said|asks|asked|wants|is asking|is saying)\b"
    r"|(?:we|i) (?:need|have|want) to (?:translate|output)"
    r"|let(?: me|'s| us) translate\b"
    r"|i(?:'ll| will) (?:now )?translate (?:this|that|it|the (?:text|speech|sentence|following))\b"
    r"|(?:translator'?s? )?(?:note|nota|remarque|anmerkung|hinweis)\s*[:：]"
    r"|\((?:note|translator|translation|nota)\b"
    r")",
    re.IGNORECASE,
)
# a speaker who talks about translating, notes or the user may be translated saying so
_SOURCE_META = re.compile(
    r"translat|tradu|übersetz|dolmetsch|翻|note|nota|remarque|anmerk|hinweis|user|usuari|utilisat|nutzer",
    re.IGNORECASE,
)
_AI = re.compile(r"\bas an ai\b|\blanguage model\b|\bmodelo de lenguaje\b|\bmodèle de langage\b", re.I)
_REFUSAL = re.compile(
    r"\b(?:i(?:'m| am) (?:sorry|afraid),? (?:but )?i (?:can(?:no|')t|am unable|won't)"
    r"|i can(?:no|')t (?:help|assist|comply|do that|provide|translate)"
    r"|lo siento,? (?:pero )?no puedo"
    r"|je suis désolée?,? (?:mais )?je ne peux pas"
    r"|es tut mir leid,? (?:aber )?ich kann"
    r"|desculpe,? (?:mas )?não posso"
    r"|mi dispiace,? (?:ma )?non posso)",
    re.IGNORECASE,
)
# the speaker may say such things; then their translation is right
_SOURCE_APOLOGY = re.compile(
    r"\b(?:sorry|afraid|can(?:no|')t|unable|won't|lo siento|perd[oó]n|no puedo|désolée?|je ne peux|"
    r"leid|ich kann nicht|desculp|não posso|dispiace|non posso)\b",
    re.IGNORECASE,
)
_SOURCE_AI = re.compile(r"\bai\b|\bia\b|\bki\b|model", re.IGNORECASE)
_OPENER = re.compile(
    r"^\W*(?:sure|okay|ok|alright|all right|certainly|of course|absolutely|got it|understood|claro|"
    r"d'accord|bien sûr|natürlich|klar)\W*$",
    re.IGNORECASE,
)
_REASONING = re.compile(r"</?(?:think|reasoning)\b|^\s*(?:thinking|reasoning)\s*[:：]", re.IGNORECASE)
_CODE = re.compile(r"```|^\s*\|.*\|\s*$|^\s*\|?\s*:?-{3,}", re.MULTILINE)
_QUESTION_MARKS = "?？؟¿"
_SENTENCE_MARKS = re.compile(r"[.!?。！？؟।]+[\"'”’»)\]]*(?=\s|$)")


@dataclass(frozen=True, slots=True)
class GuardLimits:
    max_ratio: float = 4.0  # a reply this many times the speech's length is not a translation
    max_slack: int = 120  # ...plus this many letters, for short speech
    min_ratio: float = 0.2  # a reply under this fraction of the speech is not one either
    min_source: int = 30  # ...checked only when the speech has at least this many letters


def weight(text: str) -> int:
    """The length of a text in Latin-letter equivalents: one CJK character carries about as much
    as three letters, so lengths compare across scripts."""
    total = 0
    for ch in text:
        if ch.isspace():
            continue
        category = unicodedata.category(ch)
        if category[0] not in "LN":
            continue
        total += 3 if _is_wide(ch) else 1
    return total


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def is_opener(clause: str) -> bool:
    """A bare "Sure!" or "Okay.": how an assistant starts a reply, and how a translation rarely does.
    Held back until the next clause shows which it is."""
    return bool(_OPENER.match(clause))


def is_single_question(text: str) -> bool:
    """One sentence, and a question."""
    stripped = text.strip()
    if not stripped or stripped[-1] not in "?？؟":
        return False
    return len(_SENTENCE_MARKS.findall(stripped)) <= 1


class OutputGuard:
    """Checks one reply to one piece of speech, clause by clause as it streams."""

    def __init__(self, source: str, limits: GuardLimits | None = None) -> None:
        self.limits = limits or GuardLimits()
        self._source = source
        self._source_weight = weight(source)
        self._apology_ok = bool(_SOURCE_APOLOGY.search(source))
        self._ai_ok = bool(_SOURCE_AI.search(source))
        self._meta_ok = bool(_SOURCE_META.search(source))
        self.expects_question = is_single_question(source)
        self._weight = 0
        self.saw_question = False

    @property
    def max_weight(self) -> int:
        return int(self._source_weight * self.limits.max_ratio) + self.limits.max_slack

    def check(self, raw: str, clause: str | None = None) -> str | None:
        """The reason a clause must not be spoken, or None. `raw`: as the LLM wrote it (reasoning and
        markup show there); `clause`: as it would be spoken (a stripped preamble is fine)."""
        clause = raw if clause is None else clause
        if _REASONING.search(raw):
            return "reasoning"
        if _CODE.search(raw):
            return "markup"
        if _META.search(clause) and not self._meta_ok:
            return "translator_talk"
        if _AI.search(clause) and not self._ai_ok:
            return "translator_talk"
        if _REFUSAL.search(clause) and not self._apology_ok:
            return "refusal"
        self._weight += weight(clause)
        if self._weight > self.max_weight:
            return "too_long"
        if any(mark in clause for mark in _QUESTION_MARKS):
            self.saw_question = True
        return None

    def finish(self) -> str | None:
        """At the end of the reply: the reason the whole of it is not a translation, or None."""
        if self._source_weight >= self.limits.min_source and self._weight < (
            self._source_weight * self.limits.min_ratio
        ):
            return "too_short"
        if self.expects_question and not self.saw_question:
            return "answer"
        return None
