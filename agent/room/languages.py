"""Which languages a room is interpreted into: the language each speaker speaks, the target languages asked
for in the order they get a track, and those past MAX_LANGUAGES (left out, with a warning).

The room's settings are followed as the session applies them (`follow`); what speakers with no language set
(`auto`) hear comes from their detected languages (`HeardLanguages`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from typing import Any

from agent.language.codes import AUTO, UNDETECTED_FALLBACK, is_supported_language
from agent.loops.pipeline import same_language
from agent.room.auto_language import HeardLanguages
from agent.room.room_io import ATTR_INTERPRET_TO, ATTR_LANGUAGE, is_speaker
from agent.settings.config import Settings, can_detect_language
from agent.settings.room_settings import RoomSettings

logger = logging.getLogger("agent.session")


class LanguageChoice:
    def __init__(self, settings: Settings, heard: HeardLanguages) -> None:
        self._settings = settings
        self._heard = heard
        self._room_settings = RoomSettings()
        # a language participants ask for → when it was first asked for (its place in line at the cap)
        self._asked_at: dict[str, int] = {}
        self._asks = itertools.count()
        self.not_interpreted: list[str] = []  # languages asked for past MAX_LANGUAGES

    def follow(self, room_settings: RoomSettings) -> list[str]:
        """The room's settings from now on; what of them cannot be followed here, as problems."""
        self._room_settings = room_settings
        if room_settings.source_language == AUTO and not can_detect_language(self._settings.stt.model):
            return [
                f"source_language: auto needs DEEPGRAM_MODEL nova-3; the worker's "
                f"SOURCE_LANGUAGE ({self._settings.source_language}) is used"
            ]
        return []

    def default_source(self) -> str:
        """The room's `source_language`, else SOURCE_LANGUAGE: a language, or AUTO (detected per
        utterance; not with a model that cannot detect, see `follow`)."""
        room = self._room_settings.source_language
        if room == AUTO and not can_detect_language(self._settings.stt.model):
            return self._settings.source_language
        return room or self._settings.source_language

    def spoken_language(self, participant: Any, *, warn: bool = True) -> str:
        wanted = participant.attributes.get(ATTR_LANGUAGE, "").strip()
        if wanted and is_supported_language(wanted):
            return str(wanted)
        if wanted and warn:
            logger.warning(
                "unsupported participant language; using the room default",
                extra={"participant": participant.identity, "language": wanted[:40]},
            )
        return self.default_source()

    def speaks(self, participant: Any) -> str:
        """The language a speaker's own voice is cloned in: theirs, else the one detected (a guess before
        anything was)."""
        spoken = self.spoken_language(participant, warn=False)
        if spoken == AUTO:
            spoken = self._heard.heard(participant.identity) or UNDETECTED_FALLBACK
        return spoken

    def wanted(self, participants: Iterable[Any]) -> list[str]:
        """Every target language asked for, in the order they get a track (the first MAX_LANGUAGES do):
        the room's target languages (or the worker's default) in their order, then what participants ask
        for (`interpret_to`, else `language`), in the order it was first asked for. A language asked for
        later waits behind those already asked for; one nobody asks for any more leaves the line."""
        wanted = list(self._room_settings.target_languages) or [self._settings.target_language]
        asked: list[str] = []
        for participant in participants:
            if not is_speaker(participant):
                continue
            codes = participant.attributes.get(ATTR_INTERPRET_TO)
            if not codes and self.spoken_language(participant, warn=False) == AUTO:
                codes = self._heard.heard(participant.identity)  # none before anything was detected
            elif not codes:
                codes = participant.attributes.get(ATTR_LANGUAGE)
            for code in (codes or "").split(","):
                code = code.strip()
                if (
                    code
                    and is_supported_language(code)
                    and not any(same_language(code, w) for w in wanted + asked)
                ):
                    asked.append(code)
        self._asked_at = {code: self._asked_at.get(code, next(self._asks)) for code in asked}
        return wanted + sorted(asked, key=self._asked_at.__getitem__)

    def capped(self, participants: Iterable[Any]) -> tuple[list[str], bool]:
        """The languages that get a track (the first MAX_LANGUAGES wanted), and whether the languages left
        out changed (then `cap_warnings` did too)."""
        ranked = self.wanted(participants)
        cap = self._settings.max_languages
        wanted, excess = ranked[:cap], ranked[cap:]
        if excess == self.not_interpreted:
            return wanted, False
        self.not_interpreted = excess
        if excess:
            logger.warning(
                "language cap reached: some languages asked for are not interpreted",
                extra={"languages": excess, "max_languages": cap},
            )
        return wanted, True

    def cap_warnings(self) -> list[str]:
        """The warning about the languages past the cap, if any are."""
        if not self.not_interpreted:
            return []
        cap = self._settings.max_languages
        return [f"languages not interpreted (MAX_LANGUAGES is {cap}): " + ", ".join(self.not_interpreted)]
