"""A deploy mid-meeting, in the room: one interpreter hands the room over to another (make before break).

The one handing over (its worker drains) cuts each speaker at their next pause once the other listens
(`interpreter.standby`), and publishes the cuts (`interpreter.cut_at`, unix ms per speaker); it finishes what
it heard before them, then leaves. The one taking over (`Takeover`) joins with `interpreter.handover_from`
naming the other, publishes its tracks, keeps each speaker's audio on hold, says it listens, and once the
cuts are known interprets each speaker from their cut (a speaker without one: from all it holds). If the other
goes stale (its heartbeat, `interpreter.alive`, older than STALE_S) or leaves without cuts, it interprets
every speaker from when the other was last live. The two are on different machines: cuts travel as wall
clock times (NTP-synced), each side converting from and to its own monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from livekit import rtc

from agent.room.outputs import Outputs
from agent.room.presence import STALE_S
from agent.room.room_io import (
    ATTR_ALIVE,
    ATTR_CUT_AT,
    ATTR_DRAINING,
    ATTR_HANDOVER_FROM,
    ATTR_STANDBY,
    RoomPublisher,
    is_speaker,
    track_name,
)
from agent.room.speakers import Speakers
from agent.telemetry.latency import Clock

logger = logging.getLogger("agent.session")

LISTEN_WAIT_S = 5.0  # taking over: at most this long for every speaker's audio before saying it listens
STANDBY_MAX_S = 30.0  # taking over: no cuts nor the other gone after this long (its replay buffer): go on
TURN_MAX_S = 10.0  # taking over: the longest the first speech of a language waits for the other's to end
_POLL_S = 0.05


def wall_ms(at: float, clock: Clock) -> int:
    """A moment of `clock` as unix milliseconds."""
    return round((time.time() - (clock() - at)) * 1000)


def from_wall_ms(ms: float, clock: Clock) -> float:
    """Unix milliseconds as a moment of `clock`."""
    return clock() - (time.time() - ms / 1000)


def is_agent(participant: Any) -> bool:
    return bool(participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)


def successor(room: Any, identity: str) -> Any | None:
    """The interpreter that came to take the room over from `identity`, if it is in the room."""
    for participant in room.remote_participants.values():
        if is_agent(participant) and participant.attributes.get(ATTR_HANDOVER_FROM) == identity:
            return participant
    return None


def listens(participant: Any) -> bool:
    return bool(participant.attributes.get(ATTR_STANDBY) == "true")


def parse_cuts(value: str, clock: Clock) -> dict[str, float] | None:
    """`interpreter.cut_at` as each speaker's cut on `clock`; None if it is not a JSON object of numbers."""
    try:
        cuts = json.loads(value)
    except ValueError:
        return None
    if not isinstance(cuts, dict) or not all(isinstance(v, int | float) for v in cuts.values()):
        return None
    return {str(identity): from_wall_ms(ms, clock) for identity, ms in cuts.items()}


def begin_handover(publisher: RoomPublisher) -> None:
    """The worker shuts down: say so (`interpreter.draining`); interpreting goes on."""
    publisher.set_attributes(**{ATTR_DRAINING: "true"})


async def hand_over(
    speakers: Speakers, publisher: RoomPublisher, clock: Clock, within_s: float
) -> dict[str, int]:
    """The other interpreter listens: cut every speaker at their next pause (at once after `within_s`),
    listen to nobody new, and publish the cuts (`interpreter.cut_at`, unix ms by speaker). What was heard
    before them is still interpreted (the session's `aclose`)."""
    cuts = await speakers.cut_all(within_s)
    wall = {identity: wall_ms(at, clock) for identity, at in cuts.items()}
    publisher.set_attributes(**{ATTR_CUT_AT: json.dumps(wall, sort_keys=True)})
    logger.info("handing over: speakers cut", extra={"speakers": len(wall)})
    return wall


class Takeover:
    """The interpreter taking the room over from `old`: its speakers' ears start on hold (`Speakers.holding`)
    until `run` has the cuts, or the other is gone; each language's first speech waits for its `turn`."""

    def __init__(
        self,
        *,
        room: Any,
        speakers: Speakers,
        outputs: Outputs | None = None,
        publisher: RoomPublisher,
        old: str,
        clock: Clock,
    ) -> None:
        self._room = room
        self._speakers = speakers
        self._publisher = publisher
        self._old = old
        self._clock = clock
        self._cut_at: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._turns: set[str] = set()  # the languages whose track the other no longer speaks into
        speakers.holding = True
        if outputs is not None:
            outputs.wait_turn = self.turn

    def start(self) -> None:
        self._room.on("participant_attributes_changed", self.on_attributes)
        self._task = asyncio.create_task(self.run(), name="room-takeover")

    async def aclose(self) -> None:
        self._room.off("participant_attributes_changed", self.on_attributes)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def on_attributes(self, changed: dict[str, str], participant: Any) -> None:
        """The room's `participant_attributes_changed`: the cuts are kept even if the other leaves at once."""
        if participant.identity == self._old and changed.get(ATTR_CUT_AT):
            self._cut_at = changed[ATTR_CUT_AT]

    async def run(self) -> None:
        try:
            await self._listening()
            self._publisher.set_attributes(**{ATTR_STANDBY: "true"})
            cuts, default = await self._cuts()
            self._speakers.release(cuts, default)
        finally:
            self._speakers.holding = False
            self._publisher.set_attributes(**{ATTR_STANDBY: ""})

    async def _listening(self) -> None:
        """Until the audio of every speaker's unmuted track arrives here (at most LISTEN_WAIT_S)."""
        until = self._clock() + LISTEN_WAIT_S
        while self._clock() < until:
            tracks = [
                sid
                for participant in self._room.remote_participants.values()
                if is_speaker(participant)
                for sid, publication in participant.track_publications.items()
                if publication.kind == rtc.TrackKind.KIND_AUDIO and not publication.muted
            ]
            if all(self._speakers.hearing(sid) for sid in tracks):
                return
            await asyncio.sleep(_POLL_S)
        logger.warning("taking over: not every speaker's audio arrived in time; listening anyway")

    async def _cuts(self) -> tuple[dict[str, float], float | None]:
        """The cuts (clock times by speaker) and where a speaker without one starts (None: from all held)."""
        last_live = self._clock()
        until = self._clock() + STANDBY_MAX_S
        while True:
            old = self._room.remote_participants.get(self._old)
            if old is not None and self._cut_at is None:
                self._cut_at = old.attributes.get(ATTR_CUT_AT) or None
            if self._cut_at is not None:
                cuts = parse_cuts(self._cut_at, self._clock)
                if cuts is not None:
                    logger.info("taking over: the cuts are known", extra={"speakers": len(cuts)})
                    return cuts, None
                logger.warning("taking over: the other interpreter's cuts are malformed")
                return {}, last_live
            alive = self._alive(old)
            if old is None or self._stale(alive):
                at = last_live if alive is None else alive
                logger.warning("taking over: the other interpreter is gone without its cuts")
                return {}, at
            last_live = self._clock() if alive is None else alive
            if self._clock() > until:
                logger.warning("taking over: no cuts in time; interpreting from now")
                return {}, self._clock()
            await asyncio.sleep(_POLL_S)

    async def turn(self, language: str) -> None:
        """Before speaking into a language's track: wait until the other interpreter's track of that language
        is gone (it unpublishes it once it has spoken all it heard before the cuts), it left, or went stale,
        at most TURN_MAX_S, so that a listener never hears the two at once."""
        if language in self._turns:
            return
        until = self._clock() + TURN_MAX_S
        name = track_name(language)
        while self._clock() < until:
            old = self._room.remote_participants.get(self._old)
            if (
                old is None
                or self._stale(self._alive(old))
                or all(publication.name != name for publication in old.track_publications.values())
            ):
                break
            await asyncio.sleep(_POLL_S)
        self._turns.add(language)

    def _stale(self, alive: float | None) -> bool:
        """The other's last heartbeat (clock time) is older than STALE_S: it is gone (as presence.py says)."""
        return alive is not None and self._clock() - alive > STALE_S

    def _alive(self, old: Any | None) -> float | None:
        """When the other was last live by its heartbeat (clock time), if it has one."""
        if old is None:
            return None
        with contextlib.suppress(ValueError):
            return from_wall_ms(float(old.attributes.get(ATTR_ALIVE, "")), self._clock)
        return None
