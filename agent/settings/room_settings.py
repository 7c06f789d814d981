"""Per-room interpreter settings, carried as JSON in the job (dispatch) metadata and the room metadata.

Both sources use the same schema and the room metadata overrides the job metadata key by key (a host can
change it mid-meeting). Parsing never raises: every problem becomes one line naming the source and the key,
the bad part is dropped and the rest applies. A key whose whole value is unusable counts as absent, so an
earlier value survives it; JSON null resets a key to its default. Problems never echo the metadata, a
glossary translation, or any value longer than 40 characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeGuard, TypeVar, cast

from agent.language.codes import (
    AUTO,
    base_language,
    canonical_language,
    is_language_tag,
    parse_language,
)
from agent.language.text import clean_transcript

Formality = Literal["formal", "informal", "neutral"]
FORMALITIES: tuple[Formality, ...] = ("formal", "informal", "neutral")

MAX_METADATA_BYTES = 64 * 1024
# The glossary goes into the system prompt of every LLM request: bounded per term, in count, and in all
MAX_KEEP_TERMS = 100
MAX_TERM_CHARS = 100
MAX_TRANSLATE_TERMS = 200
MAX_TRANSLATION_CHARS = 200
MAX_GLOSSARY_CHARS = 6000  # every term and translation together (about 1,500 tokens)
_QUOTE_CHARS = 40
_MAX_PROBLEMS_PER_SOURCE = 20

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
T = TypeVar("T")
_SKIP: Any = object()
ALL_LANGUAGES = "*"  # a speaker_voices entry given as one voice id: that voice on every language
MAX_SPEAKER_VOICES = 100
_MAX_IDENTITY_CHARS = 256  # a field parser's "nothing usable here"


def _lookup(by_language: Mapping[str, str], language: str) -> str | None:
    return by_language.get(canonical_language(language)) or by_language.get(base_language(language))


@dataclass(frozen=True, slots=True)
class Glossary:
    keep: tuple[str, ...] = ()  # terms never to translate (names, brands)
    # source term -> {target language -> fixed translation}
    translate: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep", tuple(self.keep))
        frozen = {term: MappingProxyType(dict(by)) for term, by in self.translate.items()}
        object.__setattr__(self, "translate", MappingProxyType(frozen))

    def fixed_for(self, target_language: str) -> list[tuple[str, str]]:
        """(term, translation) pairs for `target_language`; "pt-BR" entries first, else "pt" ones."""
        pairs = ((term, _lookup(by, target_language)) for term, by in self.translate.items())
        return [(term, translation) for term, translation in pairs if translation]

    def is_empty(self) -> bool:
        return not self.keep and not self.translate


@dataclass(frozen=True, slots=True)
class RoomSettings:
    source_language: str | None = None  # None: the worker's SOURCE_LANGUAGE; AUTO: detected per utterance
    target_languages: tuple[str, ...] = ()  # besides what participants ask for
    glossary: Glossary = Glossary()
    voices: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # language -> voice id
    formality: Formality = "neutral"
    # participant identity -> {language, or ALL_LANGUAGES -> voice id}
    speaker_voices: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    # US dollars the room may spend in each hour of its meeting, by the price table (None: no limit)
    budget_usd_per_hour: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_languages", tuple(self.target_languages))
        object.__setattr__(self, "voices", MappingProxyType(dict(self.voices)))
        frozen = {who: MappingProxyType(dict(by)) for who, by in self.speaker_voices.items()}
        object.__setattr__(self, "speaker_voices", MappingProxyType(frozen))

    def voice_for(self, target_language: str) -> str | None:
        """The Cartesia voice id for `target_language` ("pt-BR" first, else "pt"), if the room set one."""
        return _lookup(self.voices, target_language)

    def speaker_voice_for(self, identity: str, target_language: str) -> str | None:
        """The voice id the room set for this speaker on `target_language` (or on every language)."""
        by_language = self.speaker_voices.get(identity, {})
        return _lookup(by_language, target_language) or by_language.get(ALL_LANGUAGES)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    kinds = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number"}
    return kinds.get(type(value), "null")


def _key(name: str) -> str:
    """A key, repr'd and truncated: keys name what is wrong, so even long ones are (partly) shown."""
    return repr(name[:_QUOTE_CHARS]) + ("…" if len(name) > _QUOTE_CHARS else "")


def _unknown(names: list[str]) -> str:
    return "unknown key(s) " + ", ".join(map(_key, names[:5])) + (", …" if names[5:] else "")


def _value(value: str) -> str:
    """A value, repr'd only when short."""
    return repr(value) if len(value) <= _QUOTE_CHARS else f"a value of {len(value)} characters"


class _Problems:
    """One source's problems, each prefixed with the source and capped so a hostile payload can't flood."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []
        self.hidden = 0

    def add(self, where: str, detail: str, action: str = "ignored") -> None:
        if len(self.lines) < _MAX_PROBLEMS_PER_SOURCE:
            self.lines.append(f"{self.source}: {where + ': ' if where else ''}{detail}; {action}")
        else:
            self.hidden += 1

    def typed(self, value: object, expected: type[T], where: str, action: str = "ignored") -> TypeGuard[T]:
        if isinstance(value, expected) and not isinstance(value, bool):
            return True
        self.add(where, f"expected {_kind(expected())}, got {_kind(value)}", action)
        return False

    def language(self, where: str, code: object, action: str = "dropped") -> str | None:
        if not self.typed(code, str, where, action):
            return None
        if tag := parse_language(code):  # in any spelling ("pt_br", " ES "): its canonical form
            return tag
        if not is_language_tag(code.strip().replace("_", "-")):
            self.add(where, f"{_value(code)} is not a language code (expected e.g. 'en' or 'pt-BR')", action)
        else:
            self.add(where, f"{_value(code)} is not a supported language", action)
        return None

    def text(self, value: object, where: str, what: str, limit: int) -> str | None:
        """`value` on one line, without control or invisible characters (it goes into the prompt), if
        that is 1 to `limit` characters; never quoted in a problem."""
        if not self.typed(value, str, where, "dropped"):
            return None
        if 0 < len(cleaned := clean_transcript(value)) <= limit:
            return cleaned
        self.add(where, f"{what} must be 1 to {limit} characters", "dropped")
        return None

    def capped(self, items: list[T], where: str, limit: int) -> list[T]:
        if len(items) > limit:
            self.add(where, f"more than {limit} terms", f"only the first {limit} are used")
        return items[:limit]


def _target_languages(p: _Problems, value: object) -> Any:
    if not p.typed(value, list, "target_languages"):
        return _SKIP
    codes = (p.language(f"target_languages[{i}]", code) for i, code in enumerate(value))
    return tuple(dict.fromkeys(code for code in codes if code))  # de-duplicated, order kept


def _voices(p: _Problems, value: object) -> Any:
    if not p.typed(value, dict, "voices"):
        return _SKIP
    voices: dict[str, str] = {}
    for code, voice in value.items():
        where = f"voices[{_key(code)}]"
        language = p.language(where, code)
        if not language or not p.typed(voice, str, where, "dropped"):
            continue
        if _UUID_RE.fullmatch(voice):
            voices[language] = voice.lower()
        else:
            p.add(where, f"voice id {_value(voice)} is not a UUID", "dropped")
    return voices


def _voice_id(p: _Problems, where: str, voice: object) -> str | None:
    if not p.typed(voice, str, where, "dropped"):
        return None
    if _UUID_RE.fullmatch(voice):
        return voice.lower()
    p.add(where, f"voice id {_value(voice)} is not a UUID", "dropped")
    return None


def _speaker_voices(p: _Problems, value: object) -> Any:
    """{identity: voice id, or {language: voice id}}. Problems name an entry by its position, never by
    the participant's identity (which must not reach logs or `interpreter.warnings`)."""
    if not p.typed(value, dict, "speaker_voices"):
        return _SKIP
    entries = list(value.items())
    if len(entries) > MAX_SPEAKER_VOICES:
        p.add("speaker_voices", f"more than {MAX_SPEAKER_VOICES} speakers", "only the first are used")
    chosen: dict[str, dict[str, str]] = {}
    for n, (identity, voices) in enumerate(entries[:MAX_SPEAKER_VOICES]):
        where = f"speaker_voices[#{n + 1}]"
        if not identity or len(identity) > _MAX_IDENTITY_CHARS:
            p.add(where, f"a participant identity must be 1 to {_MAX_IDENTITY_CHARS} characters", "dropped")
            continue
        if isinstance(voices, str):
            if voice := _voice_id(p, where, voices):
                chosen[identity] = {ALL_LANGUAGES: voice}
            continue
        if not p.typed(voices, dict, where, "dropped"):
            continue
        by_language: dict[str, str] = {}
        for code, raw in voices.items():
            language = p.language(f"{where}[{_key(code)}]", code)
            if language and (voice := _voice_id(p, f"{where}[{_key(code)}]", raw)):
                by_language[language] = voice
        if by_language:
            chosen[identity] = by_language
    return chosen


def _keep(p: _Problems, value: object) -> tuple[str, ...]:
    if not p.typed(value, list, "glossary.keep"):
        return ()
    terms = p.capped(value, "glossary.keep", MAX_KEEP_TERMS)
    kept = (p.text(term, f"glossary.keep[{i}]", "a term", MAX_TERM_CHARS) for i, term in enumerate(terms))
    return tuple(dict.fromkeys(term for term in kept if term))


def _translate(p: _Problems, value: object) -> dict[str, dict[str, str]]:
    if not p.typed(value, dict, "glossary.translate"):
        return {}
    fixed: dict[str, dict[str, str]] = {}
    for raw_term, by_language in p.capped(list(value.items()), "glossary.translate", MAX_TRANSLATE_TERMS):
        where = f"glossary.translate[{_key(raw_term)}]"
        term = p.text(raw_term, where, "a term", MAX_TERM_CHARS)
        if not term or not p.typed(by_language, dict, where, "dropped"):
            continue
        for code, raw in by_language.items():
            language = p.language(f"{where}[{_key(code)}]", code)
            translation = language and p.text(
                raw, f"{where}[{_key(code)}]", "a translation", MAX_TRANSLATION_CHARS
            )
            if language and translation:
                fixed.setdefault(term, {})[language] = translation
    return fixed


def _glossary(p: _Problems, value: object) -> Any:
    if not p.typed(value, dict, "glossary"):
        return _SKIP
    unknown = [name for name in value if name not in ("keep", "translate")]
    if unknown:
        p.add("glossary", _unknown(unknown))
    keep = _keep(p, value["keep"]) if value.get("keep") is not None else ()
    translate = _translate(p, value["translate"]) if value.get("translate") is not None else {}
    return _within_budget(p, keep, translate)


def _within_budget(p: _Problems, keep: tuple[str, ...], translate: dict[str, dict[str, str]]) -> Glossary:
    """The first terms (those to keep, then those to translate) that fit in MAX_GLOSSARY_CHARS."""
    sizes = [len(term) for term in keep] + [
        len(t) + sum(map(len, by.values())) for t, by in translate.items()
    ]
    total, fit = 0, 0
    for size in sizes:
        if total + size > MAX_GLOSSARY_CHARS:
            break
        total, fit = total + size, fit + 1
    if fit < len(sizes):
        p.add(
            "glossary",
            f"longer than {MAX_GLOSSARY_CHARS} characters in all",
            f"only the first {fit} terms are used",
        )
        keep, translate = keep[:fit], dict(list(translate.items())[: max(0, fit - len(keep))])
    return Glossary(keep=keep, translate=translate)


def _source_language(p: _Problems, value: object) -> Any:
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    return p.language("source_language", value, "ignored") or _SKIP


def _formality(p: _Problems, value: object) -> Any:
    if not p.typed(value, str, "formality"):
        return _SKIP
    if value.lower() not in FORMALITIES:
        p.add("formality", f"{_value(value)} is not one of " + ", ".join(map(repr, FORMALITIES)))
        return _SKIP
    return cast(Formality, value.lower())


def _budget(p: _Problems, value: object) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
        p.add("budget_usd_per_hour", "expected a number of US dollars above 0")
        return _SKIP
    return float(value)


_FIELDS = {
    "source_language": _source_language,
    "target_languages": _target_languages,
    "glossary": _glossary,
    "voices": _voices,
    "formality": _formality,
    "speaker_voices": _speaker_voices,
    "budget_usd_per_hour": _budget,
}
_DEFAULTS = {name: getattr(RoomSettings(), name) for name in _FIELDS}


def _parse_source(p: _Problems, text: object) -> dict[str, Any]:
    if text is None or (isinstance(text, str) and not text.strip()):
        return {}
    if not isinstance(text, str):
        p.add("", f"expected text, got {type(text).__name__}")
        return {}
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_METADATA_BYTES:
        p.add("", f"larger than 64 KiB ({size} bytes)")
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:  # e.msg never contains the text itself
        p.add("", f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})")
        return {}
    except (RecursionError, ValueError):  # nested too deeply, or an integer beyond Python's digit limit
        p.add("", "not valid JSON (nested too deeply or a number too long)")
        return {}
    if not isinstance(data, dict):
        p.add("", f"not a JSON object (got {_kind(data)})")
        return {}
    unknown = [name for name in data if name not in _FIELDS]
    if unknown:
        p.add("", _unknown(unknown))
    values: dict[str, Any] = {}
    for name, parse in _FIELDS.items():
        if name in data:
            value = _DEFAULTS[name] if data[name] is None else parse(p, data[name])
            if value is not _SKIP:
                values[name] = value
    return values


def parse_room_settings(
    job_metadata: str | None, room_metadata: str | None
) -> tuple[RoomSettings, list[str]]:
    """Returns the settings and a list of human-readable problems (empty if none). Never raises."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for source, text in (("job metadata", job_metadata), ("room metadata", room_metadata)):
        p = _Problems(source)
        values.update(_parse_source(p, text))
        problems += p.lines
        if p.hidden:
            problems.append(f"{source}: {p.hidden} more problem(s) not shown")
    return RoomSettings(**values), problems
