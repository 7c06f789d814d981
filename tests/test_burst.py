"""Bursts of rooms against two real workers (`python -m agent start` subprocesses) registered with the real
LiveKit server: N rooms started at once, N being the two workers' capacity together (SESSIONS_PER_CORE=2:
twice as many rooms per worker as the machine has cores), get one interpreter each, whether N people join with
the page's kind of token or N dispatches are made through the API; one room more than that is offered to
both workers, declined by both (so that LiveKit could try the other), and dropped by the server.

What each worker takes and why: agent/run/capacity.py; the rules alone: tests/test_capacity.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from livekit import api, rtc
from livekit.agents.utils.hw import get_cpu_monitor

from agent.room.room_io import ATTR_STARTED_AT
from tests.conftest import Fakes, start_room_fakes, stop_fakes
from tests.livekit_server import LiveKitServer
from tests.loopback import eventually, eventually_async
from tests.participants import Participant
from tests.real_room import AGENT_NAME, FORBIDDEN
from tests.room_worker import WorkerProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

# SESSIONS_PER_CORE=2 × this machine's cores: more rooms at once than an idle worker's cores, the framework's
# default number of warm processes, which limited a burst to that many rooms per worker
SESSIONS_PER_CORE = 2
PER_WORKER = round(SESSIONS_PER_CORE * get_cpu_monitor().cpu_count())
ROOMS = 2 * PER_WORKER  # the two workers' capacity
REFUSED = "failed to assign job to worker"  # the server, when a worker says it is not available
DECLINED = "declining a room"  # agent/run/capacity.py, when its request handler says no


@dataclass
class Workers:
    server: LiveKitServer
    fakes: Fakes
    workers: list[WorkerProcess]

    async def idle(self) -> None:
        """Both workers run no job and have told the server they are available again (their status is
        sent every 2.5 s: until then the server still counts them full)."""
        await self.no_jobs()
        for worker in self.workers:
            await eventually(worker.available, within_s=60, what="the worker to be available")

    async def no_jobs(self) -> None:
        for worker in self.workers:

            async def idle(worker: WorkerProcess = worker) -> bool:
                return not await worker.active_jobs()

            await eventually_async(idle, within_s=60, what="the worker to end its jobs")

    def ids(self) -> list[str]:
        """Each worker's id, as LiveKit gave it at registration."""
        ids = []
        for worker in self.workers:
            line = next(line for line in worker.output().splitlines() if "registered worker" in line)
            ids.append(json.loads(line)["id"])
        return ids

    def server_log(self, room: str) -> list[dict[str, object]]:
        """The server's log lines about jobs for `room`: message, workerID."""
        found = []
        for line in self.server.log_path.read_text(errors="replace").splitlines():
            if f'"room": "{room}"' not in line:
                continue
            parts = line.split("\t")
            fields = json.loads(parts[-1]) if parts[-1].startswith("{") else {}
            found.append({"message": parts[-2] if len(parts) > 1 else line, **fields})
        return found

    def check_outputs(self) -> None:
        """Nothing went wrong in either worker, and each room its handler declined, it declined at
        capacity."""
        for worker in self.workers:
            output = worker.output()
            assert not [f for f in FORBIDDEN if f in output], worker.tail(80)
            for line in output.splitlines():
                if DECLINED in line:
                    declined = json.loads(line)
                    assert declined["taken"] >= declined["capacity"] or declined["saturated"], line

    def refused_only_when_full(self, rooms: list[str]) -> None:
        """Each worker took its share of `rooms`: none turned a room away while it had room for it. The
        framework refuses before our handler runs (when running + reserved jobs reach the capacity) and logs
        nothing; the server logs each refusal and each assignment with the worker's id. A worker that
        refused one ended the burst with its capacity taken."""
        ids = self.ids()
        refused, assigned = dict.fromkeys(ids, 0), dict.fromkeys(ids, 0)
        for room in rooms:
            for line in self.server_log(room):
                worker_id = str(line.get("workerID", ""))
                if REFUSED in str(line["message"]):
                    refused[worker_id] += 1
                elif "assigned job to worker" in str(line["message"]):
                    assigned[worker_id] += 1
        assert sum(assigned.values()) == min(len(rooms), ROOMS), assigned
        for worker_id in ids:
            assert refused[worker_id] == 0 or assigned[worker_id] == PER_WORKER, (refused, assigned)

    def marked_full(self, worker_id: str) -> bool:
        """Whether the worker with this id told the server it is full (the framework logs it)."""
        worker = self.workers[self.ids().index(worker_id)]
        return "marking as unavailable" in worker.output()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def two(
    livekit_server: LiveKitServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Workers]:
    fakes = await start_room_fakes()
    root = tmp_path_factory.mktemp("burst")
    env = fakes.env(
        SESSIONS_PER_CORE=str(SESSIONS_PER_CORE), WARM_PROCESSES=str(PER_WORKER), DRAIN_TIMEOUT_S="2"
    )
    workers = [WorkerProcess(livekit_server, env, root / f"worker-{n}") for n in range(2)]
    try:
        await asyncio.gather(*(w.start() for w in workers))
        yield Workers(livekit_server, fakes, workers)
    finally:
        await asyncio.gather(*(w.aclose() for w in workers))
        await stop_fakes(fakes)


def agents(room: rtc.Room) -> list[rtc.RemoteParticipant]:
    agent = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    return [p for p in room.remote_participants.values() if p.kind == agent]


async def agents_in(lk: api.LiveKitAPI, room: str) -> int:
    participants = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
    return sum(p.kind == api.ParticipantInfo.Kind.AGENT for p in participants.participants)


async def close_rooms(two: Workers, lk: api.LiveKitAPI, rooms: list[str]) -> None:
    """End the rooms' jobs by deleting their dispatches (the server terminates the jobs, which leave their
    rooms as on a drain), then delete the rooms. Deleting a room under a running job can leave the job
    waiting on the room until its drain times out (25 s)."""
    for room in rooms:
        for dispatch in await lk.agent_dispatch.list_dispatch(room):
            await lk.agent_dispatch.delete_dispatch(dispatch.id, room)
    await two.no_jobs()
    for room in rooms:
        await lk.room.delete_room(api.DeleteRoomRequest(room=room))


async def test_people_joining_n_rooms_at_once_bring_one_interpreter_each(two: Workers) -> None:
    await two.idle()
    rooms = [f"burst-token-{n}" for n in range(ROOMS)]
    people = [Participant(f"person-{n}") for n in range(ROOMS)]
    dispatch = api.RoomAgentDispatch(agent_name=AGENT_NAME, metadata="{}")
    started = time.time() * 1000
    lk = two.server.api()
    try:
        # N people open the page at nine o'clock: each token carries the dispatch, each room is new
        await asyncio.gather(
            *(
                person.connect(two.server.url, two.server.token(person.identity, room, dispatch=dispatch))
                for person, room in zip(people, rooms, strict=True)
            )
        )
        await eventually(
            lambda: all(agents(p.room) for p in people), within_s=60, what="an interpreter in every room"
        )
        await asyncio.sleep(2)  # a second one, had it been dispatched, would be in by now
        assert [len(agents(p.room)) for p in people] == [1] * ROOMS
        for person in people:
            # when its worker accepted it, set on the agent before it joined (the rule that orders rivals)
            accepted_at = int(agents(person.room)[0].attributes[ATTR_STARTED_AT])
            assert started - 1000 <= accepted_at <= time.time() * 1000
        two.refused_only_when_full(rooms)
        two.check_outputs()
    finally:
        for person in people:
            await person.aclose()
        await close_rooms(two, lk, rooms)
        await lk.aclose()


async def test_n_dispatches_at_once_fill_both_workers_and_one_more_is_declined_by_both(two: Workers) -> None:
    await two.idle()
    rooms = [f"burst-api-{n}" for n in range(ROOMS + 1)]
    lk = two.server.api()
    try:
        for room in rooms:
            await lk.room.create_room(api.CreateRoomRequest(name=room))

        async def dispatch(room: str) -> None:
            request = api.CreateAgentDispatchRequest(agent_name=AGENT_NAME, room=room, metadata="{}")
            await lk.agent_dispatch.create_dispatch(request)

        await asyncio.gather(*(dispatch(room) for room in rooms))
        counts: list[int] = []

        async def count() -> bool:
            counts[:] = [await agents_in(lk, room) for room in rooms]
            return sum(counts) >= ROOMS

        await eventually_async(count, within_s=60, what="an interpreter in all rooms but one")
        # the room too many: offered to each worker once, refused by both, then dropped by the server
        left = [room for room, n in zip(rooms, counts, strict=True) if n == 0]
        assert len(left) == 1, counts
        await eventually(
            lambda: any("no worker available" in str(line["message"]) for line in two.server_log(left[0])),
            within_s=30,
            what="the server to give up on the room too many",
        )
        refusals = [line for line in two.server_log(left[0]) if REFUSED in str(line["message"])]
        # declined so that the server went on to the other worker (terminate=False: "retry"); a worker it
        # did not try had told it that it was full (its status, sent every 2.5 s, can land mid-burst)
        assert refusals and all(line["retry"] is True for line in refusals), refusals
        refused_by = {str(line["workerID"]) for line in refusals}
        assert all(two.marked_full(other) for other in set(two.ids()) - refused_by), refusals
        await asyncio.sleep(2)
        assert [await agents_in(lk, room) for room in rooms] == counts  # and none got a second one
        assert max(counts) == 1
        two.refused_only_when_full(rooms)
        two.check_outputs()
    finally:
        await close_rooms(two, lk, rooms)
        await lk.aclose()
