"""The name a speaker's captions carry (`interpreter.speaker_name`, docs/room-contract.md "Captions").

A participant may change their own name whenever their token lets them change their attributes (LiveKit
grants both with `canUpdateOwnMetadata`), so a name read when a caption goes out could be anyone's: a
participant renamed "Alice" would have their words shown under Alice's name. Captions therefore carry the
name as the interpreter first saw it (when the participant joined, or when the interpreter did): bound to
the participant's identity, which nobody can change. A later rename is not followed (counted and logged,
never quoted). A name another participant in the room already holds (a case-insensitive match) gets a
mark, "Alice (2)", so that two people's words never show under one name. Names are put on one line,
without control or invisible characters, and cut at MAX_NAME_CHARS.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from agent.language.text import clean_transcript

logger = logging.getLogger("agent.session")

MAX_NAME_CHARS = 64


class SpeakerNames:
    def __init__(self) -> None:
        self._names: dict[str, str] = {}  # identity → the name its captions carry
        self._renamed: set[str] = set()  # identities that renamed themselves (logged once each)
        self.renames_ignored = 0

    @property
    def names(self) -> Mapping[str, str]:
        return MappingProxyType(self._names)

    def follow(self, participants: Mapping[str, Any]) -> None:
        """The room's participants now (by identity): those who left are forgotten, new ones' names bound."""
        self.forget(participants)
        for participant in participants.values():
            if participant.identity not in self._names:
                self._names[participant.identity] = self._unique(_clean(participant.name))

    def renamed(self, participant: Any) -> None:
        """A participant changed their name (the room's event): their captions keep the name they had."""
        if participant.identity in self._names:
            self.renames_ignored += 1
            if participant.identity in self._renamed:
                return
            self._renamed.add(participant.identity)
            logger.info(
                "a participant renamed themselves: their captions keep the name they joined with",
                extra={"participant": participant.identity, "renames_ignored": self.renames_ignored},
            )

    def forget(self, present: Iterable[str]) -> None:
        keep = set(present)
        for identity in [i for i in self._names if i not in keep]:
            del self._names[identity]
        self._renamed &= keep

    def _unique(self, name: str) -> str:
        if not name:
            return name
        held = {held.casefold() for held in self._names.values()}
        candidate, n = name, 1
        while candidate.casefold() in held:
            n += 1
            candidate = f"{name} ({n})"
        return candidate


def _clean(name: object) -> str:
    if not isinstance(name, str):
        return ""
    return clean_transcript(name[: MAX_NAME_CHARS * 4])[:MAX_NAME_CHARS].strip()
