"""What the soak samples at each point: the process's memory, asyncio tasks, gc-tracked objects, and the size
of every long-lived container of the session that could grow with each utterance (`containers`, read through
what the loops expose, and the providers' streams still alive, `LiveStreams`); the captions the room got;
censuses of objects by type."""

from __future__ import annotations

import asyncio
import collections
import gc
import re
import weakref
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import stt as agents_stt
from livekit.agents import tts as agents_tts
from prometheus_client import Counter

from agent.loops.pipeline import Channel
from agent.room.room_io import ATTR_SPEAKER
from agent.room.session import RoomSession
from agent.telemetry import metrics
from agent.telemetry.latency import LatencyTracker
from bench.soak.speakers import FastAudioSource
from tests.fakes.room import FakeRoom

Provider = agents_stt.STT | agents_tts.TTS


def task_name(task: asyncio.Task[Any]) -> str:
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


class LiveStreams:
    """The streams each watched STT or TTS made that are still alive (after `gc.collect()`: one never let go
    stays). The plugins keep such a weak set, privately; the soak keeps its own, through their public
    `stream`."""

    def __init__(self) -> None:
        self._made: weakref.WeakKeyDictionary[Provider, weakref.WeakSet[object]] = weakref.WeakKeyDictionary()

    def watch(self, provider: Provider) -> None:
        made = self._made.setdefault(provider, weakref.WeakSet())
        make = provider.stream

        def stream(*args: Any, **kwargs: Any) -> Any:
            opened = make(*args, **kwargs)
            made.add(opened)
            return opened

        provider.stream = stream  # type: ignore[method-assign]

    def alive(self, provider: Provider) -> int:
        return len(self._made.get(provider, ()))

    def alive_of(self, kind: type[Provider]) -> int:
        """Over every provider of `kind` watched."""
        return sum(len(made) for provider, made in self._made.items() if isinstance(provider, kind))


def total(counter: Counter) -> int:
    """One of our counters (`agent.telemetry.metrics`) over all its labels: its count in this process."""
    return round(sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total")))


def containers(
    session: RoomSession, tracker: LatencyTracker, room: FakeRoom, streams: LiveStreams
) -> dict[str, int | float]:
    """The size of every long-lived container of the session that could grow with each utterance."""
    publisher = session.publisher
    out: dict[str, int | float] = {
        "tracker.open": tracker.open_count,
        "tracker.completed": len(tracker.completed),
        "tracker.samples.max": max((stage.count for stage in tracker.summary().values()), default=0),
        "session.speakers": len(session.speakers),
        "session.outputs": len(session.outputs),
        "session.control_queue": session.pending_control_steps,
        "session.ears_started": len(session.speakers.ears_started),
        "publisher.queue": publisher.pending,
        "publisher.tracks": len(publisher.speaker_tracks) + len(publisher.language_tracks),
        "stt.streams": streams.alive_of(agents_stt.STT),
        "session.faults": len(session.status.faults),
        "llm.resumes": total(metrics.LLM_RESUMES),
        "llm.guard_rejections": total(metrics.GUARD_REJECTIONS),
    }
    for speaker in session.speakers.values():
        ears, who = speaker.ears, speaker.identity
        out[f"ears[{who}].pending_frames"] = ears.replay.pending_frames
        out[f"ears[{who}].audio_clock_points"] = ears.replay.clock.points
        out[f"ears[{who}].reconnects"] = ears.reconnects
        out[f"ears[{who}].dropped_audio_s"] = round(ears.dropped_audio_s, 3)
    for language, output in session.outputs.items():
        channel: Channel = output.channel
        contexts = channel.brain.contexts.contexts
        out[f"channel[{language}].contexts"] = len(contexts)
        for (who, source), context in contexts.items():
            out[f"channel[{language}].context_pairs[{who},{source}]"] = len(context.pairs)
        out[f"channel[{language}].brain_tasks"] = channel.brain.tasks_in_flight
        out[f"channel[{language}].inbox"] = channel.inbox.qsize()
        out[f"channel[{language}].inbox_merged"] = channel.inbox.merged
        out[f"channel[{language}].speeches"] = channel.speeches.qsize()
        out[f"channel[{language}].mouth.played"] = len(channel.mouth.played)
        if isinstance(output.source, FastAudioSource):
            out[f"channel[{language}].played_audio_s"] = round(output.source.seconds, 1)
        out[f"channel[{language}].tts.streams"] = streams.alive(channel.tts)
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


def type_counts() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def growth(
    before: collections.Counter[str], after: collections.Counter[str], top: int = 15
) -> list[tuple[str, int, int]]:
    grown = [(name, before.get(name, 0), n) for name, n in after.items() if n > before.get(name, 0)]
    grown.sort(key=lambda g: g[2] - g[1], reverse=True)
    return grown[:top]


def task_names() -> dict[str, int]:
    return dict(sorted(collections.Counter(task_name(t) for t in asyncio.all_tasks()).items()))
