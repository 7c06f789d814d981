"""The interpreter on a LiveKit cluster: two real `livekit-server` nodes, `a` and `b`, sharing a Redis
(Debian's `redis-server`), as a self-hoster who outgrows one machine runs them (docs/deploying.md, "A
LiveKit cluster"). Workers are `python -m agent start` subprocesses, each registered with one node (its
LIVEKIT_URL); speakers and listeners are real participants; only the providers are fakes on 127.0.0.1.

Each room is created on a chosen node (the API's `node_id`) and its people join, and its interpreter is
dispatched, through the other node: the signalling, the API call and the agent job all cross nodes through
Redis, while the media goes straight to the room's node.

One Redis, two nodes, the fakes and the workers are shared by the module's tests (the module's event loop),
in this order: a worker on node b alone; then one on each node; then one of them killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from livekit import api, rtc
from livekit.agents.types import ATTRIBUTE_AGENT_STATE

from agent.run.filemode import read_wav
from tests.conftest import ARTIFACTS, ONE_SENTENCE, Fakes, start_fakes, stop_fakes
from tests.livekit_cluster import REDIS_HINT, LiveKitCluster, find_redis
from tests.livekit_server import INSTALL_HINT, LiveKitServer, find_binary
from tests.loopback import eventually, tone_sequence
from tests.participants import LISTEN_RATE, Listener, Participant, Speaker
from tests.real_room import AGENT_NAME, FORBIDDEN
from tests.room_worker import WorkerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

SENTENCE = ONE_SENTENCE.transcripts[0]
TRANSLATION = ONE_SENTENCE.translations["camera"]
TONE = ONE_SENTENCE.tones["cámara"]
TRACK = "interpretation-es"


class Cluster:
    """The module's cluster, fakes and workers (one per node, started when a test asks for it)."""

    def __init__(self, nodes: LiveKitCluster, fakes: Fakes, workdir: Path) -> None:
        self.nodes = nodes
        self.fakes = fakes
        self.workdir = workdir
        self.workers: dict[str, WorkerProcess] = {}
        self._rooms = 0

    def node(self, name: str) -> LiveKitServer:
        return {"a": self.nodes.a, "b": self.nodes.b}[name]

    async def worker(self, name: str) -> WorkerProcess:
        """A running worker registered with node `name` (started now unless one runs)."""
        worker = self.workers.get(name)
        if worker is None or worker.proc is None or worker.proc.returncode is not None:
            # the keeper on (tests/room_worker.py turns it off): the cluster is this module's own, and a
            # worker lost is covered only by the other worker's keeper dispatching its room again
            env = self.fakes.env(DRAIN_TIMEOUT_S="2", STT_ENDPOINTING_MS="600", KEEPER_INTERVAL_S="2")
            worker = WorkerProcess(self.node(name), env, self.workdir / f"worker-{name}-{len(self.workers)}")
            self.workers[name] = worker
            await worker.start()
        return worker

    async def without_worker(self, name: str) -> None:
        if (worker := self.workers.pop(name, None)) is not None:
            await worker.aclose()

    def running(self) -> list[WorkerProcess]:
        return [w for w in self.workers.values() if w.proc is not None and w.proc.returncode is None]

    def room_name(self, what: str) -> str:
        self._rooms += 1
        return f"cluster-{self._rooms}-{what}"

    def check_worker_output(self) -> None:
        for worker in self.running():
            found = [f for f in FORBIDDEN if f in worker.output()]
            assert not found, f"the worker's output has {found}\n{worker.tail(80)}"


@pytest.fixture(scope="module")
def livekit_cluster() -> Iterator[LiveKitCluster]:
    """Missing livekit-server or redis-server: a skip with the install hint, a failure under CI=true."""
    livekit, redis = find_binary(), find_redis()
    if livekit is None or redis is None:
        hint = INSTALL_HINT if livekit is None else REDIS_HINT
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(hint, pytrace=False)
        pytest.skip(hint)
    nodes = LiveKitCluster(livekit, redis, ARTIFACTS)
    nodes.start()
    yield nodes
    nodes.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    livekit_cluster: LiveKitCluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    fakes = await start_fakes(ONE_SENTENCE)
    fakes.deepgram.transcript_for = lambda _duration_s: SENTENCE  # every sentence said is that one
    shared = Cluster(livekit_cluster, fakes, tmp_path_factory.mktemp("cluster"))
    try:
        yield shared
    finally:
        await asyncio.gather(*(worker.aclose() for worker in shared.workers.values()))
        await stop_fakes(fakes)


class Room:
    """A room hosted on one node, its people joined through another; closed at the end of the test."""

    def __init__(self, cluster: Cluster, name: str, host: LiveKitServer, through: LiveKitServer) -> None:
        self.cluster, self.name, self.host, self.through = cluster, name, host, through
        self.speaker = Speaker("alice")
        self.listener = Listener("dora")

    async def open(self) -> None:
        """The room created on its node, a speaker (English) and a listener (wanting Spanish) joined, the
        interpreter dispatched through the API, all through the other node."""
        await self.cluster.nodes.create_room(self.name, on=self.host, through=self.through)
        assert self.cluster.nodes.host_of(self.name) is self.host
        for participant, attributes in (
            (self.speaker, {"language": "en"}),
            (self.listener, {"interpret_to": "es"}),
        ):
            await participant.connect(
                self.through.url, self.through.token(participant.identity, self.name, attributes=attributes)
            )
        await self.speaker.publish()
        await self.dispatch()

    async def dispatch(self) -> None:
        for worker in self.cluster.running():
            await eventually(worker.available, within_s=120, what="the worker to be available")
        lk = self.through.api()
        try:
            request = api.CreateAgentDispatchRequest(agent_name=AGENT_NAME, room=self.name, metadata="{}")
            await lk.agent_dispatch.create_dispatch(request)
        finally:
            await lk.aclose()

    def takers(self) -> list[WorkerProcess]:
        """The workers that got a job for this room (each logs the job requests it receives)."""
        return [w for w in self.cluster.workers.values() if w.job_requests(self.name)]

    def worker_of(self, agent: rtc.RemoteParticipant) -> WorkerProcess:
        """The worker running `agent`'s job (its identity is `agent-<job id>`; the worker logs the id)."""
        job = f'"job_id": "{agent.identity.removeprefix("agent-")}"'
        (worker,) = [w for w in self.cluster.workers.values() if job in w.output()]
        return worker

    async def interpreter(self, *, besides: str = "", within_s: float = 60) -> rtc.RemoteParticipant:
        """Wait for an interpreter (other than `besides`) publishing the Spanish track and listening.
        If no worker got a job for the room in time, dispatch again once: the server may drop a dispatch
        (its cache of registered agents, tests/real_room.py `dispatch_again_if_dropped`)."""

        def found() -> rtc.RemoteParticipant | None:
            return next(
                (a for a in agents(self.listener) if a.identity != besides and has_track(a, TRACK)), None
            )

        if not besides:
            with contextlib.suppress(AssertionError):
                await eventually(lambda: found() is not None, within_s=15, what="an interpreter")
            if found() is None and not self.takers():
                await self.dispatch()
        await eventually(lambda: found() is not None, within_s=within_s, what="an interpreter")
        agent = found()
        assert agent is not None
        await eventually(lambda: agent.attributes.get(ATTRIBUTE_AGENT_STATE) == "listening", what="listening")
        return agent

    async def interpreted(self, agent: rtc.RemoteParticipant) -> None:
        """The speaker says the sentence; the listener gets its translation's caption from `agent` and
        hears it (its tone) on the Spanish track."""
        heard_before = len(self.listener.heard.get(TRACK, []))
        await self.speaker.say(read_wav(ONE_SENTENCE.wav))

        def captions() -> list[str]:
            finals = self.listener.final_captions(translated=True, language="es")
            return [c.text for c in finals if c.sender == agent.identity]

        def tones() -> list[float]:  # heard since the sentence was said, from any interpreter
            frames = self.listener.heard.get(TRACK, [])[heard_before:]
            samples = np.concatenate([s for _, s in frames]) if frames else np.zeros(0, np.int16)
            return tone_sequence(samples, LISTEN_RATE, min_windows=3)

        await eventually(lambda: captions() == [TRANSLATION], within_s=40, what="the translated caption")
        await eventually(lambda: TONE in tones(), within_s=20, what="the translation heard")

    async def aclose(self) -> None:
        for participant in (self.speaker, self.listener):
            await participant.aclose()


def agents(participant: Participant) -> list[rtc.RemoteParticipant]:
    return [
        p
        for p in participant.room.remote_participants.values()
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    ]


def has_track(agent: rtc.RemoteParticipant, name: str) -> bool:
    return any(pub.name == name for pub in agent.track_publications.values())


async def test_a_worker_registered_with_one_node_interprets_a_room_hosted_on_the_other(
    cluster: Cluster,
) -> None:
    await cluster.without_worker("a")
    worker_b = await cluster.worker("b")
    room = Room(cluster, cluster.room_name("on-a"), host=cluster.nodes.a, through=cluster.nodes.a)
    try:
        await room.open()
        agent = await room.interpreter()
        await room.interpreted(agent)
        assert room.worker_of(agent) is worker_b
    finally:
        await room.aclose()
    cluster.check_worker_output()


async def test_rooms_hosted_on_either_node_are_interpreted(cluster: Cluster) -> None:
    await asyncio.gather(cluster.worker("a"), cluster.worker("b"))
    a, b = cluster.nodes.a, cluster.nodes.b
    rooms = [Room(cluster, cluster.room_name("on-a"), a, b), Room(cluster, cluster.room_name("on-b"), b, a)]
    try:
        for room in rooms:
            await room.open()

        async def interpreted(room: Room) -> None:
            await room.interpreted(await room.interpreter())

        await asyncio.gather(*(interpreted(room) for room in rooms))
    finally:
        for room in rooms:
            await room.aclose()
    cluster.check_worker_output()


async def test_a_worker_lost_is_covered_by_the_other_nodes_worker(cluster: Cluster) -> None:
    """SIGKILL the worker (and its job processes: a machine that dies) interpreting a room: the keeper of
    the other node's worker dispatches the room again (the interpreter's heartbeat went stale; the server
    itself does not), and that worker's interpreter takes the room over."""
    await asyncio.gather(cluster.worker("a"), cluster.worker("b"))
    room = Room(cluster, cluster.room_name("kill"), host=cluster.nodes.a, through=cluster.nodes.b)
    try:
        await room.open()
        first = await room.interpreter()
        await room.interpreted(first)
        lost = room.worker_of(first)
        lost.kill_tree()
        assert lost.proc is not None
        await lost.proc.wait()

        second = await room.interpreter(besides=first.identity, within_s=60)
        await room.interpreted(second)
        assert room.worker_of(second).server is not lost.server  # the other node's worker
    finally:
        await room.aclose()
    cluster.check_worker_output()
