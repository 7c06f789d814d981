"""What the soak samples at each point: the process's memory, asyncio tasks, gc-tracked objects, and the size
of every long-lived container of the session that could grow with each utterance (`containers`, reading the
loops' internals: the soak watches them grow); the captions the room got; censuses of objects by type."""

from __future__ import annotations

import asyncio
import collections
import gc
import re
from dataclasses import dataclass, field
from typing import Any

from agent.loops.pipeline import Channel
from agent.room.room_io import ATTR_SPEAKER
from agent.room.session import RoomSession
from agent.telemetry.latency import LatencyTracker
from bench.soak.speakers import FastAudioSource
from tests.fakes.room import FakeRoom


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
