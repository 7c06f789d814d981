"""The thin room-facing layer: speaker audio in, captions out. Everything behind it runs without a room."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from livekit import rtc
from livekit.agents.types import (
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    TOPIC_TRANSCRIPTION,
)

from .captions import Caption

logger = logging.getLogger("agent.room")

STT_SAMPLE_RATE = 16000


def is_speaker(participant: rtc.RemoteParticipant) -> bool:
    """Humans (and SIP callers) are interpreted; agents, this one included, never are."""
    return participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


async def track_frames(track: rtc.Track) -> AsyncIterator[rtc.AudioFrame]:
    """A subscribed audio track as 20 ms mono frames at the STT's rate; ends with the track."""
    stream = rtc.AudioStream.from_track(
        track=track, sample_rate=STT_SAMPLE_RATE, num_channels=1, frame_size_ms=20
    )
    try:
        async for event in stream:
            yield event.frame
    finally:
        await stream.aclose()


async def wait_for_speaker_track(room: rtc.Room) -> tuple[rtc.RemoteParticipant, rtc.Track]:
    """The first subscribed audio track of a participant who is not an agent."""
    for participant in room.remote_participants.values():
        if not is_speaker(participant):
            continue
        for publication in participant.track_publications.values():
            if publication.kind == rtc.TrackKind.KIND_AUDIO and publication.track is not None:
                return participant, publication.track
    found: asyncio.Future[tuple[rtc.RemoteParticipant, rtc.Track]] = (
        asyncio.get_running_loop().create_future()
    )

    def on_subscribed(
        track: rtc.Track, _pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and is_speaker(participant) and not found.done():
            found.set_result((participant, track))

    room.on("track_subscribed", on_subscribed)
    try:
        return await found
    finally:
        room.off("track_subscribed", on_subscribed)


class RoomCaptions:
    """Publishes captions on `lk.transcription` text streams, following LiveKit's conventions."""

    def __init__(self, participant: rtc.LocalParticipant, *, track_ids: dict[str, str] | None = None) -> None:
        self._participant = participant
        self._track_ids = track_ids or {}  # speaker identity → their audio track sid
        self._tasks: set[asyncio.Task[None]] = set()

    def publish(self, caption: Caption) -> None:
        task = asyncio.create_task(self._send(caption))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, caption: Caption) -> None:
        attributes = {
            ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID: caption.segment_id,
            ATTRIBUTE_TRANSCRIPTION_FINAL: "true" if caption.final else "false",
            "language": caption.language,
            "lk.translated": "true" if caption.translated else "false",
            "speaker": caption.speaker,
        }
        if track_id := self._track_ids.get(caption.speaker):
            attributes["lk.transcribed_track_id"] = track_id
        try:
            await self._participant.send_text(caption.text, topic=TOPIC_TRANSCRIPTION, attributes=attributes)
        except Exception as e:
            logger.warning(
                "could not publish a caption", extra={"segment_id": caption.segment_id, "error": str(e)}
            )

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
