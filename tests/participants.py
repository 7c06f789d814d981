"""Real room participants (the `livekit` rtc SDK) for the real-room tests and `python -m bench room`: a
speaker who says a WAV into a microphone track, a listener who records an interpretation track and the
`lk.transcription` captions as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import numpy as np
from livekit import rtc
from livekit.agents.types import (
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    TOPIC_TRANSCRIPTION,
)

from agent.room.room_io import ATTR_SPEAKER
from agent.run.filemode import Pcm, paced_frames

LISTEN_RATE = 24000


@dataclass(frozen=True)
class ReceivedCaption:
    text: str
    attributes: dict[str, str]
    sender: str  # the identity the stream arrived from
    at: float  # time.perf_counter() when it was read to its end

    @property
    def final(self) -> bool:
        return self.attributes.get(ATTRIBUTE_TRANSCRIPTION_FINAL) == "true"

    @property
    def translated(self) -> bool:
        return ATTR_SPEAKER in self.attributes

    @property
    def segment_id(self) -> str:
        return self.attributes.get(ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID, "")


class Participant:
    """One connection to the room. Records every caption it receives, in arrival order."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.room = rtc.Room()
        self.captions: list[ReceivedCaption] = []
        self.agent_changes: list[dict[str, str]] = []  # the interpreter's attribute changes, as they arrived
        self._tasks: set[asyncio.Task[None]] = set()
        self.room.register_text_stream_handler(TOPIC_TRANSCRIPTION, self._on_caption)
        self.room.on("participant_attributes_changed", self._on_attributes)

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if participant is self.agent():
            self.agent_changes.append(dict(changed))

    def agent_values(self, key: str) -> list[str]:
        """Every value the interpreter's attribute `key` took while this participant watched."""
        return [changed[key] for changed in self.agent_changes if key in changed]

    async def connect(self, url: str, token: str, *, auto_subscribe: bool = True) -> None:
        await self.room.connect(url, token, rtc.RoomOptions(auto_subscribe=auto_subscribe))

    def _on_caption(self, reader: rtc.TextStreamReader, sender: str) -> None:
        task = asyncio.create_task(self._read_caption(reader, sender))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_caption(self, reader: rtc.TextStreamReader, sender: str) -> None:
        try:
            text = await reader.read_all()
        except rtc.StreamError:  # cut off (the room closed, or the sender left, mid-stream): not received
            return
        attributes = dict(reader.info.attributes or {})
        self.captions.append(ReceivedCaption(text, attributes, sender, time.perf_counter()))

    def final_captions(
        self, *, translated: bool | None = None, language: str | None = None
    ) -> list[ReceivedCaption]:
        return [
            c
            for c in self.captions
            if c.final
            and (translated is None or c.translated == translated)
            and (language is None or c.attributes.get("language") == language)
        ]

    def agent(self) -> rtc.RemoteParticipant | None:
        return next(
            (
                p
                for p in self.room.remote_participants.values()
                if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and p.identity.startswith("agent-")
            ),
            None,
        )

    def agent_attribute(self, key: str) -> str | None:
        agent = self.agent()
        return None if agent is None else agent.attributes.get(key)

    def agent_tracks(self) -> dict[str, str]:
        """The agent's published tracks: name → sid."""
        agent = self.agent()
        if agent is None:
            return {}
        return {pub.name: sid for sid, pub in agent.track_publications.items()}

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.room.disconnect()


class Listener(Participant):
    """Records what it hears of the interpretation tracks it subscribes to: (arrival time, samples)."""

    def __init__(self, identity: str) -> None:
        super().__init__(identity)
        self.heard: dict[str, list[tuple[float, np.ndarray]]] = {}  # track name → frames
        self.room.on("track_subscribed", self._on_track)

    def _on_track(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO or not publication.name.startswith("interpretation-"):
            return
        frames = self.heard.setdefault(publication.name, [])
        task = asyncio.create_task(self._record(track, frames))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, track: rtc.Track, frames: list[tuple[float, np.ndarray]]) -> None:
        stream = rtc.AudioStream.from_track(track=track, sample_rate=LISTEN_RATE, num_channels=1)
        try:
            async for event in stream:
                frames.append((time.perf_counter(), np.frombuffer(event.frame.data, np.int16).copy()))
        finally:
            await stream.aclose()

    def audio(self, track: str) -> np.ndarray:
        frames = self.heard.get(track, [])
        return np.concatenate([s for _, s in frames]) if frames else np.zeros(0, np.int16)


class Speaker(Listener):
    """Says WAVs into a microphone track, in real time (and, like everyone in a meeting, listens)."""

    def __init__(self, identity: str, sample_rate: int = 16000) -> None:
        super().__init__(identity)
        self.source = rtc.AudioSource(sample_rate, 1, queue_size_ms=100)
        self.track = rtc.LocalAudioTrack.create_audio_track("microphone", self.source)
        self.publication: rtc.LocalTrackPublication | None = None
        self._speaking: asyncio.Task[None] | None = None

    async def publish(self) -> rtc.LocalTrackPublication:
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        self.publication = await self.room.local_participant.publish_track(self.track, options)
        return self.publication

    async def unpublish(self) -> None:
        assert self.publication is not None
        await self.room.local_participant.unpublish_track(self.publication.sid)
        self.publication = None

    def say(self, pcm: Pcm) -> asyncio.Task[None]:
        """Start saying `pcm` (after what is being said now); the task ends when it has been said."""
        if pcm.sample_rate != self.source.sample_rate:
            raise ValueError(f"speech at {pcm.sample_rate} Hz into a {self.source.sample_rate} Hz microphone")
        previous = self._speaking

        async def speak() -> None:
            if previous is not None:
                await previous
            async for frame in paced_frames(pcm):
                await self.source.capture_frame(frame)

        self._speaking = asyncio.create_task(speak())
        return self._speaking

    async def aclose(self) -> None:
        if self._speaking is not None:
            self._speaking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaking
        await super().aclose()
        await self.source.aclose()
