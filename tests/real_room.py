"""A real room for a test: the real LiveKit server (session fixture), the interpreter worker as a subprocess
registered with it, the fake providers on 127.0.0.1 in the test's own loop, and real participants."""

from __future__ import annotations

import itertools
import json
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

    def dispatch(self, metadata: dict[str, Any] | None = None) -> api.RoomAgentDispatch:
        return api.RoomAgentDispatch(agent_name=AGENT_NAME, metadata=json.dumps(metadata or {}))

    async def join(
        self,
        participant: Participant,
        *,
        attributes: dict[str, str] | None = None,
        dispatch: api.RoomAgentDispatch | None = None,
        agent: bool = False,
    ) -> None:
        token = self.server.token(
            participant.identity, self.name, attributes=attributes, dispatch=dispatch, agent=agent
        )
        await participant.connect(self.server.url, token)
        self.participants.append(participant)

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
        """Wait until the interpreter has joined and publishes exactly these tracks."""
        await eventually(
            lambda: set(participant.agent_tracks()) == set(names),
            within_s=within_s,
            what=f"the agent's tracks to be {sorted(names)} (are {sorted(participant.agent_tracks())})",
        )

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
