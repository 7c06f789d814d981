"""A small fake of the LiveKit room surface the interpreter uses, for fast tests of what a real room
cannot set up (provider outages, precise speech timing); the room itself is tested against a real LiveKit
server (tests/test_real_room.py).

Events carry the same names and arguments as `rtc.Room`'s. Participants publish real local
`rtc.LocalAudioTrack`s, so the interpreter reads real audio from them; what the interpreter
publishes (tracks, text streams, attributes) is recorded for the tests.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc

_sids = itertools.count(1)


@dataclass
class FakePublication:
    track: rtc.Track | None
    kind: rtc.TrackKind.ValueType = rtc.TrackKind.KIND_AUDIO
    source: rtc.TrackSource.ValueType = rtc.TrackSource.SOURCE_MICROPHONE
    muted: bool = False
    sid: str = field(default_factory=lambda: f"TR_{next(_sids)}")
    name: str = "microphone"


@dataclass
class FakeParticipant:
    identity: str
    kind: rtc.ParticipantKind.ValueType = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
    attributes: dict[str, str] = field(default_factory=dict)
    track_publications: dict[str, FakePublication] = field(default_factory=dict)
    name: str = ""
    joined_at: datetime.datetime | None = None


@dataclass
class SentText:
    text: str
    topic: str
    attributes: dict[str, str]
    sender_identity: str


class FakeTextWriter:
    def __init__(self, log: list[SentText], topic: str, attributes: dict[str, str], sender: str) -> None:
        self._log, self._topic, self._attributes, self._sender = log, topic, attributes, sender
        self._parts: list[str] = []

    async def write(self, text: str) -> None:
        self._parts.append(text)

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        self._log.append(SentText("".join(self._parts), self._topic, self._attributes, self._sender))


class FakeLocalParticipant:
    kind = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    joined_at: datetime.datetime | None = None

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.unanswered = asyncio.Event()  # set when the room closed: calls to it are never answered
        self.attributes: dict[str, str] = {}
        self.attribute_log: list[dict[str, str]] = []  # every set_attributes call, in order
        self.published: dict[str, rtc.LocalAudioTrack] = {}  # track name -> track, while published
        self.publish_log: list[tuple[str, str]] = []  # ("publish" | "unpublish", track name)
        self.texts: list[SentText] = []
        self.track_publications: dict[str, FakePublication] = {}

    async def publish_track(self, track: rtc.LocalAudioTrack, options: Any = None) -> FakePublication:
        await self._answer()
        publication = FakePublication(track=track, name=track.name)
        self.track_publications[publication.sid] = publication
        self.published[track.name] = track
        self.publish_log.append(("publish", track.name))
        return publication

    async def unpublish_track(self, track_sid: str) -> None:
        await self._answer()
        publication = self.track_publications.pop(track_sid)
        self.published.pop(publication.name, None)
        self.publish_log.append(("unpublish", publication.name))

    async def _answer(self) -> None:
        if self.unanswered.is_set():  # as the rtc SDK does with a room that closed (seen: unpublish_track)
            await asyncio.Event().wait()

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        await self._answer()
        self.attribute_log.append(dict(attributes))
        self.attributes.update(attributes)
        for key, value in attributes.items():
            if value == "":  # as LiveKit does: an attribute set to "" is deleted
                del self.attributes[key]

    async def stream_text(
        self,
        *,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        sender_identity: str | None = None,
        **_: Any,
    ) -> FakeTextWriter:
        await self._answer()
        return FakeTextWriter(self.texts, topic, dict(attributes or {}), sender_identity or self.identity)


class FakeRoom(rtc.EventEmitter[str]):
    def __init__(self, name: str = "room", *, metadata: str = "") -> None:
        super().__init__()
        self.name = name
        self.metadata = metadata
        self.local_participant = FakeLocalParticipant("agent-interpreter")
        self.remote_participants: dict[str, FakeParticipant] = {}
        self.connected = True

    def isconnected(self) -> bool:
        return self.connected

    # -- driving the room from a test ------------------------------------------------------------

    def join(
        self,
        identity: str,
        *,
        attributes: dict[str, str] | None = None,
        agent: bool = False,
        joined_at: datetime.datetime | None = None,
        name: str = "",
    ) -> FakeParticipant:
        kind = (
            rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
            if agent
            else rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
        )
        participant = FakeParticipant(
            identity, kind=kind, attributes=dict(attributes or {}), joined_at=joined_at, name=name
        )
        self.remote_participants[identity] = participant
        self.emit("participant_connected", participant)
        return participant

    def publish_audio(self, participant: FakeParticipant, track: rtc.Track) -> FakePublication:
        publication = FakePublication(track=track)
        participant.track_publications[publication.sid] = publication
        self.emit("track_published", publication, participant)
        self.emit("track_subscribed", track, publication, participant)
        return publication

    def unpublish(self, participant: FakeParticipant, publication: FakePublication) -> None:
        participant.track_publications.pop(publication.sid, None)
        self.emit("track_unsubscribed", publication.track, publication, participant)
        self.emit("track_unpublished", publication, participant)

    def mute(self, participant: FakeParticipant, publication: FakePublication, muted: bool = True) -> None:
        publication.muted = muted
        self.emit("track_muted" if muted else "track_unmuted", participant, publication)

    def set_attributes(self, participant: FakeParticipant, **changed: str) -> None:
        participant.attributes.update(changed)
        self.emit("participant_attributes_changed", dict(changed), participant)

    def rename(self, participant: FakeParticipant, name: str) -> None:
        old, participant.name = participant.name, name
        self.emit("participant_name_changed", participant, old, name)

    def set_metadata(self, metadata: str) -> None:
        old, self.metadata = self.metadata, metadata
        self.emit("room_metadata_changed", old, metadata)

    async def close(self, *, disconnect_after_s: float = 0.0) -> None:
        """The room is deleted: from now on calls to it are never answered; everyone else leaves, and
        `disconnect_after_s` later the agent is disconnected (a real server's events come in either order)."""
        self.local_participant.unanswered.set()
        for participant in list(self.remote_participants.values()):
            self.leave(participant)
        await asyncio.sleep(disconnect_after_s)
        self.connected = False
        self.emit("disconnected", rtc.DisconnectReason.ROOM_DELETED)

    def leave(self, participant: FakeParticipant) -> None:
        for publication in list(participant.track_publications.values()):
            self.unpublish(participant, publication)
        del self.remote_participants[participant.identity]
        self.emit("participant_disconnected", participant)
