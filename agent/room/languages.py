"""Which languages a room is interpreted into: the language each speaker speaks, the target languages asked
for in the order they get a track, and those past MAX_LANGUAGES (left out, with a warning).

Participants' codes come in any spelling ("ES", "es-MX", "es_419") and are read as their base language
(`participant_language`): every spelling of a language meets on one track. One participant's `interpret_to`
counts for at most MAX_ASKED_PER_PARTICIPANT languages; codes that are not supported languages are
ignored. Both are reported (counts of participants, never who or what they wrote).

The room's settings are followed as the session applies them (`follow`); what speakers with no language set
(`auto`) hear comes from their detected languages (`HeardLanguages`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from typing import Any

from agent.language.codes import AUTO, UNDETECTED_FALLBACK, base_language, participant_language
from agent.room.attributes import ParticipantAttributes
from agent.room.auto_language import HeardLanguages
from agent.room.room_io import ATTR_INTERPRET_TO, ATTR_LANGUAGE, is_speaker
from agent.settings.config import Settings, can_detect_language, can_hear
from agent.settings.room_settings import RoomSettings

logger = logging.getLogger("agent.session")

# A listener hears one interpretation at a time; two lets a participant follow a second language too (the
# contract's own example is `fr,de`). At the default MAX_LANGUAGES (4), with the room's own target language,
# one participant can then take at most two of the three places left, never all of them.
MAX_ASKED_PER_PARTICIPANT = 2


class LanguageChoice:
    def __init__(
        self, settings: Settings, heard: HeardLanguages, attributes: ParticipantAttributes | None = None
    ) -> None:
        self._settings = settings
        self._heard = heard
        self.attributes = attributes or ParticipantAttributes()
        self._room_settings = RoomSettings()
        # a language participants ask for → when it was first asked for (its place in line at the cap)
        self._asked_at: dict[str, int] = {}
        self._asks = itertools.count()
        self.not_interpreted: list[str] = []  # languages asked for past MAX_LANGUAGES
        self._over_cap = 0  # participants asking for more than MAX_ASKED_PER_PARTICIPANT languages
        self._bad_codes = 0  # participants whose codes are not supported languages (or not codes)
        self._reported: tuple[list[str], int, int] = ([], 0, 0)

    def follow(self, room_settings: RoomSettings) -> list[str]:
        """The room's settings from now on; what of them cannot be followed here, as problems."""
        self._room_settings = room_settings
        model, source = self._settings.stt.model, room_settings.source_language
        if source == AUTO and not can_detect_language(model):
            return [
                f"source_language: auto needs DEEPGRAM_MODEL nova-3 or flux-general-multi; the worker's "
                f"SOURCE_LANGUAGE ({self._settings.source_language}) is used"
            ]
        if source and source != AUTO and not can_hear(model, source):
            return [f"source_language: {source} is not transcribed by DEEPGRAM_MODEL {model}"]
        return []

    def default_source(self) -> str:
        """The room's `source_language`, else SOURCE_LANGUAGE: a language, or AUTO (detected per
        utterance; not with a model that cannot detect, see `follow`)."""
        room = self._room_settings.source_language
        if room == AUTO and not can_detect_language(self._settings.stt.model):
            return self._settings.source_language
        return room or self._settings.source_language

    def spoken_language(self, participant: Any, *, warn: bool = True) -> str:
        wanted = self.attributes.of(participant).get(ATTR_LANGUAGE, "")
        if language := participant_language(wanted):
            return language
        if wanted.strip() and warn:
            logger.warning(
                "unsupported participant language; using the room default",
                extra={"participant": participant.identity, "characters": len(wanted)},
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
        for (`interpret_to`, else `language`; at most MAX_ASKED_PER_PARTICIPANT each), in the order it was
        first asked for. A language asked for later waits behind those already asked for; one nobody asks
        for any more leaves the line. One language per base language (the first spelling wins)."""
        room = list(self._room_settings.target_languages) or [self._settings.target_language]
        wanted: list[str] = []
        taken: set[str] = set()
        for code in room:
            if base_language(code) not in taken:
                taken.add(base_language(code))
                wanted.append(code)
        asked: list[str] = []
        self._over_cap = self._bad_codes = 0
        for participant in participants:
            if not is_speaker(participant):
                continue
            for code in self._asked_by(participant):
                if code not in taken:
                    taken.add(code)
                    asked.append(code)
        self._asked_at = {code: self._asked_at.get(code, next(self._asks)) for code in asked}
        return wanted + sorted(asked, key=self._asked_at.__getitem__)

    def asks(self, participant: Any) -> list[str]:
        """The languages one participant asks for (base codes, their first MAX_ASKED_PER_PARTICIPANT)."""
        return self._read_asks(participant)[0]

    def _asked_by(self, participant: Any) -> list[str]:
        """`asks`, counted in `_over_cap` / `_bad_codes` when they ask for more, or for what is not a
        language."""
        languages, bad, over_cap = self._read_asks(participant)
        self._bad_codes += bad
        self._over_cap += over_cap
        return languages

    def _read_asks(self, participant: Any) -> tuple[list[str], bool, bool]:
        attributes = self.attributes.of(participant)
        codes = attributes.get(ATTR_INTERPRET_TO, "")
        if not codes.strip() and self.spoken_language(participant, warn=False) == AUTO:
            codes = self._heard.heard(participant.identity) or ""  # none before anything was detected
        elif not codes.strip():
            codes = attributes.get(ATTR_LANGUAGE, "")
        raw = [code for code in codes.split(",") if code.strip()]
        languages = list(dict.fromkeys(filter(None, map(participant_language, raw))))
        bad = len(raw) > len([code for code in raw if participant_language(code)])
        spoken = attributes.get(ATTR_LANGUAGE, "")
        bad_spoken = spoken.strip().lower() not in ("", AUTO) and not participant_language(spoken)
        over_cap = len(languages) > MAX_ASKED_PER_PARTICIPANT
        return languages[:MAX_ASKED_PER_PARTICIPANT], bad or bad_spoken, over_cap

    def capped(self, participants: Iterable[Any]) -> tuple[list[str], bool]:
        """The languages that get a track (the first MAX_LANGUAGES wanted), and whether what is reported
        about the rest changed (then `cap_warnings` did too)."""
        ranked = self.wanted(participants)
        cap = self._settings.max_languages
        wanted, excess = ranked[:cap], ranked[cap:]
        reported = (excess, self._over_cap, self._bad_codes)
        if reported == self._reported:
            return wanted, False
        if excess and excess != self.not_interpreted:
            logger.warning(
                "language cap reached: some languages asked for are not interpreted",
                extra={"languages": excess, "max_languages": cap},
            )
        if reported[1:] != self._reported[1:] and (self._over_cap or self._bad_codes):
            logger.warning(
                "participants ask for languages that are not applied",
                extra={"over_cap": self._over_cap, "bad_codes": self._bad_codes},
            )
        self.not_interpreted, self._reported = excess, reported
        return wanted, True

    def cap_warnings(self) -> list[str]:
        """The warnings about what participants ask for that is not applied, if any."""
        lines = []
        if self._bad_codes:
            lines.append(
                f"{self._bad_codes} participant(s) set language codes that are not supported or malformed "
                "(or too long): ignored"
            )
        if self._over_cap:
            n = MAX_ASKED_PER_PARTICIPANT
            lines.append(
                f"{self._over_cap} participant(s) asked for more than {n} languages in interpret_to: "
                f"only their first {n} are used"
            )
        if self.not_interpreted:
            cap = self._settings.max_languages
            lines.append(
                f"languages not interpreted (MAX_LANGUAGES is {cap}): " + ", ".join(self.not_interpreted)
            )
        return lines
