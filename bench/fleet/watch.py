"""What a room's listener sees of the interpreters of ours (`Watch`: each one's arrival, attributes and
departure, as they happen), and the room's record once its scenario is over (`room_record`): the
interpreters, the speaker's sentences as sent, the captions the listener received, when it heard sound."""

from __future__ import annotations

import time

import numpy as np
from livekit import rtc
from livekit.agents.types import ATTRIBUTE_AGENT_NAME, ATTRIBUTE_AGENT_STATE

from agent.room.room_io import ATTR_ALIVE, ATTR_DRAINING, ATTR_HANDOVER_FROM, ATTR_STANDBY
from agent.run.filemode import FRAME_S
from bench.fleet.records import Interpreter, Piece, RoomRecord
from bench.harness.speech import Timeline
from bench.room.participants import AGENT_NAME, TARGET, TRACK, BenchRoom
from tests.participants import LISTEN_RATE

FRAME_JITTER_S = 0.015  # frames arrive in real time, give or take this
LOUD_RMS = 500.0  # a 10 ms frame of the interpretation louder than this is sound (the fake TTS: ~7,000)


class Watch:
    """Every interpreter of ours the room has had, as this participant's room saw it, by identity (times
    on `time.perf_counter`)."""

    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self.seen: dict[str, Interpreter] = {}
        self.troubles: list[tuple[float, str]] = []  # our own participants' connection lost or resumed
        room.on("participant_connected", self._connected)
        room.on("participant_disconnected", self._disconnected)
        room.on("participant_attributes_changed", self._changed)
        self._wall_offset = time.time() - time.perf_counter()

    def follow(self, who: str, room: rtc.Room) -> None:
        """Note when one of the room's own participants (`who`) loses its connection: on a machine too busy
        to keep it, what that participant saw or said no longer tells what the interpreter did."""
        for event in ("reconnecting", "disconnected"):
            room.on(event, lambda *_, e=event: self.troubles.append((time.perf_counter(), f"{who} {e}")))

    def scan(self) -> None:
        """The interpreters already in the room (once connected): their join time as the server has it."""
        for participant in self.room.remote_participants.values():
            self._connected(participant)

    def _connected(self, participant: rtc.RemoteParticipant) -> None:
        if not ours(participant) or participant.identity in self.seen:
            return
        now = time.perf_counter()
        joined = participant.joined_at  # the server's (ms): for one already there when we connected
        at = now if joined is None else joined.timestamp() - self._wall_offset
        if not now - 60.0 < at <= now:  # not a time the server could have meant: when we saw it
            at = now
        self.seen[participant.identity] = Interpreter(participant.identity, joined=at)
        self._apply(participant.attributes, participant, now)

    def _disconnected(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity in self.seen:
            self.seen[participant.identity].left = time.perf_counter()

    def _changed(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if participant.identity in self.seen:
            self._apply(changed, participant, time.perf_counter())

    def _apply(self, changed: dict[str, str], participant: rtc.Participant, at: float) -> None:
        seen = self.seen[participant.identity]
        if ATTRIBUTE_AGENT_STATE in changed:
            seen.states.append((at, changed[ATTRIBUTE_AGENT_STATE]))
        if ATTR_ALIVE in changed:
            seen.alive.append(at)
        if ATTR_STANDBY in changed:
            seen.standby.append((at, changed[ATTR_STANDBY] == "true"))
        if changed.get(ATTR_DRAINING) == "true" and seen.draining is None:
            seen.draining = at
        if ATTR_HANDOVER_FROM in changed:
            seen.handover_from = changed[ATTR_HANDOVER_FROM]


def ours(participant: rtc.Participant) -> bool:
    """An interpreter of ours: an agent participant with our agent name (issue 20's contract)."""
    return bool(
        participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        and participant.attributes.get(ATTRIBUTE_AGENT_NAME) == AGENT_NAME
    )


def caption_id(text: str) -> int | None:
    """The utterance id the fake STT puts first in each transcript (the fake LLM keeps it)."""
    first = text.split(maxsplit=1)[0].strip(".,") if text.strip() else ""
    return int(first) if first.isdigit() else None


def pieces(room: BenchRoom, *, translated: bool, t0: float) -> list[Piece]:
    """The captions the listener received, by the id in their text: each final source caption when it
    arrived (its segment id is not enough: two interpreters number a speaker's segments alike); each
    translation when its first caption (interim or final) arrived from its interpreter."""
    first: dict[tuple[str, str], float] = {}
    out = []
    for c in room.listener.captions:
        if c.translated != translated or (translated and c.attributes.get("language") != TARGET):
            continue
        key = (c.sender, c.segment_id)
        first.setdefault(key, c.at)
        if c.final and (number := caption_id(c.text)) is not None:
            out.append(Piece(number, (first[key] if translated else c.at) - t0, c.sender, len(c.text)))
    return sorted(out, key=lambda p: p.at)


def loud_spans(frames: list[tuple[float, np.ndarray]], t0: float) -> list[tuple[float, float]]:
    """When the listener heard sound: each loud frame from its start to its arrival (every track at once),
    frames that arrived within FRAME_JITTER_S of one another joined."""
    spans: list[tuple[float, float]] = []
    for arrived, samples in sorted(frames, key=lambda f: f[0]):
        if len(samples) and float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) > LOUD_RMS:
            start, end = arrived - len(samples) / LISTEN_RATE - t0, arrived - t0
            if spans and start <= spans[-1][1] + FRAME_JITTER_S:
                spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            else:
                spans.append((start, end))
    return spans


def room_record(
    room: BenchRoom, watch: Watch, timeline: Timeline, requested_at: float, t0: float, ended: float
) -> RoomRecord:
    """The room's record, its times from `t0` (the scenario's start); the sentences the speaker finished."""
    sent = room.speaker.sent
    said = len(sent) * FRAME_S
    finished = [s for s in timeline.sentences if sent and s.end <= said]
    sentences = [(room.speaker.sent_at(s.start) - t0, room.speaker.sent_at(s.end) - t0) for s in finished]
    interpreters = []
    for seen in watch.seen.values():
        interpreters.append(
            Interpreter(
                seen.identity,
                seen.joined - t0,
                None if seen.left is None else seen.left - t0,
                [(t - t0, s) for t, s in seen.states],
                [t - t0 for t in seen.alive],
                [(t - t0, b) for t, b in seen.standby],
                None if seen.draining is None else seen.draining - t0,
                seen.handover_from,
            )
        )
    return RoomRecord(
        name=room.name,
        troubles=[(t - t0, what) for t, what in watch.troubles],
        speaker_behind_s=max((at - sent[0] - i * FRAME_S for i, at in enumerate(sent)), default=0.0),
        requested_at=requested_at - t0,
        interpreters=sorted(interpreters, key=lambda i: i.joined),
        sentences=sentences,
        lengths=[s.end - s.start for s in finished],
        source=pieces(room, translated=False, t0=t0),
        translated=pieces(room, translated=True, t0=t0),
        loud=loud_spans(room.listener.heard.get(TRACK, []), t0),
        ended=ended - t0,
    )
