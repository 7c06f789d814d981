"""One run through the real LiveKit server: a worker started as production starts it (`python -m agent start`,
its records observed by `hook/sitecustomize.py`), N rooms opened against it, each with a speaker and a
listener, every speaker talking at once while the CPU and memory are measured, then everything closed and
each room's utterances analysed (`run_rooms`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from livekit import api

from agent.run.filemode import Pcm
from agent.telemetry.latency import Mark, UtteranceRecord
from bench.harness.model import LatencyModel
from bench.harness.modelled_providers import fetch_records, reset_records
from bench.harness.provider_process import provider_env
from bench.harness.session import ENDPOINTING_MS
from bench.room.analysis import RunResult, analyse
from bench.room.meter import Meter, tree
from bench.room.participants import AGENT_NAME, TARGET, TRACK, BenchListener, BenchRoom, BenchSpeaker
from tests.livekit_server import LiveKitServer
from tests.participants import Participant
from tests.room_worker import WorkerProcess

HOOK = Path(__file__).parent / "hook"
ROOT = Path(__file__).parent.parent.parent
Speech = list[tuple[Pcm, list[tuple[float, float]]]]  # each room's speech and its voiced segments


@dataclass
class Context:
    server: LiveKitServer
    urls: dict[str, str]
    model: LatencyModel
    settings: dict[str, str]
    workdir: Path
    sessions_per_core: int
    dispatch_timeout_s: float
    load_cpu: str = "worker"
    open_interval_s: float = 1.0
    steps: int = 0


def read_records(path: Path) -> list[UtteranceRecord]:
    out: list[UtteranceRecord] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError):
            d = json.loads(line)
            out.append(UtteranceRecord(d["id"], {Mark(k): v for k, v in d["marks"].items()}, d["outcome"]))
    return out


ROOM_METADATA = json.dumps({"target_languages": [TARGET]})  # what each room asks its interpreter for


async def open_room(
    ctx: Context, name: str, pcm: Pcm, segments: list[tuple[float, float]], *, dispatch: bool = True
) -> BenchRoom:
    """A room's speaker (whose token asks for the interpreter, unless not `dispatch`) and listener, joined."""
    listener = BenchListener(f"{name}-listener")
    speaker = BenchSpeaker(f"{name}-speaker")
    room = BenchRoom(name, speaker, listener, pcm, segments, opened_at=time.perf_counter())
    # the speaker first: a token's dispatch applies when its join creates the room
    asked = api.RoomAgentDispatch(agent_name=AGENT_NAME, metadata=ROOM_METADATA) if dispatch else None
    await speaker.connect(
        ctx.server.url,
        ctx.server.token(
            speaker.identity, name, attributes={"language": "en", "interpret_to": TARGET}, dispatch=asked
        ),
        auto_subscribe=False,
    )
    await listener.connect(
        ctx.server.url,
        ctx.server.token(listener.identity, name, attributes={"interpret_to": TARGET}),
        auto_subscribe=False,
    )
    listener.subscribe_published()
    await speaker.publish()
    return room


async def wait_dispatched(room: BenchRoom, within_s: float) -> None:
    """Until the listener is subscribed to the interpreter's track (the room is served), or `within_s`."""
    since = room.opened_at
    while time.perf_counter() < since + within_s:
        if TRACK in room.listener.heard:
            room.dispatched = True
            room.ready_s = time.perf_counter() - since
            return
        await asyncio.sleep(0.1)
    room.agent_joined = room.listener.agent() is not None


def count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def wait_quiet(path: Path, quiet_s: float = 4.0, most_s: float = 40.0) -> None:
    """Until no latency record has been completed for `quiet_s` (the last translations played)."""
    deadline, last, since = time.perf_counter() + most_s, -1, time.perf_counter()
    while time.perf_counter() < deadline:
        n = await asyncio.to_thread(count_lines, path)
        if n != last:
            last, since = n, time.perf_counter()
        elif time.perf_counter() - since >= quiet_s:
            return
        await asyncio.sleep(0.5)


async def run_rooms(ctx: Context, label: str, speech: Speech, stagger_s: float = 0.0) -> RunResult:
    """One worker, len(speech) rooms at once (each a speaker and a listener); everything closed after."""
    ctx.steps += 1
    step_dir = ctx.workdir / f"{ctx.steps:02d}-{label}"
    records_path = step_dir / "records.jsonl"
    step_dir.mkdir(parents=True, exist_ok=True)
    worker = WorkerProcess(ctx.server, provider_env(ctx.urls), step_dir, **worker_env(ctx, records_path))
    rooms: list[BenchRoom] = []
    rng = random.Random(len(speech))
    async with aiohttp.ClientSession() as http:
        await reset_records(ctx.urls, http)
    try:
        await worker.start()
        assert worker.proc is not None
        await open_rooms(ctx, label, speech, rooms)
        live = [r for r in rooms if r.dispatched]
        for r in live:
            r.delay_s = rng.uniform(0, stagger_s) if stagger_s else 0.0
        t0 = time.perf_counter()
        measured = await talk(live, meter_for(ctx, worker.proc.pid))
        await wait_quiet(records_path)
        async with aiohttp.ClientSession() as http:
            fakes = await fetch_records(ctx.urls, http)
        result = RunResult(rooms=len(speech), dispatched=len(live), meter=measured, fakes=fakes, t0=t0)
        result.dispatch = dispatch_figures(rooms, live, len(speech))
        result.speaking_lag_s = max((r.speaking_lag_s for r in live), default=0.0)
        result.speech_s = sum(r.pcm.duration for r in live)
        records = read_records(records_path)
        for room in live:
            analyse(room, records, result)
        return result
    finally:
        await close_all(ctx, rooms, worker)


def worker_env(ctx: Context, records_path: Path) -> dict[str, str]:
    """The worker's environment (beyond the providers'): the hook that writes its records to `records_path`
    first on its path, its capacity settings and `--set`'s."""
    return {
        "PYTHONPATH": f"{HOOK}{os.pathsep}{ROOT}",
        "PYTHONDEVMODE": "",  # the tests' development mode (asyncio debug) would slow the worker down
        "BENCH_ROOM_RECORDS": str(records_path),
        "DRAIN_TIMEOUT_S": "1",
        "SESSIONS_PER_CORE": str(ctx.sessions_per_core),
        # two warm job processes, as the framework kept on these 2 cores when the room figures were taken (its
        # default, the capacity, would be 16 with the 200 rooms per core that take the rooms out of the load)
        "WARM_PROCESSES": "2",
        "LOAD_CPU": ctx.load_cpu,
        "STT_ENDPOINTING_MS": str(ENDPOINTING_MS),
        **ctx.settings,
    }


async def open_rooms(ctx: Context, label: str, speech: Speech, rooms: list[BenchRoom]) -> None:
    """Open a room per speech into `rooms` and wait until each is served (or the dispatch timeout); a room
    refused or never served is closed at once."""

    async def open_nth(i: int, pcm: Pcm, segs: list[tuple[float, float]]) -> BenchRoom:
        # rooms arrive `open_interval_s` apart: a burst of simultaneous dispatches to one worker is
        # partly refused by the framework's reservation estimate, and the server does not retry
        await asyncio.sleep(i * ctx.open_interval_s)
        return await open_room(ctx, f"{label}-{i}", pcm, segs)

    opened = await asyncio.gather(
        *(open_nth(i, pcm, segs) for i, (pcm, segs) in enumerate(speech)), return_exceptions=True
    )
    rooms += [r for r in opened if isinstance(r, BenchRoom)]
    for r in opened:
        if isinstance(r, BaseException):
            print(f"  a room could not be opened: {r!r}", file=sys.stderr)
    await asyncio.gather(*(wait_dispatched(r, ctx.dispatch_timeout_s) for r in rooms))
    for r in rooms:
        if not r.dispatched:  # refused or never dispatched: out of the way at once
            await r.speaker.aclose()
            await r.listener.aclose()


def meter_for(ctx: Context, worker_pid: int) -> Meter:
    """CPU by group: the worker's process tree, the LiveKit server's, the fakes', and this process."""
    assert ctx.server._proc is not None
    server_pid, fakes_pid = ctx.server._proc.pid, int(ctx.urls["pid"])
    return Meter(
        {
            "worker": lambda: tree(worker_pid),
            "livekit_server": lambda: tree(server_pid),
            "fakes": lambda: tree(fakes_pid),
            "participants": lambda: [psutil.Process()],
        }
    )


async def talk(live: list[BenchRoom], meter: Meter) -> dict[str, Any]:
    """Every room's speaker says its speech, after its delay; CPU and memory are measured while every room
    talks: from the last room's start to the first room's end."""

    async def speak(room: BenchRoom) -> None:
        await asyncio.sleep(room.delay_s)
        began = time.perf_counter()
        await room.speaker.speak(room.pcm)
        # behind real time: this process (the participants) could not keep up, the figures are not valid
        room.speaking_lag_s = time.perf_counter() - began - room.pcm.duration

    async def start_meter() -> None:
        await asyncio.sleep(max((r.delay_s for r in live), default=0.0))
        meter.start()

    talking = [asyncio.create_task(speak(r)) for r in live]
    metering = asyncio.create_task(start_meter())
    try:
        if talking:
            await asyncio.wait(talking, return_when=asyncio.FIRST_COMPLETED)
        await metering
        measured = await meter.stop()
        await asyncio.gather(*talking)
    finally:
        for task in [*talking, metering]:
            task.cancel()
    return measured


def dispatch_figures(rooms: list[BenchRoom], live: list[BenchRoom], requested: int) -> dict[str, Any]:
    """How the rooms were served: how soon, and why those that were not."""
    ready = sorted(r.ready_s for r in live if r.ready_s is not None)
    return {
        "ready_s_max": round(ready[-1], 2) if ready else None,
        "ready_s_median": round(ready[len(ready) // 2], 2) if ready else None,
        "no_agent": sum(1 for r in rooms if not r.dispatched and not r.agent_joined),
        "agent_without_track": sum(1 for r in rooms if not r.dispatched and r.agent_joined),
        "not_opened": requested - len(rooms),
    }


async def close_all(ctx: Context, rooms: list[BenchRoom], *workers: WorkerProcess) -> None:
    """The participants out, every room deleted, the workers stopped and any job process they left killed."""
    await close_participants(ctx, [p for r in rooms for p in (r.speaker, r.listener)], *workers)


async def close_participants(
    ctx: Context, participants: Iterable[Participant], *workers: WorkerProcess
) -> None:
    """`close_all` for participants in rooms of any shape (`python -m bench cost`'s meetings)."""
    await asyncio.gather(  # bounded: a participant whose connection broke may never finish leaving
        *(asyncio.wait_for(p.aclose(), 15) for p in participants),
        return_exceptions=True,
    )
    with contextlib.suppress(Exception):
        lk = ctx.server.api()
        try:
            listed = await lk.room.list_rooms(api.ListRoomsRequest())
            for room_info in listed.rooms:
                await lk.room.delete_room(api.DeleteRoomRequest(room=room_info.name))
        finally:
            await lk.aclose()
    for worker in workers:
        pids = [p.pid for p in tree(worker.proc.pid)] if worker.proc is not None else []
        await worker.aclose()
        for pid in pids[1:]:  # job processes left behind by a worker that was killed
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
