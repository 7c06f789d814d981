"""Soak: an hour (or more) of simulated speech through a whole room session, faster than real time.

    uv run python -m bench soak                      # 60 simulated minutes, 2 speakers (en, es): ~1.5 min
    uv run python -m bench soak --minutes 5          # a short one
    uv run python -m bench soak --speakers 1         # one speaker (en → es)
    uv run python -m bench soak --set STT_MAX_SEGMENT_S=1.0   # the worker's default: long speech is cut
    uv run python -m bench soak --tracemalloc --tracker-window 500   # where memory grows (slower)

The real loops — `RoomSession` over the fake room, each speaker's ears, the router, one channel (brain
and mouth) per target language, the room publisher — with the real plugins and SDKs talking to the fake
providers, which run in a process of their own (`bench/soak/fakes.py`: what they record is not in this
process's memory).

Two things are not real time, so that an hour takes minutes:
- each speaker's audio (`bench/soak/speakers.py`) is synthetic (tone bursts of 1-4 s, pauses of 0.5-1 s)
  handed to the ears as an async iterator of 20 ms frames with no pacing (or at most `--speed` × real
  time); the fake Deepgram segments on the audio content, not on the wall clock, so every burst still
  becomes one final. A speaker holds its next burst while more than `--backlog` of its bursts are not yet
  transcribed or its utterances not yet spoken, so the pipeline is never flooded (nothing is merged: every
  utterance is its own round trip through STT, LLM and TTS);
- the published `rtc.AudioSource`s are replaced (for this process) by one that takes frames at once
  and counts them instead of playing them out in real time.

Every simulated 10 minutes the speakers stop, the pipeline drains, and the process is sampled: RSS (after
`gc.collect()`), asyncio tasks, gc-tracked objects, and the size of every long-lived container that could
grow per utterance (`bench/soak/sampling.py`). Prints a table with the machine's load during the run and
writes soak.json to bench-results/ (`--out` another folder, `--write-results` the committed bench/results/).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import math
import random
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import aiohttp
from livekit import rtc
from livekit.agents import llm as agents_llm
from livekit.agents import stt as agents_stt
from livekit.agents import tts

from agent.providers.build import build_llm, build_stt, build_tts
from agent.room.room_io import ATTR_INTERPRET_TO, ATTR_LANGUAGE
from agent.room.session import RoomSession
from agent.settings.config import Settings
from agent.telemetry.latency import LatencyTracker
from bench.harness.cli import (
    add_output_arguments,
    add_settings_argument,
    command_parser,
    output_dir,
    worker_settings,
)
from bench.harness.machine import MachineLoad, rss_mb
from bench.harness.output import write_results
from bench.harness.speech import RATE
from bench.soak.fakes import FakeLatency, soak_fakes, soak_settings
from bench.soak.report import print_report, row, soak_result
from bench.soak.sampling import CaptionCounts, LiveStreams, Sample, containers, task_names, type_counts
from bench.soak.speakers import Conductor, FastAudioSource, ObservingRouter, SpeakerStats
from tests.fakes.room import FakeParticipant, FakeRoom

SAMPLE_EVERY_S = 600.0
SPEAKERS = (("alice", "en", "es"), ("bob", "es", "en"))  # identity, spoken language, wanted language
FREQS = {"alice": 220.0, "bob": 180.0}  # each speaker's tone
logger = logging.getLogger("bench.soak")


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class SoakOptions:
    minutes: float = 60.0
    warmup_s: float = 60.0
    speakers: int = 2
    backlog: int = 2
    stall_timeout_s: float = 15.0
    drain_timeout_s: float = 60.0
    latency: FakeLatency = field(default_factory=FakeLatency)
    settings: dict[str, str] = field(default_factory=dict)
    seed: int = 11
    speed: float = 0.0
    type_growth: bool = True
    tracker_window: int | None = None  # None: the worker's default
    tracemalloc: bool = False


class Soak:
    def __init__(self, options: SoakOptions) -> None:
        self.options = options
        self.samples: list[Sample] = []
        self.conductor = Conductor(
            backlog=options.backlog, stall_timeout_s=options.stall_timeout_s, speed=options.speed
        )
        self.captions = CaptionCounts()
        self.streams = LiveStreams()  # the STT's and each channel's TTS's
        self.fakes_pid = 0
        self.wall0 = 0.0
        self.censuses: dict[str, collections.Counter[str]] = {}  # gc-tracked objects by type, per sample
        self.snapshots: dict[str, tracemalloc.Snapshot] = {}
        self.task_names: dict[str, dict[str, int]] = {}
        self.tasks_before_session = 0
        self.result: dict[str, Any] = {}

    async def run(self) -> dict[str, Any]:
        opts = self.options
        if opts.tracemalloc:
            tracemalloc.start(1)
        with mock.patch.object(rtc, "AudioSource", FastAudioSource):
            async with soak_fakes(opts.latency) as urls, aiohttp.ClientSession() as http:
                self.fakes_pid = int(urls["pid"])
                await self._session(soak_settings(urls, **opts.settings), http)
        return self.result

    async def _session(self, settings: Settings, http: aiohttp.ClientSession) -> None:
        conductor = self.conductor
        gc.collect()
        self.tasks_before_session = len(asyncio.all_tasks())
        llm, stt = build_llm(settings), build_stt(settings, settings.source_language, http)
        self.streams.watch(stt)
        room = FakeRoom("soak")
        tracker = (
            LatencyTracker(on_complete=conductor.on_complete)
            if self.options.tracker_window is None
            else LatencyTracker(on_complete=conductor.on_complete, window=self.options.tracker_window)
        )
        session = self._room_session(settings, http, room, stt, llm, tracker)
        llm.prewarm()
        speakers: list[tuple[FakeParticipant, rtc.AudioSource]] = []
        try:
            await session.start()
            self._join(room, speakers)
            await session.settled()
            heard, end_containers = await self._talk(session, tracker, room)
        finally:
            conductor.finished = True
            conductor.notify()
            await session.aclose()
            for participant, mic in speakers:
                with contextlib.suppress(Exception):
                    room.leave(participant)
                await mic.aclose()
            await llm.aclose()
            await stt.aclose()
        await asyncio.sleep(0.5)
        gc.collect()
        closed_tasks = len(asyncio.all_tasks())
        self.task_names["closed"] = task_names()
        self.result = soak_result(self, tracker, heard, end_containers, closed_tasks)

    def _room_session(
        self,
        settings: Settings,
        http: aiohttp.ClientSession,
        room: FakeRoom,
        stt: agents_stt.STT,
        llm: agents_llm.LLM,
        tracker: LatencyTracker,
    ) -> RoomSession:
        """The session over the fake room, each speaker's audio from the conductor, its router observed."""
        conductor, seed = self.conductor, self.options.seed

        def tts_for(language: str, voice: str | None) -> tts.TTS:
            instance = build_tts(settings, language, http, voice)
            self.streams.watch(instance)
            instance.prewarm()
            return instance

        rngs = {identity: random.Random(f"{seed}-{identity}") for identity, _, _ in SPEAKERS}

        def frames_for(track: Any) -> AsyncIterator[rtc.AudioFrame]:
            identity = str(track.name).removeprefix("mic-")
            return conductor.frames(conductor.stats[identity], rngs[identity], FREQS[identity])

        session = RoomSession(
            room=room,
            settings=settings,
            stt=stt,
            llm=llm,
            tts_factory=tts_for,
            tracker=tracker,
            frames_for=frames_for,
        )
        session.router = ObservingRouter(conductor.on_utterance)  # before any speaker or channel
        return session

    def _join(self, room: FakeRoom, speakers: list[tuple[FakeParticipant, rtc.AudioSource]]) -> None:
        """The speakers join the room and publish their microphones (into `speakers`, to leave after)."""
        for identity, language, wanted in SPEAKERS[: self.options.speakers]:
            self.conductor.stats[identity] = SpeakerStats(identity, language)
            participant = room.join(identity, attributes={ATTR_LANGUAGE: language, ATTR_INTERPRET_TO: wanted})
            mic = rtc.AudioSource(RATE, 1)
            track = rtc.LocalAudioTrack.create_audio_track(f"mic-{identity}", mic)
            speakers.append((participant, mic))
            room.publish_audio(participant, track)

    async def _talk(
        self, session: RoomSession, tracker: LatencyTracker, room: FakeRoom
    ) -> tuple[int, dict[str, int | float]]:
        """The warm-up, then the simulated minutes, sampled every SAMPLE_EVERY_S; the utterances heard and the
        containers at the end."""
        opts = self.options
        # warm-up: imports, connection pools, caches, the tracker's first records
        print(f"warm-up: {opts.warmup_s:.0f} s of simulated speech per speaker…", flush=True)
        await self._advance(opts.warmup_s, session)
        self.wall0 = time.perf_counter()
        self.task_names["start"] = task_names()
        self._sample("start", session, tracker, room)
        total_s = opts.minutes * 60
        step = min(SAMPLE_EVERY_S, total_s)
        mark = 0.0
        while mark < total_s - 1e-9:
            mark = min(total_s, mark + step)
            await self._advance(opts.warmup_s + mark, session)
            self._sample(f"{mark / 60:.0f} min", session, tracker, room)
        self.task_names["end"] = task_names()
        heard = sum(s.ears.utterances for s in session.speakers.values())
        return heard, containers(session, tracker, room, self.streams)

    async def _advance(self, until_s: float, session: RoomSession) -> None:
        """Let every speaker talk until its timeline reaches `until_s`, then wait until all is spoken."""
        conductor = self.conductor
        conductor.limit_s = until_s
        conductor.notify()
        await conductor.wait_for(conductor.all_at_limit)
        if not await conductor.wait_for(conductor.drained, self.options.drain_timeout_s):
            logger.warning("the pipeline did not drain in %.0f s", self.options.drain_timeout_s)
        # the tails: captions sent, streams closed, the brain's tasks ended
        for _ in range(100):  # at most 5 s
            if not session.publisher.pending:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)

    def _sample(self, label: str, session: RoomSession, tracker: LatencyTracker, room: FakeRoom) -> None:
        self.captions.take(room)
        gc.collect()
        stats = self.conductor.stats.values()
        sim_s = min(s.audio_s for s in stats) - self.options.warmup_s
        sample = Sample(
            label=label,
            sim_s=round(max(0.0, sim_s), 1),
            wall_s=round(time.perf_counter() - self.wall0, 1) if self.wall0 else 0.0,
            rss_mb=round(rss_mb(), 1),
            fakes_rss_mb=round(rss_mb(self.fakes_pid), 1),
            tasks=len(asyncio.all_tasks()),
            gc_objects=len(gc.get_objects()),
            allocated_blocks=sys.getallocatedblocks(),
            heard=sum(s.ears.utterances for s in session.speakers.values()),
            spoken=tracker.spoken,
            failed=tracker.failed,
            containers=containers(session, tracker, room, self.streams),
        )
        self.samples.append(sample)
        index = len(self.samples) - 1
        n = self.sample_count()
        keep = index in (0, n // 2, n - 1)  # start, middle, end: kept apart, they weigh on the RSS too
        if self.options.type_growth and keep:
            self.censuses[label] = type_counts()
        if tracemalloc.is_tracing() and keep:
            self.snapshots[label] = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
            )
        print(row(sample, header=len(self.samples) == 1), flush=True)

    def sample_count(self) -> int:
        return 1 + math.ceil(self.options.minutes * 60 / SAMPLE_EVERY_S - 1e-9)


def main(argv: list[str]) -> None:
    parser = command_parser("soak", __doc__)
    parser.add_argument("--minutes", type=float, default=60.0, help="simulated minutes per speaker")
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--speakers", type=int, choices=(1, 2), default=2)
    parser.add_argument("--backlog", type=int, default=2, help="unspoken utterances a speaker runs ahead by")
    parser.add_argument("--speed", type=float, default=0.0, help="at most this × real time (0: no bound)")
    parser.add_argument("--stt-ms", type=float, default=20.0)
    parser.add_argument("--llm-ttft-ms", type=float, default=30.0)
    parser.add_argument("--tts-ttfb-ms", type=float, default=30.0)
    parser.add_argument("--no-type-growth", action="store_true", help="skip the gc type census")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--tracker-window", type=int, help="the latency tracker's sample window (diagnosis)")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="trace allocations (slower; RSS then includes the traces)"
    )
    add_settings_argument(parser)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    options = SoakOptions(
        minutes=args.minutes,
        warmup_s=args.warmup_s,
        speakers=args.speakers,
        backlog=args.backlog,
        speed=args.speed,
        latency=FakeLatency(stt_ms=args.stt_ms, llm_ttft_ms=args.llm_ttft_ms, tts_ttfb_ms=args.tts_ttfb_ms),
        settings=worker_settings(args),
        type_growth=not args.no_type_growth,
        tracker_window=args.tracker_window,
        tracemalloc=args.tracemalloc,
    )
    if not args.no_uvloop and sys.platform != "win32":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    out = output_dir(args)
    load = MachineLoad()
    result = asyncio.run(Soak(options).run())
    write_results(out, "soak.json", result, load, report=print_report)
