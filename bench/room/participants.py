"""The participants of a benchmark room: a speaker who says synthetic speech into a microphone track in real
time, noting when each frame went, and a listener who records the interpretation track's frames with their
arrival times; a room's pair and its speech (`BenchRoom`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from livekit import rtc

from agent.run.filemode import FRAME_S, Pcm, paced_frames
from bench.harness.speech import RATE
from tests.participants import Listener, Participant

AGENT_NAME = "interpreter"
TARGET = "es"
TRACK = f"interpretation-{TARGET}"


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
    """Subscribes to one interpretation track only (`track`; not the speaker's microphone)."""

    def __init__(self, identity: str, track: str = TRACK) -> None:
        super().__init__(identity)
        self.track = track
        self.room.on("track_published", self._on_published)

    def _on_published(self, publication: rtc.RemoteTrackPublication, _: rtc.RemoteParticipant) -> None:
        if publication.name == self.track:
            publication.set_subscribed(True)

    def subscribe_published(self) -> None:
        """The track, if it was published before this listener joined."""
        for participant in self.room.remote_participants.values():
            for publication in participant.track_publications.values():
                self._on_published(publication, participant)


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
