"""Language codes: the languages the interpreter takes (both Deepgram and Cartesia must), their canonical
forms and English names; `auto` and Deepgram's `multi` for speakers whose language is detected."""

from __future__ import annotations

import re

from livekit.agents.language import LanguageCode

# A conservative intersection of the languages Deepgram nova-3 streams and Cartesia sonic-3 speaks (base
# codes, per both providers' docs as of 2026). Change it here, and only once both support a language:
# Arabic, Malayalam and Georgian (Cartesia) are left out until Deepgram nova-3 documents streaming them.
# fmt: off
SUPPORTED_LANGUAGES: frozenset[str] = frozenset({
    "en", "es", "fr", "de", "it", "pt", "nl", "ja", "ko", "zh", "hi", "ru", "pl", "tr", "sv", "da", "no",
    "fi", "uk", "cs", "el", "hu", "ro", "bg", "hr", "sk", "id", "ms", "vi", "th", "ta", "te", "bn", "mr",
    "gu", "kn", "pa", "he", "tl",
})
# fmt: on

# `source_language` "auto": a speaker who sets no (supported) `language` is transcribed with Deepgram's
# code switching (nova-3 `language=multi`) and each utterance is routed by the language Deepgram detected
AUTO = "auto"
# Deepgram's `language` for code switching; nova-3 transcribes en, es, fr, de, hi, ru, pt, ja, it and nl with
# it (Deepgram's models and languages overview), all of them in SUPPORTED_LANGUAGES
MULTI = "multi"
# an auto speaker's utterance whose language Deepgram did not say (or said outside SUPPORTED_LANGUAGES),
# before anything of theirs was detected: English, the old SOURCE_LANGUAGE default
UNDETECTED_FALLBACK = "en"

_LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", re.IGNORECASE | re.ASCII)


def is_language_tag(code: str) -> bool:
    """A BCP-47-shaped tag: a 2–3 letter base and subtags ("pt-BR", "zh-Hant"), any case."""
    return bool(_LANGUAGE_TAG.fullmatch(code))


def base_language(code: str) -> str:
    """The lowercase base of a language code: "pt-BR" -> "pt", "EN" -> "en"."""
    return code.split("-", 1)[0].lower()


def is_supported_language(code: str) -> bool:
    return is_language_tag(code) and base_language(code) in SUPPORTED_LANGUAGES


def detected_language(code: str | None) -> str | None:
    """The base language of a language Deepgram detected ("en-US" -> "en"), if we support it."""
    return base_language(code) if code and is_supported_language(code) else None


def canonical_language(code: str) -> str:
    """Lowercase base, uppercase region, title-case script: "PT-br" -> "pt-BR", "zh-hant" -> "zh-Hant"."""
    base, *subtags = code.split("-")
    return "-".join([base.lower(), *map(_canonical_subtag, subtags)])


def _canonical_subtag(tag: str) -> str:
    if tag.isascii() and tag.isalpha() and len(tag) in (2, 4):
        return tag.upper() if len(tag) == 2 else tag.title()
    return tag


def language_name(code: str) -> str:
    return LanguageCode(code).to_language_name() or code
