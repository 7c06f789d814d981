"""The keeper: every room that asked for an interpreter has a live one, again as soon as it lost it.

The open-source LiveKit server dispatches a job once: it drops a dispatch that finds no available worker,
and never dispatches again the jobs of a worker that died (LiveKit Cloud does). So every worker's main
process runs a keeper (no single process matters; several keepers racing are harmless: an interpreter
that finds another one in its room leaves, agent/room/presence.py). Every KEEPER_INTERVAL_S (±25 %) it
sweeps the server's rooms; for each room with someone in it who is not an agent or a recorder:

- a live interpreter of ours is there (its heartbeat, `interpreter.alive`, at most STALE_S old; a draining
  one counts): nothing to do;
- else, if the room asked for one (`ListDispatch` shows a dispatch with our agent name), unless one of
  our dispatches is younger than REDISPATCH_AFTER_S, or has a job younger than JOIN_WAIT_S whose agent
  has not joined or not beaten yet: dispatch again, with the metadata of the newest dispatch (without a
  handover's `handover_from`). A room whose dispatches bring nobody is tried again after 3 s, 6 s, … at
  most 30 s, and at once when capacity may have freed (a room that had an interpreter lost it, or closed).

Rooms that are finished (not listed) or hold only agents are never dispatched. Where this runs, and why
webhooks do not drive it: docs/deploying.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from livekit import api
from livekit.agents.utils import aio

from agent.room.presence import Clock, Member, has_people, interpreters, live_interpreters
from agent.settings.config import LiveKitSettings
from agent.telemetry import metrics

logger = logging.getLogger("agent.keeper")

REDISPATCH_AFTER_S = 3.0  # a dispatch younger than this may still be finding a worker
JOIN_WAIT_S = 15.0  # a job a worker accepted, whose agent has not joined yet, may still be starting
JITTER = 0.25
BACKOFF_FIRST_S, BACKOFF_MAX_S = 3.0, 30.0
PARALLEL = 8  # rooms looked at at once
HANDOVER_KEY = "handover_from"  # in a handover's dispatch metadata: not for the next interpreter
STALE, ABSENT = "stale", "absent"  # why a room has no live interpreter: its heartbeat stopped, or none there


def missing_interpreter(members: Iterable[Member], agent_name: str, now_s: float) -> str | None:
    """Why a room with people in it has no live interpreter of ours (STALE: one is there, silent; ABSENT:
    none); None when it has one, or nobody to interpret."""
    members = list(members)
    if not has_people(members) or live_interpreters(members, agent_name, now_s):
        return None
    return STALE if interpreters(members, agent_name) else ABSENT


def _ms(ns: int) -> float:
    return ns / 1e6


def dispatch_pending(dispatches: Iterable[api.AgentDispatch], beating: set[str], now_s: float) -> bool:
    """One of these dispatches may still bring an interpreter: it is young, or a worker took its job and
    the job is young, its agent not beating yet (`beating`: who in the room has a heartbeat): not joined,
    or joined and still connecting (on a loaded machine that takes seconds before its first beat)."""
    now_ms = now_s * 1000
    for dispatch in dispatches:
        created_ms = _ms(dispatch.state.created_at)
        if now_ms - created_ms < REDISPATCH_AFTER_S * 1000:
            return True
        for job in dispatch.state.jobs:
            started_ms = _ms(job.state.started_at) or created_ms
            starting = job.state.participant_identity and job.state.participant_identity not in beating
            if starting and now_ms - started_ms < JOIN_WAIT_S * 1000:
                return True
    return False


def metadata_for_again(dispatches: Iterable[api.AgentDispatch]) -> str:
    """The newest dispatch's metadata (the room's settings), without a handover's `handover_from`."""
    newest = max(dispatches, key=lambda d: d.state.created_at)
    try:
        settings = json.loads(newest.metadata)
    except ValueError:
        return newest.metadata
    if not isinstance(settings, dict) or HANDOVER_KEY not in settings:
        return newest.metadata
    settings.pop(HANDOVER_KEY)
    return json.dumps(settings) if settings else ""


@dataclass
class _Backoff:
    tries: int = 0  # dispatches in a row that brought nobody (yet)
    next_s: float = 0.0  # not before this (unix seconds)

    def tried(self, now_s: float) -> None:
        self.tries += 1
        self.next_s = now_s + min(BACKOFF_FIRST_S * 2 ** (self.tries - 1), BACKOFF_MAX_S)


class Keeper:
    """Sweeps the server's rooms every `interval_s` (±JITTER) once `start`ed, until `aclose`."""

    def __init__(
        self,
        livekit: LiveKitSettings,
        agent_name: str,
        interval_s: float,
        *,
        clock: Clock = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._livekit = livekit
        self._agent_name = agent_name
        self._interval_s = interval_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._lk: api.LiveKitAPI | None = None
        self._task: asyncio.Task[None] | None = None
        self._backoff: dict[str, _Backoff] = {}
        self._interpreted: set[str] = set()  # rooms with a live interpreter at the last sweep
        self._failing = False  # the last sweep failed (logged once until one succeeds)
        self.sweeps = 0

    def start(self) -> None:
        if self._task is None:
            self._lk = api.LiveKitAPI(self._livekit.url, self._livekit.api_key, self._livekit.api_secret)
            self._task = asyncio.create_task(self._run(), name="interpreter-keeper")
            logger.info("keeper started", extra={"interval_s": self._interval_s})

    async def aclose(self) -> None:
        if self._task is not None:
            await aio.cancel_and_wait(self._task)
        if self._lk is not None:
            await self._lk.aclose()
            self._lk = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
                if self._failing:
                    logger.info("the keeper reaches the LiveKit server again")
                self._failing = False
            except Exception as e:  # the server unreachable, or restarting: the next sweep tries again
                if not self._failing:
                    logger.warning("the keeper's sweep failed", extra={"error": type(e).__name__})
                self._failing = True
            await asyncio.sleep(self._interval_s * (1 + JITTER * (2 * self._rng.random() - 1)))

    async def sweep(self) -> dict[str, str]:
        """One look at every room; the rooms dispatched again, with why."""
        assert self._lk is not None
        self.sweeps += 1
        listed = await self._lk.room.list_rooms(api.ListRoomsRequest())
        names = [room.name for room in listed.rooms if room.num_participants > 0]
        limit = asyncio.Semaphore(PARALLEL)
        interpreted: set[str] = set()
        looks = await asyncio.gather(
            *(self._look(name, limit, interpreted) for name in names), return_exceptions=True
        )
        if self._interpreted - interpreted:  # an interpreter went (or its room closed): capacity may be free
            self._backoff.clear()
        self._interpreted = interpreted
        for name in set(self._backoff) - set(names):
            del self._backoff[name]
        dispatched = {name: look for name, look in zip(names, looks, strict=True) if isinstance(look, str)}
        errors = [look for look in looks if isinstance(look, BaseException)]
        if dispatched:
            for reason in dispatched.values():
                metrics.KEEPER_DISPATCHES.labels(reason=reason).inc()
            logger.info(  # room names are ids: in `extra`, never in the message
                "dispatched the interpreter again",
                extra={
                    "rooms": len(dispatched),
                    "stale": sum(r == STALE for r in dispatched.values()),
                    "room_names": sorted(dispatched),
                },
            )
        if errors:
            raise errors[0]
        return dispatched

    async def _look(self, room: str, limit: asyncio.Semaphore, interpreted: set[str]) -> str | None:
        """Dispatch again to `room` if it needs it; why it did (STALE or ABSENT), or None."""
        assert self._lk is not None
        async with limit:
            listed = await self._lk.room.list_participants(api.ListParticipantsRequest(room=room))
            members = [Member.from_info(p) for p in listed.participants]
            now = self._clock()
            why = missing_interpreter(members, self._agent_name, now)
            if why is None:
                if live_interpreters(members, self._agent_name, now):
                    interpreted.add(room)
                    self._backoff.pop(room, None)
                return None
            backoff = self._backoff.get(room)
            if backoff is not None and now < backoff.next_s:
                return None
            dispatches = await self._lk.agent_dispatch.list_dispatch(room)
            ours = [d for d in dispatches if d.agent_name == self._agent_name]
            beating = {m.identity for m in members if m.alive_ms is not None}
            if not ours or dispatch_pending(ours, beating, now):
                return None
            request = api.CreateAgentDispatchRequest(
                agent_name=self._agent_name, room=room, metadata=metadata_for_again(ours)
            )
            await self._lk.agent_dispatch.create_dispatch(request)
            self._backoff.setdefault(room, _Backoff()).tried(now)
            return why
