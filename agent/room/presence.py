"""Who is in a room, as an interpreter and the keeper (agent/run/keeper.py) see it, and an interpreter's own
presence there: its heartbeat, and its watch for rivals.

- **Ours**: a participant of kind AGENT whose `lk.agent.name` is our AGENT_NAME.
- **Live**: its heartbeat `interpreter.alive` (unix ms, rewritten every HEARTBEAT_S) is at most STALE_S
  old; with no heartbeat yet, it joined less than STALE_S ago (it is starting). An interpreter whose
  process was killed stays in the room, tracks and all, for about 21 s (livekit-server's ICE timeouts):
  only its heartbeat says at once that it is gone.
- **Rivals**: the other live interpreters of ours in the room, except the one it hands over to or takes
  over from (`interpreter.handover_from` naming the other, or naming itself). Of two rivals, the one with
  the smaller (`interpreter.started_at`, identity) stays; the other leaves. Both read the same attributes,
  so both come to the same answer.

`Member` is one participant as either side reads it: the job through the rtc SDK (`from_rtc`), the keeper
through the server API (`from_info`). Clocks are unix seconds (`time.time`: machines are NTP-synced),
passed in so that the rules are tested without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents.types import ATTRIBUTE_AGENT_NAME
from livekit.agents.utils import aio
from livekit.protocol.models import ParticipantInfo

from agent.room.room_io import ATTR_ALIVE, ATTR_HANDOVER_FROM, ATTR_STARTED_AT, RoomPublisher

logger = logging.getLogger("agent.room")

HEARTBEAT_S = 1.0
STALE_S = 3.5

Clock = Callable[[], float]  # unix seconds
AGENT, RECORDER, PERSON = "agent", "recorder", "person"  # a recorder: an egress
_KINDS_RTC = {
    rtc.ParticipantKind.PARTICIPANT_KIND_AGENT: AGENT,
    rtc.ParticipantKind.PARTICIPANT_KIND_EGRESS: RECORDER,
}
_KINDS_API = {ParticipantInfo.Kind.AGENT: AGENT, ParticipantInfo.Kind.EGRESS: RECORDER}


def unix_ms(clock: Clock = time.time) -> int:
    return int(clock() * 1000)


@dataclass(frozen=True)
class Member:
    identity: str
    kind: str  # AGENT, RECORDER or PERSON (a person, a phone caller, a stream pushed in)
    attributes: Mapping[str, str] = field(default_factory=dict)
    joined_at_ms: int = 0  # 0: not known

    @classmethod
    def from_rtc(cls, participant: Any) -> Member:
        """A participant of the rtc SDK (remote, or the job's own local participant)."""
        joined = getattr(participant, "joined_at", None)
        return cls(
            identity=participant.identity,
            kind=_KINDS_RTC.get(participant.kind, PERSON),
            attributes=dict(participant.attributes),
            joined_at_ms=int(joined.timestamp() * 1000) if joined is not None else 0,
        )

    @classmethod
    def from_info(cls, info: ParticipantInfo) -> Member:
        """A participant as the server API lists it (`ListParticipants`)."""
        return cls(
            identity=info.identity,
            kind=_KINDS_API.get(info.kind, PERSON),
            attributes=dict(info.attributes),
            joined_at_ms=info.joined_at_ms or info.joined_at * 1000,
        )

    @property
    def agent(self) -> bool:
        return self.kind == AGENT

    def is_ours(self, agent_name: str) -> bool:
        return self.agent and self.attributes.get(ATTRIBUTE_AGENT_NAME) == agent_name

    def _ms(self, key: str) -> int | None:
        try:
            return int(self.attributes[key])
        except (KeyError, ValueError):
            return None

    @property
    def alive_ms(self) -> int | None:
        return self._ms(ATTR_ALIVE)

    def rank(self) -> tuple[int, str]:
        """Smaller stays: when its worker accepted the job (else when it joined), then its identity."""
        started = self._ms(ATTR_STARTED_AT)
        return (started if started is not None else self.joined_at_ms, self.identity)

    def is_live(self, now_s: float) -> bool:
        now_ms = now_s * 1000
        alive = self.alive_ms
        if alive is not None:
            return now_ms - alive <= STALE_S * 1000
        return self.joined_at_ms > 0 and now_ms - self.joined_at_ms <= STALE_S * 1000

    def hands_over_with(self, other: Member) -> bool:
        """One of the two came to take over from the other (or the other from it)."""
        return (
            self.attributes.get(ATTR_HANDOVER_FROM) == other.identity
            or other.attributes.get(ATTR_HANDOVER_FROM) == self.identity
        )


def interpreters(members: Iterable[Member], agent_name: str) -> list[Member]:
    return [m for m in members if m.is_ours(agent_name)]


def live_interpreters(members: Iterable[Member], agent_name: str, now_s: float) -> list[Member]:
    return [m for m in interpreters(members, agent_name) if m.is_live(now_s)]


def has_people(members: Iterable[Member]) -> bool:
    """Anyone but agents and recorders: only then is a room worth interpreting."""
    return any(m.kind == PERSON for m in members)


def own_segment_tag(room: rtc.Room, agent_name: str, *, taking_over: bool) -> str | None:
    """Segment ids of its own for an interpreter that takes a room over, or finds another interpreter of ours
    there as it starts (a lost one, not yet gone): the last 6 characters of its identity, so that its ids
    never collide with the other's (a page keys captions by them). None: the ids as they always were."""
    members = [Member.from_rtc(p) for p in room.remote_participants.values()]
    if taking_over or interpreters(members, agent_name):
        return room.local_participant.identity[-6:]
    return None


def winning_rival(me: Member, members: Iterable[Member], agent_name: str, now_s: float) -> Member | None:
    """The rival for whom `me` leaves: the first-ranked of its rivals, if it ranks before `me`."""
    rivals = [
        m
        for m in live_interpreters(members, agent_name, now_s)
        if m.identity != me.identity and not m.hands_over_with(me)
    ]
    first = min(rivals, key=Member.rank, default=None)
    return first if first is not None and first.rank() < me.rank() else None


class Presence:
    """One interpreter's presence in its room. `rival()` answers "must I leave?" at once (a starting
    interpreter asks before it publishes anything); `start()` then beats (`interpreter.alive` every
    HEARTBEAT_S, through a publisher of its own, so a beat never waits behind a caption backlog) and
    watches: when a rival wins over it (someone joins, an attribute changes, or at a beat), the heartbeat
    stops and `on_rival` is called, once."""

    def __init__(
        self,
        room: Any,  # rtc.Room, or a fake with the same surface
        agent_name: str,
        on_rival: Callable[[Member], None],
        *,
        clock: Clock = time.time,
        interval_s: float = HEARTBEAT_S,
    ) -> None:
        self._room = room
        self._agent_name = agent_name
        self._on_rival = on_rival
        self._clock = clock
        self._interval_s = interval_s
        self._publisher: RoomPublisher | None = None
        self._task: asyncio.Task[None] | None = None
        self.lost_to: Member | None = None
        self._handlers: dict[str, Callable[..., None]] = {
            "participant_connected": self._check,
            "participant_attributes_changed": self._check,
            "disconnected": self._room_gone,
        }

    def me(self) -> Member:
        return Member.from_rtc(self._room.local_participant)

    def rival(self) -> Member | None:
        members = [Member.from_rtc(p) for p in self._room.remote_participants.values()]
        return winning_rival(self.me(), members, self._agent_name, self._clock())

    def check(self) -> bool:
        """Whether a rival wins over this interpreter (then `on_rival` was called, once)."""
        self._check()
        return self.lost_to is not None

    def start(self) -> None:
        self._publisher = RoomPublisher(self._room.local_participant)
        for event, handler in self._handlers.items():
            self._room.on(event, handler)
        self._task = asyncio.create_task(self._beat(), name="interpreter-heartbeat")

    async def _beat(self) -> None:
        while self.lost_to is None and self._publisher is not None:
            self._publisher.set_attributes(**{ATTR_ALIVE: str(unix_ms(self._clock))})
            self._check()
            await asyncio.sleep(self._interval_s)

    def _check(self, *_: Any) -> None:
        if self.lost_to is not None:
            return
        rival = self.rival()
        if rival is None:
            return
        self.lost_to = rival
        if self._publisher is not None:
            self._publisher.stop()  # not one more beat
        logger.info(
            "another interpreter is in the room and stays; leaving",
            extra={"started_at": self.me().rank()[0], "rival_started_at": rival.rank()[0]},
        )
        self._on_rival(rival)

    def _room_gone(self, *_: Any) -> None:
        if self._publisher is not None:
            self._publisher.room_gone()

    async def aclose(self) -> None:
        """Stop beating (the room then sees this interpreter go stale, if it stays)."""
        if self._task is None or self._publisher is None:
            return  # never started
        for event, handler in self._handlers.items():
            self._room.off(event, handler)
        await aio.cancel_and_wait(self._task)
        await self._publisher.aclose()
