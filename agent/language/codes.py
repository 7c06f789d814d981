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
# the languages `auto` detects: nova-3's `language=multi` and Flux's `flux-general-multi` cover the same ten
DETECTED_LANGUAGES: tuple[str, ...] = ("en", "es", "fr", "de", "hi", "ru", "pt", "ja", "it", "nl")
# an auto speaker's utterance whose language Deepgram did not say (or said outside SUPPORTED_LANGUAGES),
# before anything of theirs was detected: English, the old SOURCE_LANGUAGE default
UNDETECTED_FALLBACK = "en"

_LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", re.IGNORECASE | re.ASCII)
# BCP-47 asks implementations to take tags of at least 35 characters; anything longer is not a code
MAX_CODE_CHARS = 35
# deprecated or alternative base codes that libraries still write (Java's Locale: "iw", "in"), as we name them
_ALIASES = {"iw": "he", "in": "id", "nb": "no", "fil": "tl"}


def is_language_tag(code: str) -> bool:
    """A BCP-47-shaped tag: a 2–3 letter base and subtags ("pt-BR", "zh-Hant"), any case."""
    return bool(_LANGUAGE_TAG.fullmatch(code))


def base_language(code: str) -> str:
    """The lowercase base of a language code: "pt-BR" -> "pt", "EN" -> "en"."""
    return code.split("-", 1)[0].lower()


def is_supported_language(code: str) -> bool:
    return is_language_tag(code) and base_language(code) in SUPPORTED_LANGUAGES


def parse_language(raw: str) -> str | None:
    """A language code as a person or a BCP-47 library writes it ("ES", " pt-br ", "es_419", "zh-hant-tw",
    "iw") in its canonical form ("es", "pt-BR", "es-419", "zh-Hant-TW", "he"), if it names a supported
    language; else None. Test vectors shared with the page: web/src/language-codes.json."""
    code = raw.strip().replace("_", "-")
    if len(code) > MAX_CODE_CHARS or not is_language_tag(code):
        return None
    base, _, rest = code.partition("-")
    base = _ALIASES.get(base.lower(), base.lower())
    if base not in SUPPORTED_LANGUAGES:
        return None
    return canonical_language(f"{base}-{rest}" if rest else base)


def participant_language(raw: str) -> str | None:
    """A language a participant speaks or asks for (`language`, `interpret_to`), as the interpreter names
    it: the supported base language of any spelling ("ES", "es-MX", "es_419" -> "es"), else None. Tracks,
    captions and `interpreter.languages` use this form, so every spelling of a language meets on one track."""
    tag = parse_language(raw)
    return base_language(tag) if tag else None


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
