"""Who hears and who reads each target language, and so what its channel does (`Demand`): speak while a
human participant hears it, caption while someone only reads it, nothing while neither.

LiveKit does not tell a publisher who is subscribed to its tracks, so a listener says what it plays: its
`listening_to` attribute names the languages of the `interpretation-<lang>` tracks it is subscribed to, or
`none` (LiveKit deletes an attribute set to ""); the page keeps it true. A participant that never sets it
is taken to hear what it asks for (`interpret_to`, else `language`), as every client did before there was
a way to say. Everyone reads what they ask for. Agents and recorders (egress) are nobody here: a room
recorded with its interpretation needs SYNTHESIS=always, which speaks every language all the time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from livekit import rtc

from agent.language.codes import base_language, participant_language
from agent.loops.pipeline import Demand
from agent.room.room_io import ATTR_LISTENING_TO, NOT_LISTENING

_NOT_PEOPLE = (rtc.ParticipantKind.PARTICIPANT_KIND_AGENT, rtc.ParticipantKind.PARTICIPANT_KIND_EGRESS)


class Audience:
    """The languages heard and read in a room now, from its participants as the session reads them."""

    def __init__(
        self,
        participants: Iterable[Any],
        attributes: Callable[[Any], Mapping[str, str]],
        asks: Callable[[Any], list[str]],
    ) -> None:
        self.hears: set[str] = set()
        self.reads: set[str] = set()
        for participant in participants:
            if participant.kind in _NOT_PEOPLE:
                continue
            asked = set(asks(participant))
            self.reads |= asked
            declared = attributes(participant).get(ATTR_LISTENING_TO)
            self.hears |= asked if declared is None else _codes(declared)

    def demand(self, language: str, *, always: bool = False) -> Demand:
        code = base_language(language)
        if always or code in self.hears:
            return Demand.SPEAK
        return Demand.CAPTION if code in self.reads else Demand.NONE


def _codes(value: str) -> set[str]:
    if value.strip().lower() == NOT_LISTENING:
        return set()
    return {code for code in map(participant_language, value.split(",")) if code}
