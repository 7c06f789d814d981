"""A deploy mid-meeting: on SIGTERM each job hands its room over to an interpreter on another worker.

The worker tells its jobs that it drains through a file (`DrainFlag`): before any job process starts, it
puts the file's path in its environment (job processes inherit it); when it drains (`InterpreterServer.drain`)
it creates the file, and each job polls for it every FLAG_POLL_S. (Job processes ignore SIGTERM, and the
framework has no public way to tell them.)

A job that sees it (`hand_over_when_draining`) says it drains (`interpreter.draining`), dispatches a new
interpreter for its room with the room's metadata plus `handover_from` (its identity), and goes on
interpreting; it dispatches again every REDISPATCH_S while nobody came (no worker had room), until its
worker's drain times out (then the framework ends the job: it finishes what it heard and leaves, as before).
Once the new interpreter listens (`interpreter.standby`), the job cuts each speaker at their next pause
(within CUT_WITHIN_S), publishes the cuts, and ends itself: `on_session_end` finishes what it heard, then
it leaves. How the room side goes: `agent/room/handover.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from livekit import api
from livekit.agents import JobContext, JobRequest

from agent.room.handover import begin_handover, hand_over, listens, successor
from agent.room.room_io import ATTR_HANDOVER_FROM
from agent.room.session import RoomSession

logger = logging.getLogger("agent.worker")

DRAIN_FLAG_ENV = "INTERPRETER_DRAIN_FLAG"  # set by the worker for its job processes; not a setting
HANDOVER_KEY = "handover_from"  # the top-level key of a handover's job metadata (the contract's)
FLAG_POLL_S = 0.2
REDISPATCH_S = 5.0  # dispatch the handover again when nobody came within this long
CUT_WITHIN_S = 2.0  # the longest a speaker's cut waits for their next pause
_POLL_S = 0.1


class DrainFlag:
    """ "The worker drains", from the worker process to its job processes: a file that exists once it does."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_worker(cls) -> DrainFlag:
        """A new flag in a directory of its own, its path in this process's environment (before the job
        processes start, so that they inherit it)."""
        flag = cls(Path(tempfile.mkdtemp(prefix="interpreter-drain-")) / "draining")
        os.environ[DRAIN_FLAG_ENV] = str(flag.path)
        return flag

    @classmethod
    def of_job(cls) -> DrainFlag | None:
        """The flag of the worker that started this job process, if it set one."""
        path = os.environ.get(DRAIN_FLAG_ENV)
        return cls(Path(path)) if path else None

    def raise_flag(self) -> None:
        with contextlib.suppress(OSError):  # a job then drains as before, without handing over
            self.path.touch()

    def is_raised(self) -> bool:
        return self.path.exists()

    async def raised(self) -> None:
        while not self.is_raised():  # noqa: ASYNC110 (another process raises it: polled)
            await asyncio.sleep(FLAG_POLL_S)

    def remove(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


def split_handover(metadata: str | None) -> tuple[str | None, str | None]:
    """A job's metadata → (the identity it takes over from, the room's metadata without that key)."""
    try:
        parsed = json.loads(metadata) if metadata else None
    except ValueError:
        return None, metadata
    if not isinstance(parsed, dict) or not isinstance(old := parsed.pop(HANDOVER_KEY, None), str):
        return None, metadata
    return old, json.dumps(parsed)


def handover_metadata(metadata: str | None, identity: str) -> str:
    """The metadata of the dispatch that takes the room over from `identity`: the room's, plus the key."""
    _, room_metadata = split_handover(metadata)
    try:
        parsed = json.loads(room_metadata) if room_metadata else {}
    except ValueError:
        parsed = {}
    settings = parsed if isinstance(parsed, dict) else {}
    return json.dumps({**settings, HANDOVER_KEY: identity})


def handover_attributes(request: JobRequest) -> dict[str, str]:
    """What an accepted job's agent says as it joins: an interpreter coming to take over says whom from
    (`interpreter.handover_from`), so the other, and the never-two rule, know it at once."""
    old, _ = split_handover(request.job.metadata)
    return {ATTR_HANDOVER_FROM: old} if old else {}


async def hand_over_when_draining(ctx: JobContext, session: RoomSession, flag: DrainFlag) -> None:
    """Wait for the worker to drain; then hand the room over and end the job (see the module)."""
    await flag.raised()
    identity = ctx.room.local_participant.identity
    logger.info("the worker drains: handing the room over")
    begin_handover(session.publisher)
    metadata = handover_metadata(ctx.job.metadata, identity)
    dispatched_at: float | None = None
    while (new := successor(ctx.room, identity)) is None or not listens(new):
        if new is None and (dispatched_at is None or time.monotonic() - dispatched_at >= REDISPATCH_S):
            if dispatched_at is not None:
                logger.warning("nobody came to take the room over; dispatching again")
            dispatched_at = time.monotonic()
            await _dispatch(ctx, metadata)
        await asyncio.sleep(_POLL_S)
    await hand_over(session.speakers, session.publisher, session.clock, CUT_WITHIN_S)
    ctx.shutdown(reason="handed over")


async def _dispatch(ctx: JobContext, metadata: str) -> None:
    request = api.CreateAgentDispatchRequest(
        agent_name=ctx.job.agent_name, room=ctx.room.name, metadata=metadata
    )
    try:
        await ctx.api.agent_dispatch.create_dispatch(request)
    except Exception as e:  # LiveKit unreachable for a moment: the next round tries again
        logger.warning("could not dispatch the handover", extra={"error": type(e).__name__})
