"""The thin room-facing layer: speaker audio in; captions and agent attributes out, in order.

The room contract (docs/room-contract.md):
- read from participants: `language` (what they speak, and hear unless they say otherwise) and
  `interpret_to` (comma-separated languages they want to hear);
- written on the agent: `lk.agent.state`, `interpreter.languages`, `interpreter.warnings`,
  `interpreter.faults`, and its presence (`interpreter.alive`, agent/room/presence.py);
- captions on `lk.transcription` text streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from livekit import rtc
from livekit.agents.types import (
    ATTRIBUTE_AGENT_STATE,
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    ATTRIBUTE_TRANSCRIPTION_TRACK_ID,
    TOPIC_TRANSCRIPTION,
)

from agent.language.codes import base_language
from agent.loops.captions import Caption
from agent.telemetry import metrics

logger = logging.getLogger("agent.room")

STT_SAMPLE_RATE = 16000
ATTR_LANGUAGE = "language"
ATTR_INTERPRET_TO = "interpret_to"
# a listener's: the language(s) of the interpretation tracks it is subscribed to and plays ("none": none)
ATTR_LISTENING_TO = "listening_to"
NOT_LISTENING = (
    "none"  # `listening_to` while it plays no interpretation (LiveKit deletes an attribute set to "")
)
ATTR_LANGUAGES = "interpreter.languages"
ATTR_WARNINGS = "interpreter.warnings"
ATTR_FAULTS = "interpreter.faults"  # providers failing right now: "llm", "stt", "tts" (comma-separated)
ATTR_SPEAKER = "interpreter.speaker"
ATTR_SPEAKER_NAME = "interpreter.speaker_name"  # on captions: the speaker's name as first seen (names.py)
# presence (agent/room/presence.py): when its worker accepted the job (unix ms, set through `accept`, so
# it is there when the agent joins) and its heartbeat (unix ms, every HEARTBEAT_S); a deploy mid-meeting
# (docs/architecture.md, "Handing a room over"): the issue-20 contract's names
ATTR_STARTED_AT = "interpreter.started_at"
ATTR_ALIVE = "interpreter.alive"
ATTR_DRAINING = "interpreter.draining"  # "true": its worker shuts down; it hands the room over
ATTR_CUT_AT = "interpreter.cut_at"  # JSON {speaker identity: unix ms}: where the one handing over stops
ATTR_HANDOVER_FROM = "interpreter.handover_from"  # set on the one taking over: the other's identity
# while the room's budget for this hour is spent: when interpreting resumes (unix ms); absent otherwise
ATTR_BUDGET_REACHED = "interpreter.budget_reached"
ATTR_STANDBY = "interpreter.standby"  # "true" while the one taking over listens, interpreting nothing yet
ATTR_SENTENCE = "interpreter.sentence"  # on captions: the sentence a piece belongs to (docs/room-contract.md)
GONE_GRACE_S = 1.0
# captions waiting behind a slow data channel before the oldest are dropped (interims first)
MAX_PENDING_CAPTIONS = 1000


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
            # a cancelled task is done only once it ran again: wait for that (a coroutine waiting for an
            # answer ends at once), so that it is never left pending nor asked for a result it lacks
            await asyncio.wait({task})
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    if task.cancelled():
        return None
    return task.result()


def track_name(language: str) -> str:
    """The published interpretation track of a language: stable, so front ends can find it; named by the
    base language ("pt-BR" -> `interpretation-pt`), as front ends know languages."""
    return f"interpretation-{base_language(language)}"


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


@dataclass(eq=False)
class _Waiting:
    """One update waiting to be sent: a caption (replaced in place by a newer version of its segment) or
    attribute changes (merged with the changes made right after them)."""

    caption: Caption | None = None
    attributes: dict[str, str] | None = None


class RoomPublisher:
    """Sends captions and attribute updates one at a time, in the order they were made.

    Callers never wait on the network. Captions follow LiveKit's transcription conventions: one text
    stream per update, the same `lk.segment_id` for a segment's interim and final versions. Once the room
    is gone (`room_gone`), nothing more is sent: what is queued or being sent is dropped.

    Behind a slow data channel the backlog stays bounded: a caption still waiting is replaced in place by a
    newer version of its segment (an interim by the next interim or the final: only the newest is worth
    reading), attribute changes made back to back are merged (the latest value wins), and past
    `max_pending` waiting captions the oldest interim is dropped, else the oldest final: every final is
    sent unless the channel falls that far behind. What was not sent is counted (`superseded`,
    `dropped`, and the `interpreter_captions_not_sent_total` metric) and logged as counts.
    """

    def __init__(self, participant: LocalParticipantLike, *, max_pending: int = MAX_PENDING_CAPTIONS) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._participant = participant
        self._max_pending = max_pending
        self._waiting: deque[_Waiting] = deque()
        self._by_segment: dict[tuple[str, str, bool], _Waiting] = {}  # a segment's caption still waiting
        self._captions_waiting = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="room-publisher")
        self.speaker_tracks: dict[str, str] = {}  # speaker identity → their audio track sid
        self.speaker_names: Mapping[str, str] = {}  # speaker identity → the name their captions carry
        self.language_tracks: dict[str, str] = {}  # target language → interpretation track sid
        self._attributes: dict[str, str] = {}
        self.gone = asyncio.Event()  # the room closed (or the agent was disconnected for good)
        self._closed = False
        self.superseded = 0  # captions replaced by a newer version of their segment before being sent
        self.dropped = 0  # captions dropped from a backlog past `max_pending`
        self._backlog = _Backlog()  # what the current backlog did, logged when it clears
        self.said: Callable[[Caption], None] | None = None  # told every translated caption (echo.py)

    @property
    def pending(self) -> int:
        """Updates waiting to be sent (not counting the one being sent)."""
        return len(self._waiting)

    def room_gone(self) -> None:
        self.gone.set()
        self._task.cancel()  # a call to a room that closed may never be answered

    def stop(self) -> None:
        """Send nothing more, and let nothing wait on the room, as if it were gone, though it stays (the
        interpreter leaves it to another one): only what is being sent now still goes."""
        self.gone.set()
        self._wake.set()

    def publish(self, caption: Caption) -> None:
        if caption.translated and self.said is not None:
            self.said(caption)
        key = (caption.segment_id, caption.language, caption.translated)
        waiting = self._by_segment.get(key)
        if waiting is not None and waiting.caption is not None and not waiting.caption.final:
            waiting.caption = caption  # the newer version takes the older one's place in line
            self.superseded += 1
            self._backlog.superseded += 1
            metrics.CAPTIONS_NOT_SENT.labels(reason="superseded").inc()
            return
        waiting = _Waiting(caption=caption)
        self._by_segment[key] = waiting
        self._captions_waiting += 1
        self._enqueue(waiting)
        if self._captions_waiting > self._max_pending:
            self._drop_oldest()

    def set_attributes(self, **attributes: str) -> None:
        # LiveKit deletes an attribute set to "": an attribute never set is already ""
        changed = {k: v for k, v in attributes.items() if self._attributes.get(k, "") != v}
        if not changed:
            return
        self._attributes.update(changed)
        last = self._waiting[-1] if self._waiting else None
        if last is not None and last.attributes is not None:
            last.attributes.update(changed)  # nothing was made between them: merging keeps the order
        else:
            self._enqueue(_Waiting(attributes=changed))

    def set_state(self, state: str) -> None:
        self.set_attributes(**{ATTRIBUTE_AGENT_STATE: state})

    def set_warnings(self, warnings: list[str]) -> None:
        self.set_attributes(**{ATTR_WARNINGS: json.dumps(warnings) if warnings else ""})

    def _enqueue(self, waiting: _Waiting) -> None:
        self._waiting.append(waiting)
        self._wake.set()

    def _drop_oldest(self) -> None:
        captions = [w for w in self._waiting if w.caption is not None]
        victim = next((w for w in captions if w.caption is not None and not w.caption.final), captions[0])
        self._waiting.remove(victim)
        self._forget(victim)
        self.dropped += 1
        metrics.CAPTIONS_NOT_SENT.labels(reason="backlog").inc()
        if not self._backlog.dropped:
            logger.warning(
                "caption backlog: the data channel is too slow; dropping the oldest waiting captions",
                extra={"waiting": self._captions_waiting + 1, "max_pending": self._max_pending},
            )
        self._backlog.dropped += 1

    def _forget(self, waiting: _Waiting) -> None:
        caption = waiting.caption
        if caption is None:
            return
        self._captions_waiting -= 1
        key = (caption.segment_id, caption.language, caption.translated)
        if self._by_segment.get(key) is waiting:
            del self._by_segment[key]

    async def _send(self, waiting: _Waiting) -> None:
        if waiting.caption is not None:
            await self._send_caption(waiting.caption)
        elif waiting.attributes is not None:
            await self._participant.set_attributes(waiting.attributes)

    async def _send_caption(self, caption: Caption) -> None:
        attributes = {
            ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID: caption.segment_id,
            ATTRIBUTE_TRANSCRIPTION_FINAL: "true" if caption.final else "false",
            ATTR_LANGUAGE: base_language(caption.language),  # the form front ends know (codes.py)
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
        if (name := self.speaker_names.get(caption.speaker)) is not None:
            attributes[ATTR_SPEAKER_NAME] = name
        if caption.sentence is not None:
            attributes[ATTR_SENTENCE] = caption.sentence
        kwargs: dict[str, Any] = {"topic": TOPIC_TRANSCRIPTION, "attributes": attributes}
        if sender:
            kwargs["sender_identity"] = sender
        writer = await self._participant.stream_text(**kwargs)
        await writer.write(caption.text)
        await writer.aclose()

    async def _run(self) -> None:
        while not self.gone.is_set():
            if not self._waiting:
                self._backlog_cleared()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            waiting = self._waiting.popleft()
            self._forget(waiting)
            try:
                await self._send(waiting)
            except Exception as e:
                # a room being closed fails what is being sent a moment before it reports itself gone
                # (`room_gone` then cancels this task): only a failure in a room that stays is a problem
                await asyncio.sleep(GONE_GRACE_S)
                logger.warning("could not publish to the room", extra={"error": type(e).__name__})

    def _backlog_cleared(self) -> None:
        backlog, self._backlog = self._backlog, _Backlog()
        if backlog.dropped:
            logger.info(
                "caption backlog cleared",
                extra={"superseded": backlog.superseded, "dropped": backlog.dropped},
            )
        elif backlog.superseded:
            logger.debug(
                "interim captions superseded while waiting", extra={"superseded": backlog.superseded}
            )

    async def aclose(self) -> None:
        """Send what is queued (unless the room is gone), then stop."""
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._wake.set()
        await asyncio.wait({self._task})  # it ends by itself, or was cancelled when the room went
        if self.gone.is_set() and (dropped := len(self._waiting)):
            logger.info("the room closed: %d captions and updates were not sent", dropped)
        if self.superseded or self.dropped:
            logger.info(
                "captions not sent behind a slow data channel",
                extra={"superseded": self.superseded, "dropped": self.dropped},
            )


@dataclass
class _Backlog:
    superseded: int = 0
    dropped: int = 0
