"""The pieces every scenario of `python -m bench fleet` is made of: workers as production runs them
(`bench.room.rooms.worker_env`, each its own records file), rooms with a speaker, a listener and a `Watch`
(`bench.room.rooms.open_room`), a room's request for its interpreter through the API, the speakers talking,
a machine that dies (`kill_machine`), and the end: every room's record, everything closed (`finish`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from livekit import api

from agent.run.filemode import FRAME_S
from agent.telemetry.latency import Mark
from bench.fleet.figures import spread
from bench.fleet.records import RoomRecord
from bench.fleet.watch import Watch, room_record
from bench.harness.provider_process import provider_env
from bench.harness.speech import Timeline
from bench.room.participants import AGENT_NAME, BenchRoom
from bench.room.rooms import ROOM_METADATA, Context, close_all, open_room, read_records, worker_env
from tests.room_worker import WorkerProcess

# what the fleet measures runs as in production: the keeper on (the tests' workers turn it off), as many warm
# job processes as the capacity (bench room keeps two)
PRODUCTION = {"KEEPER_INTERVAL_S": "2", "WARM_PROCESSES": ""}


@dataclass
class FleetRoom:
    bench: BenchRoom
    watch: Watch
    timeline: Timeline
    requested_at: float  # when the room asked for its interpreter (time.perf_counter)
    speaking: asyncio.Task[None] | None = None

    def working(self) -> bool:
        """Whether an interpreter of ours is at work in the room now."""
        return any(i.interpreting_since() is not None and i.left is None for i in self.watch.seen.values())

    async def stop_speaking(self) -> None:
        """The speaker stops as a person does: at the end of the sentence it is saying, if any (a sentence
        cut off would be transcribed as a piece of it, which no figure can place)."""
        if self.speaking is None:
            return
        said = self.bench.speaker.sent
        end = sentence_end(self.timeline, len(said) * FRAME_S)
        if end is not None:  # until its last frame is handed over (one behind real time takes longer)
            deadline = time.perf_counter() + end - len(said) * FRAME_S + FINISH_SLACK_S
            while len(said) * FRAME_S < end and not self.speaking.done() and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(FRAME_S)
        self.speaking.cancel()
        await asyncio.gather(self.speaking, return_exceptions=True)


QUIET_BELOW, QUIET_WITHIN_S = 50.0, 60.0  # % of all cores busy, over half a second; at most this long


async def until_quiet(within_s: float) -> None:
    """Until the machine's cores are less than QUIET_BELOW % busy over half a second, or `within_s`."""
    deadline = time.perf_counter() + within_s
    while time.perf_counter() < deadline:
        if await asyncio.to_thread(psutil.cpu_percent, 0.5) < QUIET_BELOW:
            return


FINISH_SLACK_S = 2.0  # a speaker finishing its sentence: at most this much behind real time


def sentence_end(timeline: Timeline, said_s: float) -> float | None:
    """Where the sentence under way `said_s` into the timeline ends (None: in a pause)."""
    return next((s.end for s in timeline.sentences if s.start < said_s < s.end), None)


class LoopLag:
    """How late this process's event loop runs (how far its short sleeps overshoot): every time the rooms'
    participants note (an attribute seen, a caption, a frame) is late by as much at most."""

    PERIOD_S = 0.05

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.PERIOD_S)
            self.lags.append(time.perf_counter() - started - self.PERIOD_S)

    async def stop(self) -> dict[str, Any]:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return spread(self.lags)


@dataclass
class Fleet:
    """One scenario's workers and rooms; times from `t0`; how late this process ran meanwhile."""

    ctx: Context
    label: str
    t0: float = field(default_factory=time.perf_counter)
    workers: list[WorkerProcess] = field(default_factory=list)
    rooms: list[FleetRoom] = field(default_factory=list)
    lag: LoopLag = field(default_factory=LoopLag)
    observer_lag_s: dict[str, Any] = field(default_factory=dict)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    async def start_workers(self, count: int, settle_s: float) -> list[WorkerProcess]:
        """`count` more workers, started together; once registered, `settle_s` and then until the machine is
        quiet, for their idle processes to warm up (in production a worker is up long before the rooms it
        serves, and on a machine of its own: here two workers' 28 warming processes still held both cores
        when a burst began, and the benchmark's own speakers fell 8 s behind)."""
        ctx, first = self.ctx, len(self.workers)
        new = []
        for k in range(first, first + count):
            workdir = ctx.workdir / f"{self.label}-worker{k}"
            workdir.mkdir(parents=True, exist_ok=True)
            new.append(
                WorkerProcess(
                    ctx.server,
                    provider_env(ctx.urls),
                    workdir,
                    **{**worker_env(ctx, records_of(workdir)), **PRODUCTION},
                )
            )
        self.workers += new
        await asyncio.gather(*(w.start() for w in new))
        await asyncio.sleep(settle_s)
        await until_quiet(QUIET_WITHIN_S)
        return new

    async def open(self, name: str, timeline: Timeline, *, dispatch: bool) -> FleetRoom:
        """A room with its speaker (asking for the interpreter in its token if `dispatch`) and listener."""
        bench = await open_room(
            self.ctx, f"{self.label}-{name}", timeline.render(), timeline.voiced, dispatch=dispatch
        )
        watch = Watch(bench.listener.room)
        watch.scan()
        watch.follow("listener", bench.listener.room)
        watch.follow("speaker", bench.speaker.room)
        room = FleetRoom(bench, watch, timeline, requested_at=bench.opened_at)
        self.rooms.append(room)
        return room

    def speak(self, room: FleetRoom) -> None:
        room.speaking = asyncio.create_task(room.bench.speaker.speak(room.bench.pcm))

    async def wait_working(self, rooms: list[FleetRoom], within_s: float) -> None:
        """Until every room has an interpreter at work, or `within_s`."""
        deadline = time.perf_counter() + within_s
        while time.perf_counter() < deadline:
            if all(r.working() for r in rooms):
                return
            await asyncio.sleep(0.1)

    async def finish(self, tail_s: float) -> list[RoomRecord]:
        """The speakers stop (each at the end of its sentence); `tail_s` for the last translations; every
        room's record; all closed."""
        await asyncio.gather(*(r.stop_speaking() for r in self.rooms))
        await asyncio.sleep(tail_s)
        ended = time.perf_counter()
        self.observer_lag_s = await self.lag.stop()
        records = [
            room_record(r.bench, r.watch, r.timeline, r.requested_at, self.t0, ended) for r in self.rooms
        ]
        merged = merged_at([w.workdir for w in self.workers])
        for record in records:
            record.merged = sorted(t - self.t0 for t in merged.get(f"{record.name}-speaker", []))
        await close_all(self.ctx, [r.bench for r in self.rooms], *self.workers)
        return records


async def request(lk: api.LiveKitAPI, room: FleetRoom) -> None:
    """The room asks for its interpreter through the dispatch API (its speaker's token did not)."""
    room.requested_at = time.perf_counter()
    await lk.agent_dispatch.create_dispatch(
        api.CreateAgentDispatchRequest(agent_name=AGENT_NAME, room=room.bench.name, metadata=ROOM_METADATA)
    )


def records_of(workdir: Path) -> Path:
    """Where the worker running in `workdir` writes its latency records (bench/room/hook/)."""
    return workdir / "records.jsonl"


def merged_at(workdirs: list[Path]) -> dict[str, list[float]]:
    """From the workers' own records, per speaker: the speech end of each utterance the queue folded into
    an earlier one (the mouth marks folded utterances with the playout start of the one they joined)."""
    out: dict[str, list[float]] = {}
    for workdir in workdirs:
        starts: set[float] = set()
        for r in read_records(records_of(workdir)):
            start = r.marks.get(Mark.PLAYOUT_START)
            if r.outcome != "spoken" or start is None:
                continue
            if start in starts:
                speaker = r.utterance_id.rsplit("-", 2)[0]
                out.setdefault(speaker, []).append(r.marks.get(Mark.SPEECH_END, start))
            starts.add(start)
    return out


def kill_machine(worker: WorkerProcess) -> None:
    """A machine that dies: the worker and every process under it stopped at once (SIGSTOP, so none sees
    another go), then SIGKILLed."""
    assert worker.proc is not None
    procs = []
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(worker.proc.pid)
        procs = [root, *root.children(recursive=True)]
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
