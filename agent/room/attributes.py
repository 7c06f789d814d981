"""What the session reads of participants' attributes (docs/room-contract.md, "Attributes a front end sets"):
only the ones it uses, each value bounded, and each participant's changes applied at most once per
`SETTLE_S`.

A participant's first change after a quiet time applies at once; changes that come faster wait, and only
the latest is applied when its window has passed. A storm of changes from one participant (hundreds a
second) therefore brings the room in line at most once a second, for that participant alone: nobody
else's changes wait on it, and what the session reads of everyone else never changes with it. Withdrawing
consent to one's own voice never waits. A value longer than `MAX_VALUE_CHARS` is cut (a language list that
long is not one anyway). The clock and the timer are injected, so that tests move time themselves.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from agent.room.cloning import ATTR_VOICE
from agent.room.room_io import ATTR_INTERPRET_TO, ATTR_LANGUAGE, ATTR_LISTENING_TO

logger = logging.getLogger("agent.session")

READ = (ATTR_LANGUAGE, ATTR_INTERPRET_TO, ATTR_VOICE, ATTR_LISTENING_TO)
MAX_VALUE_CHARS = 256  # far more than `interpret_to` at its cap ("zh-Hant-TW,pt-BR" is 16)
SETTLE_S = 1.0  # a participant's changes apply at most once a second
STORM_LOG_AT = 10  # changes coalesced in one window before it is logged

Cancel = Callable[[], None]
CallLater = Callable[[float, Callable[[], None]], Cancel]


def _asyncio_call_later(delay_s: float, callback: Callable[[], None]) -> Cancel:
    return asyncio.get_running_loop().call_later(delay_s, callback).cancel


class ParticipantAttributes:
    """The attributes the session acts on, per participant identity. `on_applied` is called when what a
    participant's attributes say changed (the session then brings the room in line)."""

    def __init__(
        self,
        *,
        window_s: float = SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
        call_later: CallLater = _asyncio_call_later,
    ) -> None:
        self.on_applied: Callable[[], None] = lambda: None
        self._window_s = window_s
        self._clock = clock
        self._call_later = call_later
        self._applied: dict[str, Mapping[str, str]] = {}
        self._applied_at: dict[str, float] = {}
        self._waiting: dict[str, Any] = {}  # identity → the participant whose latest change waits
        self._timers: dict[str, Cancel] = {}
        self._storm: dict[str, int] = {}  # identity → changes coalesced in its current window
        self.coalesced = 0  # changes never applied because a later one came within the window
        self.clipped = 0  # values cut at MAX_VALUE_CHARS

    @property
    def tracked(self) -> int:
        """Participants whose attributes are held (those in the room)."""
        return len(self._applied) + len(self._timers)

    def of(self, participant: Any) -> Mapping[str, str]:
        """What the session reads of this participant's attributes now (at first sight: as they are)."""
        applied = self._applied.get(participant.identity)
        if applied is None:
            applied = self._applied[participant.identity] = self._take(participant)
        return applied

    def changed(self, participant: Any) -> None:
        """A participant's attributes changed (the room's event)."""
        identity = participant.identity
        if self._withdraws_consent(participant):  # privacy first: never waits for a window
            if (cancel := self._timers.pop(identity, None)) is not None:
                cancel()
            self._waiting.pop(identity, None)
            self._apply(participant)
            return
        if identity in self._timers:  # a change already waits for its window: this one replaces it
            self._waiting[identity] = participant
            self.coalesced += 1
            self._storm[identity] = self._storm.get(identity, 0) + 1
            return
        wait = self._applied_at.get(identity, -math.inf) + self._window_s - self._clock()
        if wait <= 0:
            self._apply(participant)
        else:
            self._waiting[identity] = participant
            self._timers[identity] = self._call_later(wait, lambda: self._due(identity))

    def _withdraws_consent(self, participant: Any) -> bool:
        """Own voice was consented to (as applied) and is no longer."""
        applied = self._applied.get(participant.identity, {})
        now = participant.attributes.get(ATTR_VOICE, "")
        return applied.get(ATTR_VOICE, "").strip() == "own" and str(now).strip() != "own"

    def forget(self, present: Iterable[str]) -> None:
        """Drop what is held of the participants who left (a change of theirs still waiting too)."""
        keep = set(present)
        for identity in [i for i in self._applied if i not in keep]:
            del self._applied[identity]
            self._applied_at.pop(identity, None)
        for identity in [i for i in self._timers if i not in keep]:
            self._timers.pop(identity)()
            self._waiting.pop(identity, None)
            self._storm.pop(identity, None)

    def close(self) -> None:
        self.forget(())

    def _due(self, identity: str) -> None:
        self._timers.pop(identity, None)
        participant = self._waiting.pop(identity, None)
        if (storm := self._storm.pop(identity, 0)) >= STORM_LOG_AT:
            logger.warning(
                "a participant changed its attributes faster than they are applied: only the latest applied",
                extra={"participant": identity, "coalesced": storm, "window_s": self._window_s},
            )
        if participant is not None:
            self._apply(participant)

    def _apply(self, participant: Any) -> None:
        identity = participant.identity
        before = self._applied.get(identity)
        self._applied[identity] = after = self._take(participant)
        self._applied_at[identity] = self._clock()
        if after != before:
            self.on_applied()

    def _take(self, participant: Any) -> Mapping[str, str]:
        taken: dict[str, str] = {}
        for key in READ:
            value = participant.attributes.get(key)
            if not isinstance(value, str) or not value:
                continue
            if len(value) > MAX_VALUE_CHARS:
                self.clipped += 1
                value = value[:MAX_VALUE_CHARS]
            taken[key] = value
        return MappingProxyType(taken)
