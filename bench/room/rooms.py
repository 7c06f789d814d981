"""The benchmark through a real LiveKit server: `python -m bench room`.

    uv run python -m bench room                                   # dialogue, monologue, capacity
    uv run python -m bench room dialogue --dialogue-utterances 10 # one workload, shorter
    uv run python -m bench room capacity --rooms 1,2,4 --room-seconds 30
    uv run python -m bench capacity --rooms 1,2,4 --room-seconds 30      # the same

The worker runs as production runs it (`python -m agent start`, a subprocess registered with a real
`livekit-server`, one job process per room), its providers the fakes of `python -m bench` on the latency
model in a process of their own. In each room a speaker participant says the synthetic speech of
`bench.harness.speech` into a microphone track (Opus through the SFU) and a listener participant subscribes to
`interpretation-es` (Opus, jitter buffer and all) and records every frame with its arrival time.

Figures, all on one clock (`time.perf_counter`, the machine's monotonic clock, in every process):
- the worker's own latency records, per utterance: a `sitecustomize` (bench/room/hook) in the worker's
  processes appends each record its tracker completes to a file (observing only; no agent code changes);
- listener-side end to end: the speaker's speech end as sent (when the frame holding the last voiced sample
  was handed to the speaker's AudioSource, less the rest of that frame) → the first frame of the
  utterance's translation arriving at the listener. The fake TTS tags each translation's first clause with
  a tone whose frequency its id picks (every other clause at 300 Hz), so the listener finds where each
  utterance starts by content, even right after the previous one;
- what the SFU adds: listener-side minus the worker's own end to end, per utterance (joined by the
  translated caption's segment id = the worker record's id); split into uplink (speaker → the worker's
  speech end), the worker's source queue (first frame → heard at the worker's AudioSource) and downlink
  (heard at the source → arrived at the listener).

Capacity: N rooms at once against one worker; CPU of the worker's process tree (job processes included),
the LiveKit server, the fakes and the participants (this process), each measured with psutil while all N
rooms talk. With `--load-cpu worker` (default) the worker runs with LOAD_CPU=worker: the CPU term of its
load function reads its own process tree instead of the whole machine, which is what the machine's CPU is
in production, where the machine runs only the worker.

Writes room.json and room.png to bench-results/ (`--out` another folder, `--write-results` the committed
bench/results/), prints a table with the machine's load during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import numpy as np
import psutil
from livekit import api, rtc

from agent.run.filemode import FRAME_S, Pcm, paced_frames
from agent.telemetry.latency import STAGES, Mark, UtteranceRecord
from bench.harness.cli import (
    add_output_arguments,
    add_settings_argument,
    command_parser,
    output_dir,
    worker_settings,
)
from bench.harness.figures import figures, overhead_summary
from bench.harness.machine import MachineLoad
from bench.harness.model import LatencyModel, add_model_arguments
from bench.harness.modelled_providers import (
    OTHER_HZ,
    TAG_HZ,
    fetch_records,
    modelled_providers,
    reset_records,
    tagged_freq,
)
from bench.harness.output import plot_cdf, pyplot, summary_table, write_results
from bench.harness.provider_process import provider_env
from bench.harness.session import ENDPOINTING_MS
from bench.harness.speech import RATE, dialogue, monologue
from bench.harness.stats import summary_ms
from tests.livekit_server import INSTALL_HINT, LiveKitServer, find_binary
from tests.participants import LISTEN_RATE, Listener, Participant
from tests.room_worker import WorkerProcess

HOOK = Path(__file__).parent / "hook"
ROOT = Path(__file__).parent.parent.parent
AGENT_NAME = "interpreter"
TARGET = "es"
TRACK = f"interpretation-{TARGET}"


# ---------------------------------------------------------------------------------------------- participants


class BenchSpeaker(Participant):
    """Says a Pcm into a microphone track in real time, noting when each 20 ms frame was handed over."""

    def __init__(self, identity: str) -> None:
        super().__init__(identity)
        self.source = rtc.AudioSource(RATE, 1, queue_size_ms=100)
        self.track = rtc.LocalAudioTrack.create_audio_track("microphone", self.source)
        self.sent: list[float] = []

    async def publish(self) -> None:
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await self.room.local_participant.publish_track(self.track, options)

    async def speak(self, pcm: Pcm) -> None:
        async for frame in paced_frames(pcm):
            await self.source.capture_frame(frame)
            self.sent.append(time.perf_counter())

    def sent_at(self, seconds: float) -> float:
        """When the speech `seconds` into the Pcm was sent: a frame goes once all of it has been said, so
        its hand-over time less what of the frame came after that point."""
        i = min(int(seconds / FRAME_S), len(self.sent) - 1)
        return self.sent[i] - ((i + 1) * FRAME_S - seconds)

    async def aclose(self) -> None:
        await super().aclose()
        await self.source.aclose()


class BenchListener(Listener):
    """Subscribes to the interpretation track only (not the speaker's microphone)."""

    def __init__(self, identity: str) -> None:
        super().__init__(identity)
        self.room.on("track_published", self._on_published)

    def _on_published(self, publication: rtc.RemoteTrackPublication, _: rtc.RemoteParticipant) -> None:
        if publication.name == TRACK:
            publication.set_subscribed(True)

    def subscribe_published(self) -> None:
        """The track, if it was published before this listener joined."""
        for participant in self.room.remote_participants.values():
            for publication in participant.track_publications.values():
                self._on_published(publication, participant)


# ------------------------------------------------------------------------------------------ CPU and memory


class Meter:
    """CPU seconds per group of processes over a window (psutil, sampled every second, so processes that
    come and go are counted), the machine's busy cores, and the worker tree's memory."""

    def __init__(self, groups: dict[str, Callable[[], list[psutil.Process]]]) -> None:
        self.groups = groups
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self.rss_mb: list[float] = []
        self.pss_mb: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0
        self._t0_wall = 0.0
        self._machine0: Any = None
        self.wall = 0.0

    def _sample(self, memory: bool = False) -> None:
        for name, procs in self.groups.items():
            rss = pss = 0.0
            for proc in procs():
                try:
                    with proc.oneshot():
                        t = proc.cpu_times()
                        cpu = t.user + t.system
                        created = proc.create_time()
                        if memory and name == "worker":
                            info = proc.memory_full_info()
                            rss += info.rss / 2**20
                            pss += getattr(info, "pss", info.rss) / 2**20
                except psutil.Error:
                    continue
                key = (name, proc.pid)
                if key not in self._first:  # a process born in the window counts from its start
                    self._first[key] = 0.0 if created >= self._t0_wall else cpu
                self._last[key] = cpu
            if memory and name == "worker":
                self.rss_mb.append(rss)
                self.pss_mb.append(pss)

    async def _run(self) -> None:
        i = 0
        while True:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self._sample, i % 5 == 0)
            i += 1

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._t0_wall = time.time()
        self._machine0 = psutil.cpu_times()
        self._sample(memory=True)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, Any]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._sample(memory=True)
        self.wall = time.perf_counter() - self._t0
        machine1 = psutil.cpu_times()
        busy = sum(getattr(machine1, f) - getattr(self._machine0, f) for f in machine1._fields)
        idle = (machine1.idle - self._machine0.idle) + (
            getattr(machine1, "iowait", 0.0) - getattr(self._machine0, "iowait", 0.0)
        )
        cores = {name: 0.0 for name in self.groups}
        for (name, pid), last in self._last.items():
            cores[name] += max(0.0, last - self._first[(name, pid)]) / self.wall
        machine = (busy - idle) / self.wall
        # the worker's main process apart from its job processes (already in "worker")
        main = self.groups["worker"]()[:1]
        main_pid = main[0].pid if main else -1
        worker_main = max(
            0.0, self._last.get(("worker", main_pid), 0.0) - self._first.get(("worker", main_pid), 0.0)
        )
        return {
            "seconds": round(self.wall, 1),
            "cores": {k: round(v, 3) for k, v in cores.items()}
            | {
                "machine": round(machine, 3),
                "others": round(max(0.0, machine - sum(cores.values())), 3),  # other users of the machine
                "worker_main": round(worker_main / self.wall, 3),  # of "worker": the process jobs are not in
            },
            "worker_rss_mb": round(max(self.rss_mb, default=0.0), 1),
            "worker_pss_mb": round(max(self.pss_mb, default=0.0), 1),
        }


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


# ----------------------------------------------------------------------------------------- listener audio


class Heard:
    """The listener's interpretation audio, each 20 ms window labelled with which tagged tone it holds:
    -1 silence or a mix, 0 the other clauses' tone, 1 + k the first-clause tone TAG_HZ[k]."""

    WINDOW = 480  # 20 ms at 24 kHz: 50 Hz bins, the tags are 100 Hz apart
    HOP = 120

    def __init__(self, frames: list[tuple[float, np.ndarray]]) -> None:
        self.x = np.concatenate([s for _, s in frames]).astype(np.float32) if frames else np.zeros(0)
        self.frame_end = np.cumsum([len(s) for _, s in frames]) if frames else np.zeros(0, int)
        self.arrival = np.array([t for t, _ in frames])
        freqs = np.array([OTHER_HZ, *TAG_HZ])
        t = np.arange(self.WINDOW) / LISTEN_RATE
        basis = np.hanning(self.WINDOW)[:, None] * np.exp(-2j * np.pi * t[:, None] * freqs[None, :])
        n = max(0, (len(self.x) - self.WINDOW) // self.HOP + 1)
        self.starts = np.arange(n) * self.HOP
        labels = np.full(n, -1, int)
        for lo in range(0, n, 4000):
            idx = self.starts[lo : lo + 4000, None] + np.arange(self.WINDOW)[None, :]
            w = self.x[idx]
            rms = np.sqrt(np.mean(w**2, axis=1))
            power = np.abs(w @ basis) ** 2
            order = np.sort(power, axis=1)
            clear = (rms > 800) & (order[:, -1] > 4 * order[:, -2])
            labels[lo : lo + 4000] = np.where(clear, np.argmax(power, axis=1), -1)
        self.labels = labels
        self.centre_time = np.array([self.time_of(int(s) + self.WINDOW // 2) for s in self.starts])

    def time_of(self, sample: int) -> float:
        """When the frame holding this sample arrived."""
        i = int(np.searchsorted(self.frame_end, sample, side="right"))
        return float(self.arrival[min(i, len(self.arrival) - 1)])

    def onset(self, freq: float, after: float) -> float | None:
        """Arrival of the first frame of a run of `freq` (≥ 2 windows) that starts after `after`."""
        label = 1 + TAG_HZ.index(freq)
        candidates = np.nonzero((self.labels == label) & (self.centre_time >= after))[0]
        for w in candidates:
            if w > 0 and self.labels[w - 1] == label:
                continue  # inside a run that began earlier (the previous utterance's tag)
            if w + 1 >= len(self.labels) or self.labels[w + 1] != label:
                continue  # a glitch
            start = int(self.starts[w])
            sample = start + self.WINDOW // 2  # after another tone: about the window's middle
            if w == 0 or self.labels[w - 1] == -1:  # after silence: the first loud sample
                lo = max(0, start - self.HOP)
                loud = np.nonzero(np.abs(self.x[lo : start + self.WINDOW]) > 1500)[0]
                if len(loud):
                    sample = lo + int(loud[0])
            return self.time_of(sample)
        return None


# ---------------------------------------------------------------------------------------------- one run


@dataclass
class BenchRoom:
    name: str
    speaker: BenchSpeaker
    listener: BenchListener
    pcm: Pcm
    segments: list[tuple[float, float]]
    delay_s: float = 0.0  # silence before the speaker starts (capacity: rooms do not start in step)
    dispatched: bool = False
    opened_at: float = 0.0
    speaking_lag_s: float = 0.0
    ready_s: float | None = None  # the room opened → its listener subscribed to the interpretation track
    agent_joined: bool = False  # (not dispatched) an agent joined but published no track in time


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


@dataclass
class Utterance:
    room: str
    id: str
    listener_e2e_s: float
    worker_e2e_s: float
    sfu_added_s: float
    uplink_s: float
    source_queue_s: float
    downlink_s: float
    caption_lead_s: float | None  # the translated caption's first version arrived this long before the audio


@dataclass
class RunResult:
    rooms: int
    dispatched: int
    utterances: list[Utterance] = field(default_factory=list)
    records: list[UtteranceRecord] = field(default_factory=list)
    downlink_all_s: list[float] = field(default_factory=list)  # every spoken utterance, at a pause or not
    unmatched: int = 0
    meter: dict[str, Any] = field(default_factory=dict)
    fakes: dict[str, list[dict]] = field(default_factory=dict)
    captions: dict[str, Any] = field(default_factory=dict)
    speech_s: float = 0.0
    t0: float = 0.0
    dispatch: dict[str, Any] = field(default_factory=dict)
    speaking_lag_s: float = 0.0  # the slowest speaker's delay over its speech's duration


def read_records(path: Path) -> list[UtteranceRecord]:
    out: list[UtteranceRecord] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError):
            d = json.loads(line)
            out.append(UtteranceRecord(d["id"], {Mark(k): v for k, v in d["marks"].items()}, d["outcome"]))
    return out


async def open_room(ctx: Context, name: str, pcm: Pcm, segments: list[tuple[float, float]]) -> BenchRoom:
    listener = BenchListener(f"{name}-listener")
    speaker = BenchSpeaker(f"{name}-speaker")
    room = BenchRoom(name, speaker, listener, pcm, segments, opened_at=time.perf_counter())
    # the speaker first: a token's dispatch applies when its join creates the room
    dispatch = api.RoomAgentDispatch(
        agent_name=AGENT_NAME, metadata=json.dumps({"target_languages": [TARGET]})
    )
    await speaker.connect(
        ctx.server.url,
        ctx.server.token(
            speaker.identity, name, attributes={"language": "en", "interpret_to": TARGET}, dispatch=dispatch
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


async def run_rooms(
    ctx: Context, label: str, speech: list[tuple[Pcm, list[tuple[float, float]]]], stagger_s: float = 0.0
) -> RunResult:
    """One worker, len(speech) rooms at once (each a speaker and a listener); everything closed after."""
    ctx.steps += 1
    step_dir = ctx.workdir / f"{ctx.steps:02d}-{label}"
    records_path = step_dir / "records.jsonl"
    step_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "PYTHONPATH": f"{HOOK}{os.pathsep}{ROOT}",
        "PYTHONDEVMODE": "",  # the tests' development mode (asyncio debug) would slow the worker down
        "BENCH_ROOM_RECORDS": str(records_path),
        "DRAIN_TIMEOUT_S": "1",
        "SESSIONS_PER_CORE": str(ctx.sessions_per_core),
        "LOAD_CPU": ctx.load_cpu,
        "STT_ENDPOINTING_MS": str(ENDPOINTING_MS),
        **ctx.settings,
    }
    worker = WorkerProcess(ctx.server, provider_env(ctx.urls), step_dir, **env)
    rooms: list[BenchRoom] = []
    rng = random.Random(len(speech))
    async with aiohttp.ClientSession() as http:
        await reset_records(ctx.urls, http)
    try:
        await worker.start()
        assert worker.proc is not None
        worker_pid = worker.proc.pid

        async def open_nth(i: int, pcm: Pcm, segs: list[tuple[float, float]]) -> BenchRoom:
            # rooms arrive `open_interval_s` apart: a burst of simultaneous dispatches to one worker is
            # partly refused by the framework's reservation estimate, and the server does not retry
            await asyncio.sleep(i * ctx.open_interval_s)
            return await open_room(ctx, f"{label}-{i}", pcm, segs)

        opened = await asyncio.gather(
            *(open_nth(i, pcm, segs) for i, (pcm, segs) in enumerate(speech)), return_exceptions=True
        )
        rooms = [r for r in opened if isinstance(r, BenchRoom)]
        for r in opened:
            if isinstance(r, BaseException):
                print(f"  a room could not be opened: {r!r}", file=sys.stderr)
        await asyncio.gather(*(wait_dispatched(r, ctx.dispatch_timeout_s) for r in rooms))
        live = [r for r in rooms if r.dispatched]
        for r in rooms:
            if not r.dispatched:  # refused or never dispatched: out of the way at once
                await r.speaker.aclose()
                await r.listener.aclose()
        assert ctx.server._proc is not None
        server_pid, fakes_pid = ctx.server._proc.pid, int(ctx.urls["pid"])
        meter = Meter(
            {
                "worker": lambda: tree(worker_pid),
                "livekit_server": lambda: tree(server_pid),
                "fakes": lambda: tree(fakes_pid),
                "participants": lambda: [psutil.Process()],
            }
        )
        # CPU and memory while every room talks: from the last room's start to the first room's end
        for r in live:
            r.delay_s = rng.uniform(0, stagger_s) if stagger_s else 0.0
        t0 = time.perf_counter()

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
        await wait_quiet(records_path)
        async with aiohttp.ClientSession() as http:
            fakes = await fetch_records(ctx.urls, http)
        result = RunResult(rooms=len(speech), dispatched=len(live), meter=measured, fakes=fakes, t0=t0)
        ready = sorted(r.ready_s for r in live if r.ready_s is not None)
        result.dispatch = {
            "ready_s_max": round(ready[-1], 2) if ready else None,
            "ready_s_median": round(ready[len(ready) // 2], 2) if ready else None,
            "no_agent": sum(1 for r in rooms if not r.dispatched and not r.agent_joined),
            "agent_without_track": sum(1 for r in rooms if not r.dispatched and r.agent_joined),
            "not_opened": len(speech) - len(rooms),
        }
        result.speaking_lag_s = max((r.speaking_lag_s for r in live), default=0.0)
        result.speech_s = sum(r.pcm.duration for r in live)
        records = read_records(records_path)
        for room in live:
            analyse(room, records, result)
        return result
    finally:
        await asyncio.gather(
            *(p.aclose() for r in rooms for p in (r.speaker, r.listener)), return_exceptions=True
        )
        with contextlib.suppress(Exception):
            lk = ctx.server.api()
            try:
                listed = await lk.room.list_rooms(api.ListRoomsRequest())
                for room_info in listed.rooms:
                    await lk.room.delete_room(api.DeleteRoomRequest(room=room_info.name))
            finally:
                await lk.aclose()
        pids = [p.pid for p in tree(worker.proc.pid)] if worker.proc is not None else []
        await worker.aclose()
        for pid in pids[1:]:  # job processes left behind by a worker that was killed
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


def analyse(room: BenchRoom, records: list[UtteranceRecord], result: RunResult) -> None:
    prefix = room.speaker.identity + "-"
    mine = [r for r in records if r.utterance_id.startswith(prefix)]
    result.records += mine
    spoken = [
        r
        for r in mine
        if r.outcome == "spoken" and Mark.FIRST_FRAME in r.marks and Mark.SPEECH_END in r.marks
    ]
    ids = {}
    for c in room.listener.final_captions(translated=True, language=TARGET):
        words = c.text.split()
        if words and words[0].strip(".,").isdigit():
            ids[c.segment_id] = int(words[0].strip(".,"))
    result.captions[room.name] = {
        "source": [
            SimpleNamespace(segment_id=c.segment_id, text=c.text, start_s=None, end_s=None)
            for c in room.listener.final_captions(translated=False)
        ],
        "translated": [
            SimpleNamespace(segment_id=c.segment_id, text=c.text, start_s=None, end_s=None)
            for c in room.listener.final_captions(translated=True, language=TARGET)
        ],
    }
    first_caption: dict[str, float] = {}
    for c in room.listener.captions:
        if c.translated and c.segment_id not in first_caption:
            first_caption[c.segment_id] = c.at
    heard = Heard(room.listener.heard.get(TRACK, []))
    onsets: dict[str, float] = {}
    for r in spoken:
        number = ids.get(r.utterance_id)
        if number is None:
            continue
        heard_at = max(r.marks[Mark.FIRST_FRAME], r.marks.get(Mark.PLAYOUT_START, 0.0))
        onset = heard.onset(tagged_freq(f"{number:04d}"), heard_at - 0.005)
        if onset is not None:
            onsets[r.utterance_id] = onset
            result.downlink_all_s.append(onset - heard_at)
    # the utterances that end where the speaker paused: speech end as sent → first frame heard
    ends = [start + duration for start, duration in room.segments]
    nexts = [start for start, _ in room.segments[1:]] + [math.inf]
    for end, next_start in zip(ends, nexts, strict=True):
        if next_start - end < ENDPOINTING_MS / 1000 + 0.1:
            continue  # a breath, not a pause: the STT does not end an utterance there
        sent_end = room.speaker.sent_at(end)
        near = [r for r in spoken if -0.3 <= r.marks[Mark.SPEECH_END] - sent_end <= 0.6]
        if not near:
            result.unmatched += 1
            continue
        r = max(near, key=lambda r: r.marks[Mark.SPEECH_END])
        onset = onsets.get(r.utterance_id)
        if onset is None:
            result.unmatched += 1
            continue
        worker_e2e = r.marks[Mark.FIRST_FRAME] - r.marks[Mark.SPEECH_END]
        heard_at = max(r.marks[Mark.FIRST_FRAME], r.marks.get(Mark.PLAYOUT_START, 0.0))
        result.utterances.append(
            Utterance(
                room=room.name,
                id=r.utterance_id,
                listener_e2e_s=onset - sent_end,
                worker_e2e_s=worker_e2e,
                sfu_added_s=onset - sent_end - worker_e2e,
                uplink_s=r.marks[Mark.SPEECH_END] - sent_end,
                source_queue_s=heard_at - r.marks[Mark.FIRST_FRAME],
                downlink_s=onset - heard_at,
                caption_lead_s=onset - first_caption[r.utterance_id]
                if r.utterance_id in first_caption
                else None,
            )
        )


def stage_figures(records: list[UtteranceRecord]) -> dict[str, dict[str, float]]:
    """The worker's own per-stage figures (as its latency log, logger `agent.latency`, reports them)."""
    spoken = [r for r in records if r.outcome == "spoken"]
    out = {}
    for name, start, end in STAGES:
        values = [v for r in spoken if (v := r.span(start, end)) is not None]
        out[name] = summary_ms(values)
    return out


def overhead_figures(result: RunResult, model: LatencyModel) -> dict[str, Any]:
    """As `python -m bench`: each utterance's modelled floor (from the fakes' /records), overhead over it."""
    figs = []
    for room, captions in result.captions.items():
        prefix = f"{room}-speaker-"
        run = SimpleNamespace(
            tracker=SimpleNamespace(
                completed=[r for r in result.records if r.utterance_id.startswith(prefix)]
            ),
            captions=SimpleNamespace(
                finals=lambda translated, c=captions: c["translated"] if translated else c["source"]
            ),
            t0=result.t0,
        )
        figs += figures(run, result.fakes, model, endpointing_s=ENDPOINTING_MS / 1000)  # type: ignore[arg-type]
    return {"joined": len(figs), **overhead_summary(figs)}


def latency_summary(result: RunResult, model: LatencyModel) -> dict[str, Any]:
    u = result.utterances
    outcomes: dict[str, int] = {}
    for r in result.records:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    return {
        "rooms": result.rooms,
        "dispatched": result.dispatched,
        "dispatch": result.dispatch,
        "speaking_lag_s": round(result.speaking_lag_s, 2),
        "outcomes": outcomes,
        "at_pauses": len(u),
        "unmatched": result.unmatched,
        "listener_e2e_ms": summary_ms([x.listener_e2e_s for x in u]),
        "worker_e2e_ms": summary_ms([x.worker_e2e_s for x in u]),
        "sfu_added_ms": summary_ms([x.sfu_added_s for x in u]),
        "uplink_ms": summary_ms([x.uplink_s for x in u]),
        "source_queue_ms": summary_ms([x.source_queue_s for x in u]),
        "downlink_ms": summary_ms([x.downlink_s for x in u]),
        "downlink_all_ms": summary_ms(result.downlink_all_s),
        "caption_lead_ms": summary_ms([x.caption_lead_s for x in u if x.caption_lead_s is not None]),
        "worker_stages_ms": stage_figures(result.records),
        **overhead_figures(result, model),
        "cpu": result.meter,
        "points": [asdict(x) for x in u],
    }


# ------------------------------------------------------------------------------------------------ workloads


async def workload_dialogue(ctx: Context, utterances: int) -> dict[str, Any]:
    speech = dialogue(utterances, random.Random(ctx.model.seed))
    result = await run_rooms(ctx, "dialogue", [speech])
    return latency_summary(result, ctx.model)


async def workload_monologue(ctx: Context, minutes: float) -> dict[str, Any]:
    speech = monologue(minutes, random.Random(ctx.model.seed))
    result = await run_rooms(ctx, "monologue", [speech])
    out = latency_summary(result, ctx.model)
    out["minutes"] = minutes
    return out


async def workload_capacity(
    ctx: Context, steps: list[int], seconds: float, stop_ms: float, stagger_s: float
) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    base_p95: float | None = None
    stopped = ""
    for n in steps:
        rng = random.Random(ctx.model.seed + n)
        speech = [dialogue(max(1, int(seconds / 3.25)), random.Random(rng.random())) for _ in range(n)]
        result = await run_rooms(ctx, f"cap{n}", speech, stagger_s=stagger_s)
        s = latency_summary(result, ctx.model)
        s.pop("points")
        cpu = result.meter
        worker_cores = cpu["cores"]["worker"]
        step = {
            "rooms": n,
            "dispatched": result.dispatched,
            "refused": n - result.dispatched,
            "speaking_lag_s": s["speaking_lag_s"],
            "dispatch": result.dispatch,
            **{k: s[k] for k in ("outcomes", "at_pauses", "unmatched", "listener_e2e_ms", "worker_e2e_ms")},
            **{k: s[k] for k in ("sfu_added_ms", "uplink_ms", "downlink_ms", "overhead_ms")},
            "cpu_cores": cpu["cores"],
            # CPU-seconds per minute of a room talking (while all N talk at once)
            "worker_cpu_s_per_room_minute": round(worker_cores * 60 / result.dispatched, 2)
            if result.dispatched
            else None,
            "worker_cores_per_room": round(worker_cores / result.dispatched, 3)
            if result.dispatched
            else None,
            "worker_rss_mb": cpu["worker_rss_mb"],
            "worker_pss_mb": cpu["worker_pss_mb"],
            "window_s": cpu["seconds"],
        }
        out.append(step)
        p95 = s["listener_e2e_ms"]["p95"]
        print(
            f"  capacity: {n} rooms ({result.dispatched} dispatched) → listener p95 {p95} ms, "
            f"worker {worker_cores:.2f} cores, machine {cpu['cores']['machine']:.2f}, "
            f"all served within {result.dispatch.get('ready_s_max')} s",
            flush=True,
        )
        if base_p95 is None and not math.isnan(p95):
            base_p95 = p95
        if result.speaking_lag_s > 1.0 or math.isnan(p95):
            stopped = (
                f"breakdown at {n} rooms: speakers {result.speaking_lag_s:.1f} s behind real time, "
                f"{s['at_pauses']} utterances matched (the machine cannot run the rooms and participants)"
            )
            step["broken"] = True
            break
        if result.dispatched < n:
            stopped = f"{n - result.dispatched} of {n} rooms not dispatched (refused)"
            break
        if base_p95 is not None and p95 > base_p95 + stop_ms:
            stopped = f"listener p95 {p95} ms > one room's {base_p95} + {stop_ms} ms"
            break
        if cpu["cores"]["machine"] >= 0.95 * (os.cpu_count() or 1):
            stopped = (
                f"the machine's CPU saturated ({cpu['cores']['machine']} of {os.cpu_count()} cores busy)"
            )
            break

    def over(s: dict[str, Any]) -> bool:
        p95 = s["listener_e2e_ms"]["p95"]
        return bool(s.get("broken")) or math.isnan(p95) or (base_p95 is not None and p95 > base_p95 + 50)

    within = [s["rooms"] for s in out if base_p95 is not None and s["refused"] == 0 and not over(s)]
    first_over = next((s["rooms"] for s in out if base_p95 is not None and over(s)), None)
    # memory per room: the worker tree's growth over the step with the fewest rooms, per extra room
    per_room_mb = None
    if len(out) >= 2 and out[-1]["dispatched"] > out[0]["dispatched"]:
        per_room_mb = round(
            (out[-1]["worker_pss_mb"] - out[0]["worker_pss_mb"])
            / (out[-1]["dispatched"] - out[0]["dispatched"]),
            1,
        )
    return {
        "seconds_per_room": seconds,
        "steps": out,
        "one_room_p95_ms": base_p95,
        "most_rooms_within_50ms_of_one": max(within, default=None),
        "first_rooms_over_50ms": first_over,
        "worker_pss_mb_per_extra_room": per_room_mb,
        "stopped": stopped or "the list of steps ended",
    }


# ------------------------------------------------------------------------------------------------ reporting


def print_report(results: dict[str, Any]) -> None:
    for name in ("dialogue", "monologue"):
        d = results.get(name)
        if not d:
            continue
        print(f"\n{name.capitalize()} through the SFU (1 room): utterances ending at a pause, ms")
        rows = [
            ("listener end to end", d["listener_e2e_ms"]),
            ("worker end to end", d["worker_e2e_ms"]),
            ("SFU adds (difference)", d["sfu_added_ms"]),
            ("  uplink", d["uplink_ms"]),
            ("  worker source queue", d["source_queue_ms"]),
            ("  downlink", d["downlink_ms"]),
            ("downlink, every utterance", d["downlink_all_ms"]),
            ("caption ahead of audio", d["caption_lead_ms"]),
            ("modelled floor", d["floor_ms"]),
            ("overhead over the floor", d["overhead_ms"]),
        ]
        rows += [(f"  worker {k}", v) for k, v in d["worker_stages_ms"].items()]
        summary_table(rows, 26)
        cpu = d["cpu"]["cores"]
        print(f"  outcomes {d['outcomes']}; unmatched at pauses {d['unmatched']}; CPU cores {cpu}")
    if c := results.get("capacity"):
        print(f"\nCapacity: N rooms at once against one worker ({c['seconds_per_room']} s of dialogue each)")
        head = (
            f"{'rooms':>6}{'disp':>5}{'listen p50':>11}{'p95':>7}{'worker p95':>11}{'SFU p95':>8}"
            f"{'wk cores':>9}{'/room':>7}{'s/rm-min':>9}{'lk':>6}{'fakes':>6}{'parts':>6}{'mach':>6}"
            f"{'PSS MB':>8}"
        )
        print(head)
        for s in c["steps"]:
            cores = s["cpu_cores"]
            print(
                f"{s['rooms']:>6}{s['dispatched']:>5}{s['listener_e2e_ms']['p50']:>11}{s['listener_e2e_ms']['p95']:>7}"
                f"{s['worker_e2e_ms']['p95']:>11}{s['sfu_added_ms']['p95']:>8}{cores['worker']:>9}"
                f"{s['worker_cores_per_room'] or '-':>7}{s['worker_cpu_s_per_room_minute'] or '-':>9}"
                f"{cores['livekit_server']:>6}{cores['fakes']:>6}{cores['participants']:>6}{cores['machine']:>6}"
                f"{s['worker_pss_mb']:>8}"
            )
        print(
            f"  one room p95 {c['one_room_p95_ms']} ms; most rooms within +50 ms: "
            f"{c['most_rooms_within_50ms_of_one']}; first over: {c['first_rooms_over_50ms']}; "
            f"PSS per extra room {c['worker_pss_mb_per_extra_room']} MB; stopped: {c['stopped']}"
        )


def draw(results: dict[str, Any], out: Path) -> list[str]:
    plt = pyplot()
    panels = [k for k in ("dialogue", "capacity") if results.get(k)]
    if not panels:
        return []
    fig, axes = plt.subplots(
        1, len(panels) + (1 if "capacity" in panels else 0), figsize=(6 * (len(panels) + 1), 4)
    )
    axes = list(np.atleast_1d(axes))
    if d := results.get("dialogue"):
        series = [
            ([p["listener_e2e_s"] for p in d["points"]], "at the listener (through the SFU)"),
            ([p["worker_e2e_s"] for p in d["points"]], "the worker's own record"),
        ]
        plot_cdf(axes.pop(0), series, "Dialogue through a real LiveKit server")
    if c := results.get("capacity"):
        steps = c["steps"]
        xs = [s["rooms"] for s in steps]
        ax = axes.pop(0)
        ax.plot(xs, [s["listener_e2e_ms"]["p95"] for s in steps], "o-", label="listener p95")
        ax.plot(xs, [s["listener_e2e_ms"]["p50"] for s in steps], "o--", label="listener p50")
        ax.plot(xs, [s["worker_e2e_ms"]["p95"] for s in steps], "s-", label="worker p95")
        if c["one_room_p95_ms"] is not None:
            ax.axhline(c["one_room_p95_ms"] + 50, color="red", ls=":", lw=1, label="one room p95 + 50 ms")
        ax.set_xlabel("rooms at once (one worker)")
        ax.set_ylabel("speech end → first translated frame (ms)")
        ax.set_title("Latency vs rooms")
        ax.grid(alpha=0.3)
        ax.legend()
        ax = axes.pop(0)
        bottom = np.zeros(len(steps))
        for key in ("worker", "livekit_server", "fakes", "participants", "others"):
            values = np.array([s["cpu_cores"][key] for s in steps])
            ax.bar([str(x) for x in xs], values, bottom=bottom, label=key)
            bottom += values
        ax.axhline(os.cpu_count() or 1, color="black", lw=1, ls=":")
        ax.set_xlabel("rooms at once")
        ax.set_ylabel("CPU (cores busy)")
        ax.set_title("Who uses the CPU")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "room.png", dpi=110)
    plt.close(fig)
    return ["room.png"]


# --------------------------------------------------------------------------------------------------- main


async def run(
    args: argparse.Namespace, model: LatencyModel, settings: dict[str, str], command: str
) -> dict[str, Any]:
    binary = find_binary()
    if binary is None:
        raise SystemExit(INSTALL_HINT)
    results: dict[str, Any] = {
        "model": model.as_dict(),
        "settings": settings,
        "load_cpu": args.load_cpu,
        "open_interval_s": args.open_interval,
        "machine": {"cpus": os.cpu_count()},
        "command": command,
    }
    with tempfile.TemporaryDirectory(prefix="bench-room-") as tmp:
        workdir = Path(tmp)
        server = LiveKitServer(binary, workdir / "livekit-server.log")
        server.start()
        try:
            async with modelled_providers(model, length_factor=args.length_factor, tag_tones=True) as urls:
                ctx = Context(
                    server,
                    urls,
                    model,
                    settings,
                    workdir,
                    args.sessions_per_core,
                    args.dispatch_timeout,
                    args.load_cpu,
                    args.open_interval,
                )
                if "dialogue" in args.workloads:
                    print("running the dialogue workload through the SFU…", flush=True)
                    results["dialogue"] = await workload_dialogue(ctx, args.dialogue_utterances)
                if "monologue" in args.workloads:
                    print("running the monologue workload through the SFU…", flush=True)
                    results["monologue"] = await workload_monologue(ctx, args.monologue_minutes)
                if "capacity" in args.workloads:
                    print("running the capacity sweep…", flush=True)
                    steps = [int(n) for n in args.rooms.split(",")]
                    results["capacity"] = await workload_capacity(
                        ctx, steps, args.room_seconds, args.stop_ms, args.stagger
                    )
        finally:
            server.stop()
            if args.keep_logs:
                import shutil

                shutil.copytree(workdir, args.keep_logs, dirs_exist_ok=True)
    return results


def main(argv: list[str]) -> None:
    parser = command_parser("room", __doc__)
    parser.add_argument("workloads", nargs="*", default=["dialogue", "monologue", "capacity"])
    parser.add_argument("--dialogue-utterances", type=int, default=60)
    parser.add_argument("--monologue-minutes", type=float, default=3.0)
    parser.add_argument("--length-factor", type=float, default=1.1, help="translated/original speech length")
    parser.add_argument("--rooms", default="1,2,4,6,8,10,12,16", help="capacity: comma-separated room counts")
    parser.add_argument("--room-seconds", type=float, default=60.0, help="capacity: dialogue per room (s)")
    parser.add_argument("--stagger", type=float, default=3.0, help="capacity: rooms start within this many s")
    parser.add_argument(
        "--stop-ms", type=float, default=1000.0, help="capacity: stop once p95 rises this much"
    )
    parser.add_argument("--sessions-per-core", type=int, default=200, help="the worker's SESSIONS_PER_CORE")
    parser.add_argument(
        "--load-cpu",
        choices=("machine", "worker"),
        default="worker",
        help="the CPU term of the worker's load function: the worker's own process tree (default: what it "
        "reads in production, where the machine runs only the worker) or the whole machine's (the function "
        "unchanged; here the participants, server and fakes count against it)",
    )
    parser.add_argument(
        "--open-interval",
        type=float,
        default=1.0,
        help="capacity: s between rooms opening (0: all at once, a burst the framework partly refuses)",
    )
    parser.add_argument("--dispatch-timeout", type=float, default=45.0, help="s for a room to get its agent")
    add_model_arguments(parser)
    add_settings_argument(parser)
    add_output_arguments(parser)
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the server and worker logs here")
    args = parser.parse_args(argv)
    unknown = set(args.workloads) - {"dialogue", "monologue", "capacity"}
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}")
    settings = worker_settings(args)

    out = output_dir(args)
    model = LatencyModel.from_args(args)
    load = MachineLoad()
    started = time.perf_counter()
    try:
        results = asyncio.run(run(args, model, settings, " ".join(["python -m bench room", *argv])))
    except KeyboardInterrupt:
        print("interrupted: rooms, worker, server and fakes were closed", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        for child in psutil.Process().children(recursive=True):  # anything of ours still running
            with contextlib.suppress(psutil.Error):
                child.kill()
    results["wall_s"] = round(time.perf_counter() - started, 1)
    write_results(out, "room.json", results, load, draw=draw, report=print_report)
