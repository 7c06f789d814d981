"""A real room for a test: the real LiveKit server (session fixture), the interpreter worker as a subprocess
registered with it, the fake providers on 127.0.0.1 in the test's own loop, and real participants."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from livekit import api, rtc

from tests.conftest import Fakes
from tests.livekit_server import LiveKitServer
from tests.loopback import eventually
from tests.participants import Listener, Participant, Speaker
from tests.room_worker import WorkerProcess

AGENT_NAME = "interpreter"
# what must never show in the worker's output (the worker runs in Python's development mode)
FORBIDDEN = (
    "Task was destroyed but it is pending",
    "Unclosed client session",
    "Unclosed connector",
    "unclosed transport",
    "ResourceWarning",
    "was never awaited",
    "Traceback",
    "could not publish to the room",
    "room control step failed",
)
_rooms = itertools.count(1)


class RealRoom:
    def __init__(self, server: LiveKitServer, fakes: Fakes, worker: WorkerProcess, name: str) -> None:
        self.server = server
        self.fakes = fakes
        self.worker = worker
        self.name = name
        self.participants: list[Participant] = []
        self.dispatched_again = 0  # dispatches dropped by the server and made again

    def dispatch(self, metadata: dict[str, Any] | None = None) -> api.RoomAgentDispatch:
        return api.RoomAgentDispatch(agent_name=AGENT_NAME, metadata=json.dumps(metadata or {}))

    async def join(
        self,
        participant: Participant,
        *,
        attributes: dict[str, str] | None = None,
        dispatch: api.RoomAgentDispatch | None = None,
        agent: bool = False,
        name: str = "",
    ) -> None:
        if dispatch is not None:
            await self.worker_available()
        token = self.server.token(
            participant.identity, self.name, name=name, attributes=attributes, dispatch=dispatch, agent=agent
        )
        await participant.connect(self.server.url, token)
        self.participants.append(participant)

    async def worker_available(self, within_s: float = 180) -> None:
        """Before a dispatch: wait while the worker reports itself full, since the server drops a dispatch
        that finds no available worker. (Its load counts its own processes' CPU, LOAD_CPU=worker, but a
        loaded machine can still saturate them.)"""
        await eventually(self.worker.available, within_s=within_s, what="the worker to be available")

    async def dispatch_again_if_dropped(self) -> bool:
        """If the server dropped the interpreter's dispatch to this room (the worker never got a job for it:
        it reported itself full, or declined the job because its CPU was saturated when the request came, or
        the server's cache of which agents are registered, kept up to a minute (livekit-server 1.13.5
        `pkg/agent/client.go`, `EnabledCacheTTL`; invalidated when a worker registers), missed the worker:
        seen once in a full run, "no worker is available" for about a minute after the worker registered),
        dispatch it again through the API with the same metadata. Whether it did."""
        if self.worker.job_requests(self.name):
            return False
        lk = self.server.api()
        try:
            ours = [d for d in await lk.agent_dispatch.list_dispatch(self.name) if d.agent_name == AGENT_NAME]
            if not ours:
                return False
            await self.worker_available()
            request = api.CreateAgentDispatchRequest(
                agent_name=AGENT_NAME, room=self.name, metadata=ours[-1].metadata
            )
            await lk.agent_dispatch.create_dispatch(request)
            self.dispatched_again += 1
            return True
        finally:
            await lk.aclose()

    async def speaker(self, identity: str, *, publish: bool = True, **kwargs: Any) -> Speaker:
        speaker = Speaker(identity)
        await self.join(speaker, **kwargs)
        if publish:
            await speaker.publish()
        return speaker

    async def listener(self, identity: str, **kwargs: Any) -> Listener:
        listener = Listener(identity)
        await self.join(listener, **kwargs)
        return listener

    async def agent_tracks(self, participant: Participant, *names: str, within_s: float = 20) -> None:
        """Wait until the interpreter has joined and publishes exactly these tracks (dispatching it again if
        the server dropped its dispatch, see `dispatch_again_if_dropped`)."""
        deadline = time.perf_counter() + 240  # on a machine busy with other test runs, it can take a while
        while names and participant.agent() is None:
            try:
                await eventually(lambda: participant.agent() is not None, within_s=8, what="the agent")
            except AssertionError:
                if time.perf_counter() > deadline:
                    raise
                # a job the worker did get may still be starting (a re-dispatch can land just as the
                # server's cache of registered agents expires): wait for it rather than fail
                if not await self.dispatch_again_if_dropped() and not self.worker.job_requests(self.name):
                    raise
        try:
            await eventually(lambda: set(participant.agent_tracks()) == set(names), within_s=within_s)
        except AssertionError:
            raise AssertionError(
                f"the agent's tracks are {sorted(participant.agent_tracks())}, not {sorted(names)}"
            ) from None

    async def leave(self, participant: Participant) -> None:
        await participant.aclose()
        self.participants.remove(participant)

    def check_worker_output(self) -> None:
        output = self.worker.output()
        found = [f for f in FORBIDDEN if f in output]
        assert not found, f"the worker's output has {found}\n{self.worker.tail(80)}"


@asynccontextmanager
async def real_room(
    server: LiveKitServer, fakes: Fakes, workdir: Path, **worker_env: str
) -> AsyncIterator[RealRoom]:
    """A worker registered with `server` and a fresh room name; everything closed afterwards."""
    env = {"DRAIN_TIMEOUT_S": "2", **worker_env}
    worker = WorkerProcess(server, fakes.env(**env), workdir)
    await worker.start()
    room = RealRoom(server, fakes, worker, f"room-{next(_rooms)}-{workdir.name}"[:60])
    try:
        yield room
    finally:
        for participant in list(room.participants):
            await participant.aclose()
        await worker.aclose()


def is_agent(participant: rtc.RemoteParticipant) -> bool:
    return bool(participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)
