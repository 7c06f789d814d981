"""The worker's capacity rules (agent/run/capacity.py): the load it reports, the requests it accepts or
declines, how many processes it keeps warm, how its CPU term is smoothed. The same rules against a real
LiveKit server, in bursts and across two workers: tests/test_burst.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.room.room_io import ATTR_STARTED_AT
from agent.run.capacity import CPU_SATURATED, LOAD_FULL, MAX_DEFAULT_WARM, Capacity, CpuSampler
from agent.settings.config import ConfigError, load_server_settings


@dataclass
class Job:
    id: str


@dataclass
class RunningJob:
    job: Job


@dataclass
class Server:
    """What the capacity reads of the framework's AgentServer: its running jobs."""

    active_jobs: list[RunningJob] = field(default_factory=list)

    def run(self, job_id: str) -> None:
        self.active_jobs.append(RunningJob(Job(job_id)))

    def end(self, job_id: str) -> None:
        self.active_jobs = [j for j in self.active_jobs if j.job.id != job_id]


class Request:
    """A job request as the framework hands it to `on_request`: `accept` returns once the job is launched
    (here: once `launch` is called), `reject` at once."""

    def __init__(self, job_id: str, server: Server) -> None:
        self.id = job_id
        self.server = server
        self.answer: str | None = None
        self.attributes: dict[str, str] = {}
        self.terminate: bool | None = None
        self._launched = asyncio.Event()

    async def accept(self, *, attributes: dict[str, str] | None = None, **_: Any) -> None:
        self.answer, self.attributes = "accepted", dict(attributes or {})
        await self._launched.wait()

    async def reject(self, *, terminate: bool = True) -> None:
        self.answer, self.terminate = "rejected", terminate

    def launch(self) -> None:
        self.server.run(self.id)
        self._launched.set()


def capacity_for(rooms: int, saturated: bool = False) -> tuple[Capacity, Server]:
    capacity, server = Capacity(rooms, lambda: saturated), Server()
    capacity.serve(server)  # type: ignore[arg-type]
    return capacity, server


def test_the_load_is_full_exactly_at_capacity():
    capacity, server = capacity_for(4)
    loads = []
    for n in range(6):
        loads.append(capacity.load(server))  # type: ignore[arg-type]
        server.run(f"job-{n}")
    assert loads[:5] == pytest.approx([0, LOAD_FULL / 4, LOAD_FULL / 2, 3 * LOAD_FULL / 4, LOAD_FULL])
    assert loads[5] == LOAD_FULL  # never above: the framework and the server see "full"
    saturated, _ = capacity_for(4, saturated=True)
    assert saturated.load(Server()) == LOAD_FULL  # type: ignore[arg-type]


def test_with_this_load_the_frameworks_check_admits_exactly_the_capacity():
    """livekit-agents 1.8.9 answers a request only while `load + reserved × estimate < load_threshold`,
    `estimate` being `load / running` (`load_threshold / num_idle_processes` with nothing running). Restated
    here: with our load and threshold, it admits running + reserved up to the capacity, not beyond."""
    rooms = 7
    capacity, server = capacity_for(rooms)
    warm = capacity.warm_processes(None)

    def admits(running: int, reserved: int) -> bool:
        server.active_jobs = [RunningJob(Job(f"job-{n}")) for n in range(running)]
        load = capacity.load(server)  # type: ignore[arg-type]
        estimate = load / running if running else LOAD_FULL / warm
        return load + reserved * estimate < LOAD_FULL

    for running in range(rooms + 1):
        for reserved in range(rooms + 2 - running):
            taken = running + reserved
            # at exactly the capacity, float rounding may go either way: our handler declines then
            if taken != rooms:
                assert admits(running, reserved) == (taken < rooms), (running, reserved)


async def test_requests_are_accepted_up_to_capacity_counting_those_not_launched_yet():
    capacity, server = capacity_for(2)
    first, second, third = (Request(f"job-{n}", server) for n in range(3))
    accepting = [asyncio.create_task(capacity.on_request(r)) for r in (first, second)]  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert capacity.taken() == 2 and server.active_jobs == []
    await capacity.on_request(third)  # type: ignore[arg-type]
    assert third.answer == "rejected" and third.terminate is False  # LiveKit may offer it to another worker
    first.launch()
    second.launch()
    await asyncio.gather(*accepting)
    assert capacity.taken() == 2
    fourth = Request("job-3", server)
    await capacity.on_request(fourth)  # type: ignore[arg-type]
    assert fourth.answer == "rejected"
    server.end("job-0")  # a room ended: one free
    fifth = Request("job-4", server)
    task = asyncio.create_task(capacity.on_request(fifth))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert fifth.answer == "accepted"
    fifth.launch()
    await task


async def test_an_accepted_job_carries_when_it_was_accepted():
    capacity, server = capacity_for(1)
    request = Request("job-0", server)
    before = time.time() * 1000
    task = asyncio.create_task(capacity.on_request(request))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    request.launch()
    await task
    assert before - 1 <= int(request.attributes[ATTR_STARTED_AT]) <= time.time() * 1000 + 1


async def test_a_saturated_cpu_declines_every_request():
    capacity, server = capacity_for(3, saturated=True)
    request = Request("job-0", server)
    await capacity.on_request(request)  # type: ignore[arg-type]
    assert request.answer == "rejected" and request.terminate is False


async def test_a_job_never_assigned_frees_its_room():
    class Unassigned(Request):
        async def accept(self, *, attributes: dict[str, str] | None = None, **_: Any) -> None:
            raise TimeoutError  # the framework's AssignmentTimeoutError is one

    capacity, server = capacity_for(1)
    with pytest.raises(TimeoutError):
        await capacity.on_request(Unassigned("job-0", server))  # type: ignore[arg-type]
    assert capacity.taken() == 0


def test_warm_processes_default_to_the_capacity_up_to_a_cap():
    assert Capacity(6).warm_processes(None) == 6
    assert Capacity(100).warm_processes(None) == MAX_DEFAULT_WARM
    assert Capacity(6).warm_processes(3) == 3
    assert Capacity(6).warm_processes(10) == 6  # more would never get a job


def test_warm_processes_and_sessions_per_core_settings():
    assert load_server_settings({}).warm_processes is None
    assert load_server_settings({}).sessions_per_core == 7
    assert load_server_settings({"WARM_PROCESSES": "3"}).warm_processes == 3
    for bad in ("0", "201", "many"):
        with pytest.raises(ConfigError, match="WARM_PROCESSES"):
            load_server_settings({"WARM_PROCESSES": bad})


def test_the_cpu_term_counts_a_saturated_cpu_not_a_burst_of_start_ups():
    sampler = CpuSampler("machine")
    for _ in range(30):
        sampler.record(0.5, 1.0)  # a busy worker
    for _ in range(4):
        sampler.record(1.0, 1.0)  # a burst of rooms starting: every core busy for a few seconds
    assert sampler.smoothed < CPU_SATURATED
    seconds = 4
    while sampler.smoothed < CPU_SATURATED:
        sampler.record(1.0, 1.0)  # the cores stay busy
        seconds += 1
    assert 10 < seconds < 30, seconds
