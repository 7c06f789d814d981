"""The thin room-facing layer: speaker audio in; captions and agent attributes out, in order.

The room contract (documented in the README):
- read from participants: `language` (what they speak, and hear unless they say otherwise) and
  `interpret_to` (comma-separated languages they want to hear);
- written on the agent: `lk.agent.state`, `interpreter.languages`, `interpreter.warnings`;
- captions on `lk.transcription` text streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from livekit import rtc
from livekit.agents.types import (
    ATTRIBUTE_AGENT_STATE,
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    ATTRIBUTE_TRANSCRIPTION_TRACK_ID,
    TOPIC_TRANSCRIPTION,
)

from .captions import Caption

logger = logging.getLogger("agent.room")

STT_SAMPLE_RATE = 16000
ATTR_LANGUAGE = "language"
ATTR_INTERPRET_TO = "interpret_to"
ATTR_LANGUAGES = "interpreter.languages"
ATTR_WARNINGS = "interpreter.warnings"
ATTR_FAULTS = "interpreter.faults"  # providers failing right now: "llm", "stt", "tts" (comma-separated)
ATTR_SPEAKER = "interpreter.speaker"
GONE_GRACE_S = 1.0


T = TypeVar("T")


async def unless_gone(call: Awaitable[T], gone: asyncio.Event) -> T | None:
    """Await a call to the room, or give it up (None) once the room is gone: a call made as the room
    closes may never be answered (the rtc SDK's `unpublish_track` then waits forever)."""
    if gone.is_set():
        if asyncio.iscoroutine(call):
            call.close()
        return None
    task = asyncio.ensure_future(call)
    waiter = asyncio.ensure_future(gone.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    if task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None
    return task.result()


def track_name(language: str) -> str:
    """The published interpretation track of a language: stable, so front ends can find it."""
    return f"interpretation-{language}"


def is_speaker(participant: Any) -> bool:
    """Humans (and SIP callers) are interpreted; agents, this one included, never are."""
    return bool(participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)


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


class LocalParticipantLike(Protocol):
    identity: str

    async def set_attributes(self, attributes: dict[str, str]) -> None: ...

    async def stream_text(self, **kwargs: Any) -> Any: ...


class RoomPublisher:
    """Sends captions and attribute updates one at a time, in the order they were made.

    Callers never wait on the network. Captions follow LiveKit's transcription conventions: one text
    stream per update, the same `lk.segment_id` for a segment's interim and final versions. Once the room
    is gone (`room_gone`), nothing more is sent: what is queued or being sent is dropped.
    """

    def __init__(self, participant: LocalParticipantLike) -> None:
        self._participant = participant
        self._queue: asyncio.Queue[Callable[[], Awaitable[None]] | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="room-publisher")
        self.speaker_tracks: dict[str, str] = {}  # speaker identity → their audio track sid
        self.language_tracks: dict[str, str] = {}  # target language → interpretation track sid
        self._attributes: dict[str, str] = {}
        self.gone = asyncio.Event()  # the room closed (or the agent was disconnected for good)
        self._closed = False

    def room_gone(self) -> None:
        self.gone.set()
        self._task.cancel()  # a call to a room that closed may never be answered

    def publish(self, caption: Caption) -> None:
        self._queue.put_nowait(lambda: self._send_caption(caption))

    def set_attributes(self, **attributes: str) -> None:
        # LiveKit deletes an attribute set to "": an attribute never set is already ""
        changed = {k: v for k, v in attributes.items() if self._attributes.get(k, "") != v}
        if not changed:
            return
        self._attributes.update(changed)
        self._queue.put_nowait(lambda: self._participant.set_attributes(changed))

    def set_state(self, state: str) -> None:
        self.set_attributes(**{ATTRIBUTE_AGENT_STATE: state})

    def set_warnings(self, warnings: list[str]) -> None:
        self.set_attributes(**{ATTR_WARNINGS: json.dumps(warnings) if warnings else ""})

    async def _send_caption(self, caption: Caption) -> None:
        attributes = {
            ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID: caption.segment_id,
            ATTRIBUTE_TRANSCRIPTION_FINAL: "true" if caption.final else "false",
            ATTR_LANGUAGE: caption.language,
        }
        if caption.translated:
            track_id = self.language_tracks.get(caption.language)
            attributes[ATTR_SPEAKER] = caption.speaker
            sender = None  # the interpretation is the agent's own speech
        else:
            track_id = self.speaker_tracks.get(caption.speaker)
            sender = caption.speaker  # the source caption is attributed to the speaker
        if track_id:
            attributes[ATTRIBUTE_TRANSCRIPTION_TRACK_ID] = track_id
        kwargs: dict[str, Any] = {"topic": TOPIC_TRANSCRIPTION, "attributes": attributes}
        if sender:
            kwargs["sender_identity"] = sender
        writer = await self._participant.stream_text(**kwargs)
        await writer.write(caption.text)
        await writer.aclose()

    async def _run(self) -> None:
        while (job := await self._queue.get()) is not None:
            try:
                await job()
            except Exception as e:
                # a room being closed fails what is being sent a moment before it reports itself gone
                # (`room_gone` then cancels this task): only a failure in a room that stays is a problem
                await asyncio.sleep(GONE_GRACE_S)
                logger.warning("could not publish to the room", extra={"error": type(e).__name__})

    async def aclose(self) -> None:
        """Send what is queued (unless the room is gone), then stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        await asyncio.wait({self._task})  # it ends by itself, or was cancelled when the room went
        if self.gone.is_set() and (dropped := self._queue.qsize() - 1):
            logger.info("the room closed: %d captions and updates were not sent", dropped)
