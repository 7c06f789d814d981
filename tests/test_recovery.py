"""Every room that asked for an interpreter has exactly one, again and again, against the real LiveKit server
with workers as subprocesses (`python -m agent start`): a worker lost (its whole process group SIGKILLed),
more rooms than capacity, two interpreters dispatched into one room, and rooms the keeper must leave alone.

One server, one set of fake providers and the workers are shared by the module's tests, in order:
worker A takes two rooms and is killed, worker B (registered meanwhile) takes them over and then meets
the doubled dispatches; workers C and D answer to another agent name (`interpreter-small`), so that A's
and B's keepers never touch their rooms, with a capacity of a couple of rooms (SESSIONS_PER_CORE=1). The
module's agent names are its own: its keepers leave the rooms of other tests on the shared server alone
(the other tests' workers run no keeper).

What the keeper and the heartbeat are: agent/run/keeper.py, agent/room/presence.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from livekit import api, rtc
from livekit.agents.types import ATTRIBUTE_AGENT_STATE
from livekit.agents.utils.hw import get_cpu_monitor

from agent.room.presence import Member
from agent.room.room_io import ATTR_ALIVE, ATTR_LANGUAGES, ATTR_STARTED_AT
from agent.run.filemode import read_wav
from tests.conftest import ONE_SENTENCE, Fakes, started, stop_fakes
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM, numbered_words
from tests.fakes.llm import Message, message_text
from tests.livekit_server import API_KEY, API_SECRET, LiveKitServer
from tests.loopback import eventually
from tests.participants import Speaker
from tests.real_room import FORBIDDEN
from tests.room_worker import WorkerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

# agent names of this module's own, so that its keepers touch no other test's rooms (the server is shared)
NAME, SMALL = "interpreter-recovery", "interpreter-small"
SETTINGS = json.dumps({"target_languages": ["es"]})
TRACK = "interpretation-es"
RIVAL = "another interpreter is in the room and stays; leaving"  # agent/room/presence.py's log line
# livekit-agents 1.8.9 pings each job process; when one exits (a room closed, an interpreter that left for a
# rival) just as a ping is written, uvloop raises RuntimeError ("the handler is closed") where the framework
# expects OSError (utils/aio/duplex_unix.py), and the framework logs it with its traceback: its race, not ours
PING_RACE = re.compile(r'^\{"message": "Error in _send_ping_co".*the handler is closed.*$', re.M)


SPEECH = re.compile(r"<speech[^>]*>(.*)</speech>", re.S)


def reply(messages: list[Message]) -> str:
    """A 'translation' of the fake STT's numbered words: w12 → t12 (so each one is recognisable)."""
    speech = next((message_text(m) for m in reversed(messages) if "<speech" in message_text(m)), "")
    match = SPEECH.search(speech)
    words = (match.group(1) if match else "w0").strip().rstrip(".").split() or ["w0"]
    return " ".join("t" + w.lstrip("w") for w in words) + "."


@dataclass
class Workers:
    """The module's workers by name, each in a process group of its own; started in the background (a
    worker takes seconds to start: tests overlap that with what they do meanwhile)."""

    server: LiveKitServer
    fakes: Fakes
    workdir: Path
    starting: dict[str, asyncio.Task[WorkerProcess]] = field(default_factory=dict)

    def begin(self, name: str, agent_name: str = NAME, **env: str) -> asyncio.Task[WorkerProcess]:
        worker = WorkerProcess(
            self.server,
            self.fakes.env(AGENT_NAME=agent_name, DRAIN_TIMEOUT_S="2", KEEPER_INTERVAL_S="2", **env),
            self.workdir / name,
        )
        worker.own_group = True

        async def start() -> WorkerProcess:
            await worker.start()
            return worker

        self.starting[name] = task = asyncio.create_task(start())
        return task

    async def aclose(self) -> None:
        """Every worker killed (this module is not about stopping them: tests/test_shutdown.py is), its
        output checked."""
        await asyncio.gather(*self.starting.values(), return_exceptions=True)
        for task in self.starting.values():
            worker = None if task.cancelled() or task.exception() else task.result()
            if worker is None:
                continue
            await worker.kill_group()
            output = PING_RACE.sub("", worker.output())
            found = [f for f in FORBIDDEN if f in output]
            assert not found, f"{worker.workdir.name}'s output has {found}\n{worker.tail(80)}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fakes() -> AsyncIterator[Fakes]:
    deepgram = FakeDeepgram([], transcript_for=numbered_words())
    llm = {"cerebras": FakeLLM(responder=reply), "groq": FakeLLM(responder=reply)}
    fakes = await started(Fakes(deepgram=deepgram, cartesia=FakeCartesia(), **llm))
    yield fakes
    await stop_fakes(fakes)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def workers(
    livekit_server: LiveKitServer, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Workers]:
    workers = Workers(livekit_server, fakes, tmp_path_factory.mktemp("recovery"))
    # the small worker of the last test (another agent name: nobody else's rooms), starting meanwhile
    workers.begin("c", SMALL, SESSIONS_PER_CORE="1")
    try:
        yield workers
    finally:
        await workers.aclose()


class People:
    """The test's participants, closed at the end."""

    def __init__(self, server: LiveKitServer) -> None:
        self.server = server
        self.joined: list[Speaker] = []

    async def speaker(
        self,
        room: str,
        identity: str = "alice",
        *,
        agent_name: str | None = NAME,
        agent: bool = False,
        departure_timeout: int = 0,
    ) -> Speaker:
        """Someone who speaks English in `room` (and hears what comes), their token creating the room and
        asking for the interpreter `agent_name` (None: asking for nothing); `departure_timeout`: the room
        closes that many seconds after its people left (0: the server's default, 20 s)."""
        grants = api.VideoGrants(room_join=True, room=room, agent=agent, can_update_own_metadata=True)
        token = (
            api.AccessToken(API_KEY, API_SECRET)
            .with_identity(identity)
            .with_grants(grants)
            .with_attributes({"language": "en"})
        )
        if agent:
            token = token.with_kind("agent")
        if agent_name is not None:  # a room configuration applies only when the token creates the room
            dispatch = api.RoomAgentDispatch(agent_name=agent_name, metadata=SETTINGS)
            config = api.RoomConfiguration(agents=[dispatch], departure_timeout=departure_timeout)
            token = token.with_room_config(config)
        speaker = Speaker(identity)
        await speaker.connect(self.server.url, token.to_jwt())
        self.joined.append(speaker)
        if not agent:
            await speaker.publish()
        return speaker

    async def leave(self, speaker: Speaker) -> None:
        self.joined.remove(speaker)
        await speaker.aclose()

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.joined))


@pytest_asyncio.fixture(loop_scope="module")
async def people(livekit_server: LiveKitServer) -> AsyncIterator[People]:
    people = People(livekit_server)
    yield people
    await people.aclose()


def interpreters(p: Speaker, agent_name: str = NAME, *, live: bool = True) -> list[rtc.RemoteParticipant]:
    """The interpreters of `agent_name` that `p` sees in the room (only the live ones: heartbeat)."""
    now = time.time()
    found = []
    for participant in p.room.remote_participants.values():
        member = Member.from_rtc(participant)
        if member.is_ours(agent_name) and (member.is_live(now) or not live):
            found.append(participant)
    return found


def the_interpreter(
    p: Speaker, agent_name: str = NAME, *, not_one_of: tuple[str, ...] = ()
) -> rtc.RemoteParticipant | None:
    """The room's one live interpreter publishing the Spanish track, if that is what `p` sees (and it is
    none of `not_one_of`)."""
    live = interpreters(p, agent_name)
    if len(live) != 1 or TRACK not in {pub.name for pub in live[0].track_publications.values()}:
        return None
    return None if live[0].identity in not_one_of else live[0]


async def interpreted(
    p: Speaker, agent_name: str = NAME, *, not_one_of: tuple[str, ...] = (), within_s: float = 60
) -> str:
    """Wait until `p`'s room has its one live interpreter (none of `not_one_of`), publishing the Spanish
    track; its identity."""
    await eventually(
        lambda: the_interpreter(p, agent_name, not_one_of=not_one_of) is not None,
        within_s,
        f"{p.room.name} interpreted",
    )
    found = the_interpreter(p, agent_name, not_one_of=not_one_of)
    assert found is not None
    return found.identity


async def says_and_is_translated(p: Speaker) -> tuple[str, list[str]]:
    """`p` says a sentence: who translated it (one interpreter), and the segments of its final translated
    captions, once it settled."""
    before = len(p.captions)
    p.say(read_wav(ONE_SENTENCE.wav))

    def translated() -> list[str]:
        return [c.segment_id for c in p.captions[before:] if c.final and c.translated]

    await eventually(lambda: bool(translated()), within_s=40, what=f"a translated caption in {p.room.name}")
    await asyncio.sleep(1.5)  # a second interpreter's caption would come about as fast
    senders = {c.sender for c in p.captions[before:] if c.translated}
    assert len(senders) == 1, senders
    finals = translated()
    assert len(finals) == len(set(finals)), finals  # one final translated caption per segment
    return senders.pop(), finals


def left_for_a_rival(worker: WorkerProcess, room: str) -> int:
    """How many of `worker`'s interpreters in `room` left because another was there (their log line)."""
    marker = f'"room": {json.dumps(room)}'
    return sum(RIVAL in line and marker in line for line in worker.output().splitlines())


async def never_gets_one(people: list[Speaker], agent_name: str, for_s: float) -> None:
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        for p in people:
            assert not interpreters(p, agent_name, live=False), f"{p.room.name} got an interpreter"
        await asyncio.sleep(0.2)


async def test_a_worker_lost_its_rooms_are_interpreted_again_by_another(
    workers: Workers, people: People
) -> None:
    a = await workers.begin("a")
    rooms = [await people.speaker(f"lost-{n}") for n in (1, 2)]
    await eventually(lambda: all(a.job_requests(p.room.name) for p in rooms), what="A's jobs")
    starting_b = workers.begin("b")  # it starts while A's interpreters join
    before = [await interpreted(p) for p in rooms]
    b = await starting_b
    assert not any(b.job_requests(p.room.name) for p in rooms)

    await a.kill_group()  # the machine dies: the worker and its jobs at once, nothing said to anyone
    await asyncio.gather(*(interpreted(p, not_one_of=tuple(before)) for p in rooms))  # a new identity
    # (more than one each only when a job took longer to start than the keeper waits: then one leaves)
    assert all(b.job_requests(p.room.name) for p in rooms), b.tail()
    assert "dispatched the interpreter again" in b.output()
    # the killed ones may still be in the rooms (the server notices about 21 s later), silent
    assert not any(i.identity in before for p in rooms for i in interpreters(p))

    # captions continue: what is said now is interpreted, once, by the new interpreter (the room's live one)
    said = await asyncio.gather(*(says_and_is_translated(p) for p in rooms))
    assert [by for by, _ in said] == [the_interpreter(p).identity for p in rooms], said  # type: ignore[union-attr]
    # its heartbeat merges with its other attributes (LiveKit merges each update's keys): none lost
    attributes = rooms[0].room.remote_participants[said[0][0]].attributes
    assert {ATTR_ALIVE, ATTR_STARTED_AT, ATTR_LANGUAGES, ATTRIBUTE_AGENT_STATE} <= set(attributes), attributes
    assert "es" in attributes[ATTR_LANGUAGES].split(","), attributes


async def test_two_interpreters_dispatched_into_one_room_one_leaves(workers: Workers, people: People) -> None:
    b = await workers.starting["b"]
    lk = workers.server.api()
    try:
        alice = await people.speaker("doubled", agent_name=None)
        request = api.CreateAgentDispatchRequest(agent_name=NAME, room="doubled", metadata=SETTINGS)
        await asyncio.gather(*(lk.agent_dispatch.create_dispatch(request) for _ in range(2)))
        await eventually(lambda: b.job_requests("doubled") >= 2, what="both jobs")
        # all but one saw another that started first, and left the room (or never published anything)
        await eventually(
            lambda: left_for_a_rival(b, "doubled") == b.job_requests("doubled") - 1, within_s=30, what="left"
        )
        await eventually(lambda: len(interpreters(alice, live=False)) == 1, within_s=20, what="one there")
        stays = await interpreted(alice)
        assert (await says_and_is_translated(alice))[0] == stays

        # a second dispatch into a room whose interpreter is at work: the newcomer leaves
        await lk.agent_dispatch.create_dispatch(request)
        jobs = b.job_requests("doubled")
        await eventually(lambda: b.job_requests("doubled") > jobs, what="the third job")
        await eventually(
            lambda: left_for_a_rival(b, "doubled") == jobs, within_s=30, what="the newcomer left"
        )
        await eventually(lambda: len(interpreters(alice, live=False)) == 1, within_s=20, what="one there")
        assert (await interpreted(alice)) == stays
        assert (await says_and_is_translated(alice))[0] == stays
    finally:
        await lk.aclose()


async def test_more_rooms_than_capacity_wait_and_are_interpreted_once_capacity_frees(
    workers: Workers, people: People
) -> None:
    # capacity: SESSIONS_PER_CORE (1) × cores rooms (agent/run/capacity.py), and not one more
    full_at = round(get_cpu_monitor().cpu_count())
    c = await workers.starting["c"]
    lk = workers.server.api()
    try:
        # rooms that close as soon as their people left (1 s), as a meeting that ended
        served = [
            await people.speaker(f"small-{n}", agent_name=SMALL, departure_timeout=1) for n in range(full_at)
        ]
        for p in served:
            await interpreted(p, SMALL)
        await eventually(lambda: not c.available(), what="worker C full")

        # one room more asks: it waits (the server dropped its dispatch; the keeper tries again, in vain);
        # a room holding only an agent asked too: it is never dispatched
        waiting = await people.speaker("small-waiting", agent_name=SMALL)
        agents_only = await people.speaker("small-agents-only", agent_name=SMALL, agent=True)
        await never_gets_one([waiting], SMALL, for_s=4)  # the keeper's first try comes after 3 s

        # the first room's meeting ends: its interpreter leaves with it, and the waiting room gets one
        await people.leave(served[0])
        await interpreted(waiting, SMALL)
        assert c.job_requests("small-waiting") >= 1

        # full again; another room asks and waits until a second worker registers
        await eventually(lambda: not c.available(), what="worker C full again")
        late = await people.speaker("small-late", agent_name=SMALL)
        starting_d = workers.begin("d", SMALL, SESSIONS_PER_CORE="1")
        while not starting_d.done():
            assert not interpreters(late, SMALL, live=False), "an interpreter before a worker had room"
            await asyncio.sleep(0.2)
        d = starting_d.result()
        await interpreted(late, SMALL)
        assert d.job_requests("small-late")

        # the room that ended was not dispatched again (nor made again by a dispatch), nor the agents' room
        assert c.job_requests(served[0].room.name) == 1
        rooms = {r.name for r in (await lk.room.list_rooms(api.ListRoomsRequest())).rooms}
        assert served[0].room.name not in rooms
        assert not c.job_requests("small-agents-only") and not d.job_requests("small-agents-only")
        assert not interpreters(agents_only, SMALL, live=False)
    finally:
        await lk.aclose()
