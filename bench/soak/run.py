"""Soak: an hour (or more) of simulated speech through a whole room session, faster than real time.

    uv run python -m bench soak                      # 60 simulated minutes, 2 speakers (en, es): ~1.5 min
    uv run python -m bench soak --minutes 5          # a short one
    uv run python -m bench soak --speakers 1         # one speaker (en → es)
    uv run python -m bench soak --set STT_MAX_SEGMENT_S=1.0   # the worker's default: long speech is cut
    uv run python -m bench soak --tracemalloc --tracker-window 500   # where memory grows (slower)

The real loops — `RoomSession` over the fake room, each speaker's ears, the router, one channel (brain
and mouth) per target language, the room publisher — with the real plugins and SDKs talking to the fake
providers, which run in a process of their own (so what they record is not in this process's memory).

Two things are not real time, so that an hour takes minutes:
- each speaker's audio is synthetic (tone bursts of 1-4 s, pauses of 0.5-1 s) handed to the ears as an
  async iterator of 20 ms frames with no pacing (or at most `--speed` × real time); the fake Deepgram
  segments on the audio content, not on the wall clock, so every burst still becomes one final. A
  speaker holds its next burst while more than `--backlog` of its bursts are not yet transcribed or
  its utterances not yet spoken, so the pipeline is never flooded (nothing is merged: every utterance
  is its own round trip through STT, LLM and TTS);
- the published `rtc.AudioSource`s are replaced (for this process) by one that takes frames at once
  and counts them instead of playing them out in real time.

Every simulated 10 minutes the speakers stop, the pipeline drains, and the process is sampled: RSS (after
`gc.collect()`), asyncio tasks, gc-tracked objects, and the size of every long-lived container that could
grow per utterance. Prints a table with the machine's load during the run and writes soak.json to
bench-results/ (`--out` another folder, `--write-results` the committed bench/results/).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import itertools
import logging
import math
import os
import random
import re
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from unittest import mock

import aiohttp
import numpy as np
from livekit import rtc
from livekit.agents import tts

from agent.loops.models import Utterance
from agent.loops.pipeline import Channel, Router
from agent.providers.build import build_llm, build_stt, build_tts
from agent.room.room_io import ATTR_INTERPRET_TO, ATTR_LANGUAGE, ATTR_SPEAKER
from agent.room.session import RoomSession
from agent.run.filemode import FRAME_S
from agent.settings.config import Settings
from agent.telemetry import metrics
from agent.telemetry.latency import LatencyTracker, UtteranceRecord, format_table
from bench.harness.cli import (
    add_output_arguments,
    add_settings_argument,
    command_parser,
    output_dir,
    worker_settings,
)
from bench.harness.machine import MachineLoad, rss_mb
from bench.harness.output import write_results
from bench.harness.speech import RATE, tone
from bench.soak.fakes import FakeLatency, soak_fakes, soak_settings
from tests.fakes.room import FakeParticipant, FakeRoom

FRAME_SAMPLES = int(RATE * FRAME_S)
SAMPLE_EVERY_S = 600.0
SPEAKERS = (("alice", "en", "es"), ("bob", "es", "en"))  # identity, spoken language, wanted language
logger = logging.getLogger("bench.soak")

# -- the output: an AudioSource that does not play out in real time ----------------------------------


class FastAudioSource(rtc.AudioSource):
    """A real `rtc.AudioSource` (so a real track can be made of it) whose `capture_frame` returns at
    once: frames are counted, never queued, so the mouth plays as fast as the TTS delivers."""

    def __init__(
        self,
        sample_rate: int,
        num_channels: int,
        queue_size_ms: int = 1000,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(sample_rate, num_channels, queue_size_ms, loop)
        self.frames = 0
        self.seconds = 0.0

    @property
    def queued_duration(self) -> float:
        return 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        self.frames += 1
        self.seconds += frame.samples_per_channel / frame.sample_rate


# -- the speakers ------------------------------------------------------------------------------------


@dataclass
class SpeakerStats:
    identity: str
    language: str
    segments: int = 0  # bursts fed, each followed by a pause longer than the endpointing
    audio_s: float = 0.0  # timeline fed, pauses included
    voiced_s: float = 0.0
    heard: int = 0  # utterances the ears handed on
    completed: int = 0  # utterances of this speaker completed by a channel (spoken or failed)
    stalls: int = 0  # times the backlog did not come down within the stall timeout
    finalized_s: float = 0.0  # the end of the latest utterance heard, on the speaker's timeline
    unmatched: int = 0  # utterances that ended short of a burst's end (cut by STT_MAX_SEGMENT_S)
    # ends of the bursts fed whose final transcript has not come yet
    open_bursts: collections.deque[float] = field(default_factory=collections.deque)

    def unspoken(self) -> int:
        """Bursts not yet transcribed and utterances not yet spoken."""
        return len(self.open_bursts) + self.heard - self.completed


class ObservingRouter(Router):
    """The session's router, telling the conductor about every utterance the ears hand on."""

    def __init__(self, on_utterance: Callable[[Utterance], None]) -> None:
        super().__init__()
        self._on_utterance = on_utterance

    def put_nowait(self, utterance: Utterance) -> None:
        self._on_utterance(utterance)
        super().put_nowait(utterance)


class Conductor:
    """Holds the speakers at each sampling point, and every speaker at its backlog bound."""

    def __init__(self, *, backlog: int, stall_timeout_s: float, speed: float = 0.0) -> None:
        self.backlog = backlog
        self.speed = speed  # at most this many times real time (0: no bound)
        self.stall_timeout_s = stall_timeout_s
        self.limit_s = 0.0  # speakers feed until their timeline reaches this
        self.finished = False  # no more audio: the frames iterators end
        self.stats: dict[str, SpeakerStats] = {}
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    def on_utterance(self, utterance: Utterance) -> None:
        stats = self.stats.get(utterance.speaker)
        if stats is None:
            return
        stats.heard += 1
        stats.finalized_s = max(stats.finalized_s, utterance.audio_end)
        matched = False
        while stats.open_bursts and stats.open_bursts[0] <= stats.finalized_s + 0.05:
            stats.open_bursts.popleft()
            matched = True
        stats.unmatched += not matched
        self.notify()

    def on_complete(self, record: UtteranceRecord) -> None:
        metrics.observe_record(record)  # as the worker's tracker does
        stats = self.stats.get(record.utterance_id.split("-", 1)[0])
        if stats is not None:
            stats.completed += 1
            self.notify()

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float | None = None) -> bool:
        deadline = None if timeout_s is None else time.perf_counter() + timeout_s
        while not condition():
            self._changed.clear()
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    def at_limit(self, stats: SpeakerStats) -> bool:
        return stats.audio_s >= self.limit_s - 1e-9

    def all_at_limit(self) -> bool:
        return all(self.at_limit(s) for s in self.stats.values())

    def drained(self) -> bool:
        return all(s.unspoken() <= 0 for s in self.stats.values())

    async def frames(
        self, stats: SpeakerStats, rng: random.Random, freq: float
    ) -> AsyncIterator[rtc.AudioFrame]:
        """A speaker's audio: a burst of tone, a pause, ... as 20 ms frames, as fast as allowed."""
        silence = np.zeros(FRAME_SAMPLES, dtype=np.int16).tobytes()
        while True:
            if self.at_limit(stats):
                self.notify()
                await self.wait_for(lambda: self.finished or not self.at_limit(stats))
                if self.finished:
                    return
            if not await self.wait_for(lambda: stats.unspoken() <= self.backlog, self.stall_timeout_s):
                stats.stalls += 1
                logger.warning("speaker %s: backlog not spoken in time", stats.identity)
            burst = round(rng.uniform(1.0, 4.0) / FRAME_S)  # frames
            pause = round(rng.uniform(0.5, 1.0) / FRAME_S)
            stats.open_bursts.append(stats.audio_s + burst * FRAME_S)
            started = time.perf_counter()
            for i, chunk in enumerate(
                itertools.chain(_tone_frames(burst, freq), itertools.repeat(silence, pause))
            ):
                yield rtc.AudioFrame(chunk, RATE, 1, FRAME_SAMPLES)
                ahead = started + (i + 1) * FRAME_S / self.speed - time.perf_counter() if self.speed else 0.0
                await asyncio.sleep(max(0.0, ahead))  # at least let the loop run
            stats.segments += 1
            stats.audio_s += (burst + pause) * FRAME_S
            stats.voiced_s += burst * FRAME_S


def _tone_frames(frames: int, freq: float) -> Iterator[bytes]:
    pcm = (tone(frames * FRAME_SAMPLES, freq) * 32767).astype(np.int16).tobytes()
    step = FRAME_SAMPLES * 2
    for i in range(0, len(pcm), step):
        yield pcm[i : i + step]


# -- sampling ----------------------------------------------------------------------------------------


def _task_name(task: asyncio.Task[Any]) -> str:
    return re.sub(r"\d+", "N", task.get_name())


@dataclass
class Sample:
    label: str
    sim_s: float  # simulated room time since the end of the warm-up (each speaker's timeline)
    wall_s: float  # since the end of the warm-up
    rss_mb: float
    fakes_rss_mb: float
    tasks: int
    gc_objects: int
    allocated_blocks: int
    heard: int
    spoken: int
    failed: int
    containers: dict[str, int | float] = field(default_factory=dict)


def containers(session: RoomSession, tracker: LatencyTracker, room: FakeRoom) -> dict[str, int | float]:
    """The size of every long-lived container of the session that could grow with each utterance."""
    out: dict[str, int | float] = {
        "tracker.open": tracker.open_count,
        "tracker.completed": len(tracker.completed),
        "tracker.samples.max": max(len(s) for s in getattr(tracker, "_samples").values()),  # noqa: B009
        "session.speakers": len(session.speakers),
        "session.outputs": len(session.outputs),
        "session.control_queue": getattr(session, "_control").qsize(),  # noqa: B009
        "session.ears_started": len(getattr(session, "_ears_started")),  # noqa: B009
        "publisher.queue": session.publisher.pending,
        "publisher.tracks": len(session.publisher.speaker_tracks) + len(session.publisher.language_tracks),
        "stt.streams": len(getattr(getattr(session, "_stt"), "_streams", ())),  # noqa: B009
        "session.faults": len(getattr(session, "_faults", {})),
    }
    for speaker in session.speakers.values():
        ears, who = speaker.ears, speaker.identity
        out[f"ears[{who}].pending_frames"] = len(getattr(ears, "_pending"))  # noqa: B009
        out[f"ears[{who}].audio_clock_points"] = len(getattr(getattr(ears, "_audio_clock"), "_points"))  # noqa: B009
        out[f"ears[{who}].reconnects"] = ears.reconnects
        out[f"ears[{who}].dropped_audio_s"] = round(ears.dropped_audio_s, 3)
    for language, output in session.outputs.items():
        channel: Channel = output.channel
        book = channel.brain.contexts
        out[f"channel[{language}].context_sources"] = len(getattr(book, "_contexts"))  # noqa: B009
        for source, context in getattr(book, "_contexts").items():  # noqa: B009
            out[f"channel[{language}].context_pairs[{source}]"] = len(context.pairs)
        out[f"channel[{language}].brain_tasks"] = len(getattr(channel.brain, "_tasks"))  # noqa: B009
        translator = getattr(channel.brain, "translator", None)
        if translator is not None:
            out[f"channel[{language}].llm_resumes"] = getattr(translator, "resumes", 0)
            out[f"channel[{language}].guard_rejections"] = getattr(translator, "rejections", 0)
        out[f"channel[{language}].inbox"] = channel.inbox.qsize()
        out[f"channel[{language}].inbox_merged"] = channel.inbox.merged
        out[f"channel[{language}].speeches"] = channel.speeches.qsize()
        out[f"channel[{language}].mouth.played"] = len(channel.mouth.played)
        if isinstance(output.source, FastAudioSource):
            out[f"channel[{language}].played_audio_s"] = round(output.source.seconds, 1)
        out[f"channel[{language}].tts.streams"] = len(getattr(channel.tts, "_streams", ()))
        pool = getattr(channel.tts, "_pool", None)
        if pool is not None:
            out[f"channel[{language}].tts.pool_connections"] = len(getattr(pool, "_connections", ()))
    out["fake_room.texts"] = len(room.local_participant.texts)
    out["fake_room.attribute_log"] = len(room.local_participant.attribute_log)
    return out


@dataclass
class CaptionCounts:
    source_final: int = 0
    translated_final: int = 0
    interim: int = 0

    def take(self, room: FakeRoom) -> None:
        """Count the captions the room got since the last call, then forget them (fake-side records)."""
        participant = room.local_participant
        for sent in participant.texts:
            if sent.attributes.get("lk.transcription_final") != "true":
                self.interim += 1
            elif ATTR_SPEAKER in sent.attributes:
                self.translated_final += 1
            else:
                self.source_final += 1
        participant.texts.clear()
        participant.attribute_log.clear()


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
        opts, conductor = self.options, self.conductor
        gc.collect()
        self.tasks_before_session = len(asyncio.all_tasks())
        llm, stt = build_llm(settings), build_stt(settings, settings.source_language, http)

        def tts_for(language: str, voice: str | None) -> tts.TTS:
            instance = build_tts(settings, language, http, voice)
            instance.prewarm()
            return instance

        room = FakeRoom("soak")
        tracker = (
            LatencyTracker(on_complete=conductor.on_complete)
            if opts.tracker_window is None
            else LatencyTracker(on_complete=conductor.on_complete, window=opts.tracker_window)
        )
        rngs = {identity: random.Random(f"{opts.seed}-{identity}") for identity, _, _ in SPEAKERS}
        freqs = {"alice": 220.0, "bob": 180.0}

        def frames_for(track: Any) -> AsyncIterator[rtc.AudioFrame]:
            identity = str(track.name).removeprefix("mic-")
            return conductor.frames(conductor.stats[identity], rngs[identity], freqs[identity])

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
        llm.prewarm()
        speakers: list[tuple[FakeParticipant, rtc.AudioSource]] = []
        try:
            await session.start()
            for identity, language, wanted in SPEAKERS[: opts.speakers]:
                conductor.stats[identity] = SpeakerStats(identity, language)
                participant = room.join(
                    identity, attributes={ATTR_LANGUAGE: language, ATTR_INTERPRET_TO: wanted}
                )
                mic = rtc.AudioSource(RATE, 1)
                track = rtc.LocalAudioTrack.create_audio_track(f"mic-{identity}", mic)
                speakers.append((participant, mic))
                room.publish_audio(participant, track)
            await session.settled()

            # warm-up: imports, connection pools, caches, the tracker's first records
            print(f"warm-up: {opts.warmup_s:.0f} s of simulated speech per speaker…", flush=True)
            await self._advance(opts.warmup_s, session)
            self.wall0 = time.perf_counter()
            self.task_names["start"] = _task_names()
            self._sample("start", session, tracker, room)

            total_s = opts.minutes * 60
            step = min(SAMPLE_EVERY_S, total_s)
            mark = 0.0
            while mark < total_s - 1e-9:
                mark = min(total_s, mark + step)
                await self._advance(opts.warmup_s + mark, session)
                self._sample(f"{mark / 60:.0f} min", session, tracker, room)
            self.task_names["end"] = _task_names()
            heard = sum(s.ears.utterances for s in session.speakers.values())
            end_containers = containers(session, tracker, room)
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
        self.task_names["closed"] = _task_names()
        self.result = self._report(tracker, heard, end_containers, closed_tasks)

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
            containers=containers(session, tracker, room),
        )
        self.samples.append(sample)
        index = len(self.samples) - 1
        n = self.sample_count()
        keep = index in (0, n // 2, n - 1)  # start, middle, end: kept apart, they weigh on the RSS too
        if self.options.type_growth and keep:
            self.censuses[label] = _type_counts()
        if tracemalloc.is_tracing() and keep:
            self.snapshots[label] = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
            )
        print(_row(sample, header=len(self.samples) == 1), flush=True)

    def sample_count(self) -> int:
        return 1 + math.ceil(self.options.minutes * 60 / SAMPLE_EVERY_S - 1e-9)

    def _report(
        self, tracker: LatencyTracker, heard: int, end_containers: dict[str, int | float], closed_tasks: int
    ) -> dict[str, Any]:
        opts, stats = self.options, list(self.conductor.stats.values())
        start, end = self.samples[0], self.samples[-1]
        segments = sum(s.segments for s in stats)
        middle = self.samples[len(self.samples) // 2]
        growth: dict[str, list[dict[str, Any]]] = {}
        if self.censuses:
            for first in (start, middle):
                key = f"{first.label} → {end.label}"
                grown = _growth(self.censuses[first.label], self.censuses[end.label])
                growth[key] = [{"type": t, "from": a, "to": b} for t, a, b in grown]
        allocations: dict[str, list[dict[str, Any]]] = {}
        if self.snapshots:
            for first in (start, middle):
                stats_diff = self.snapshots[end.label].compare_to(self.snapshots[first.label], "lineno")
                allocations[f"{first.label} → {end.label}"] = [
                    {
                        "where": f"{d.traceback[0].filename}:{d.traceback[0].lineno}",
                        "size_diff_kb": round(d.size_diff / 1024, 1),
                        "count_diff": d.count_diff,
                        "size_kb": round(d.size / 1024, 1),
                    }
                    for d in stats_diff[:15]
                ]
        return {
            "options": {**asdict(opts), "latency": asdict(opts.latency)},
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "speakers": [{k: v for k, v in asdict(s).items() if k != "open_bursts"} for s in stats],
            "simulated_s_per_speaker": end.sim_s,
            "simulated_speech_s_total": round(sum(s.audio_s for s in stats) - opts.warmup_s * len(stats), 1),
            "voiced_s_total": round(sum(s.voiced_s for s in stats), 1),
            "warmup_s_per_speaker": opts.warmup_s,
            "wall_s": end.wall_s,
            "speedup": round(end.sim_s / end.wall_s, 1) if end.wall_s else None,
            "segments_fed": segments,
            "utterances_heard": heard,
            "utterances_cut_short": sum(s.unmatched for s in stats),  # cut by STT_MAX_SEGMENT_S
            "one_utterance_per_segment": heard == segments and not any(s.unmatched for s in stats),
            "utterances_spoken": tracker.spoken,
            "utterances_failed": tracker.failed,
            "captions": asdict(self.captions),
            "played_audio_s": {k: v for k, v in end_containers.items() if k.endswith(".played_audio_s")},
            "stalls": sum(s.stalls for s in stats),
            "rss_mb": {
                "start": start.rss_mb,
                "end": end.rss_mb,
                "delta": round(end.rss_mb - start.rss_mb, 1),
            },
            "tasks": {
                "before_session": self.tasks_before_session,
                "start": start.tasks,
                "end": end.tasks,
                "after_close": closed_tasks,
            },
            "task_names": self.task_names,
            "gc_objects": {"start": start.gc_objects, "end": end.gc_objects},
            "containers_end": end_containers,
            "type_growth": growth,
            "allocation_growth": allocations,
            "samples": [asdict(s) for s in self.samples],
            "latency_ms": tracker.summary_ms(),
        }


def _type_counts() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def _growth(
    before: collections.Counter[str], after: collections.Counter[str], top: int = 15
) -> list[tuple[str, int, int]]:
    grown = [(name, before.get(name, 0), n) for name, n in after.items() if n > before.get(name, 0)]
    grown.sort(key=lambda g: g[2] - g[1], reverse=True)
    return grown[:top]


def _task_names() -> dict[str, int]:
    return dict(sorted(collections.Counter(_task_name(t) for t in asyncio.all_tasks()).items()))


def _row(s: Sample, *, header: bool) -> str:
    c = s.containers
    pairs = [v for k, v in c.items() if ".context_pairs[" in k]
    played = sum(int(v) for k, v in c.items() if k.endswith(".mouth.played"))
    line = (
        f"{s.label:>8}{s.sim_s:>9.0f}{s.wall_s:>8.0f}{s.rss_mb:>9.1f}{s.tasks:>7}{s.gc_objects:>10}"
        f"{s.heard:>7}{s.spoken:>7}{s.failed:>6}{max(pairs, default=0):>6}{c['tracker.open']:>6}"
        f"{c['tracker.completed']:>7}{c['tracker.samples.max']:>8}{played:>8}"
    )
    if not header:
        return line
    head = (
        f"{'sample':>8}{'sim s':>9}{'wall s':>8}{'RSS MB':>9}{'tasks':>7}{'gc objs':>10}"
        f"{'heard':>7}{'spoken':>7}{'fail':>6}{'ctx':>6}{'open':>6}{'recs':>7}{'window':>8}{'played':>8}"
    )
    return head + "\n" + "-" * len(head) + "\n" + line


def print_report(r: dict[str, Any]) -> None:
    print()
    print(
        f"simulated: {r['simulated_s_per_speaker']:.0f} s per speaker × {len(r['speakers'])} speakers"
        f" = {r['simulated_speech_s_total']:.0f} s of speech audio ({r['voiced_s_total']:.0f} s voiced,"
        f" after a {r['warmup_s_per_speaker']:.0f} s warm-up);"
        f" wall {r['wall_s']:.0f} s ({r['speedup']}× real time)"
    )
    print(
        f"utterances: {r['segments_fed']} segments fed, {r['utterances_heard']} heard, "
        f"{r['utterances_spoken']} spoken, {r['utterances_failed']} failed; stalls {r['stalls']};"
        f" one utterance per segment: {r['one_utterance_per_segment']}"
        f" ({r['utterances_cut_short']} cut short of a pause)"
    )
    cap = r["captions"]
    print(
        f"captions: {cap['source_final']} source finals, {cap['translated_final']} translated finals, "
        f"{cap['interim']} interim; audio played per track (s): {r['played_audio_s']}"
    )
    rss, tasks = r["rss_mb"], r["tasks"]
    print(f"RSS MB: start {rss['start']}, end {rss['end']} (Δ {rss['delta']:+})")
    print(
        f"asyncio tasks: before the session {tasks['before_session']}, start {tasks['start']}, "
        f"end {tasks['end']}, after close {tasks['after_close']}"
    )
    print(f"gc objects: start {r['gc_objects']['start']}, end {r['gc_objects']['end']}")
    print("containers at the end:")
    for name, value in r["containers_end"].items():
        print(f"  {name:<44}{value}")
    for span, top in r["allocation_growth"].items():
        print(f"allocations (tracemalloc) that grew most {span}:")
        for a in top[:10]:
            print(f"  {a['where'][-70:]:<72}{a['size_diff_kb']:>+9.1f} KB{a['count_diff']:>+8} blocks")
    for span, grown in r["type_growth"].items():
        print(f"gc-tracked objects by type, most grown {span}:")
        for g in grown[:10]:
            print(f"  {g['type']:<60}{g['from']:>8} → {g['to']}")
    print("\nlatency (ms, sanity check only: the fakes answer in tens of ms):")
    print(format_table(r["latency_ms"]))


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
