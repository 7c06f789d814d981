"""The room publisher behind a slow data channel: its backlog stays bounded, superseded interim captions
are coalesced (the newest version of a segment replaces the one still waiting), every final is kept up to
the bound, and what was not sent is counted and logged as counts, never as text."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from livekit.agents.types import ATTRIBUTE_TRANSCRIPTION_FINAL, ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID
from prometheus_client import REGISTRY

from agent.loops.captions import Caption
from agent.room.room_io import RoomPublisher, unless_gone
from tests.loopback import eventually

SECRET_WORDS = "the launch date is the ninth"


class SlowWriter:
    def __init__(self, channel: SlowChannel, attributes: dict[str, str]) -> None:
        self._channel, self._attributes = channel, attributes
        self._parts: list[str] = []

    async def write(self, text: str) -> None:
        self._parts.append(text)

    async def aclose(self) -> None:
        self._channel.sent.append((self._attributes, "".join(self._parts)))


class SlowChannel:
    """The agent's local participant behind a data channel that sends nothing until `release()`: every
    call waits on the gate (the publisher's first caption is then in flight and the rest wait)."""

    identity = "agent-interpreter"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls = 0  # calls started (the first one blocks the publisher)
        self.sent: list[tuple[dict[str, str], str]] = []
        self.attributes: list[dict[str, str]] = []

    def release(self) -> None:
        self.gate.set()

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.calls += 1
        await self.gate.wait()
        self.attributes.append(dict(attributes))

    async def stream_text(self, **kwargs: Any) -> SlowWriter:
        self.calls += 1
        await self.gate.wait()
        return SlowWriter(self, dict(kwargs["attributes"]))

    def captions(self) -> list[tuple[str, bool, str]]:
        return [
            (a[ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID], a[ATTRIBUTE_TRANSCRIPTION_FINAL] == "true", text)
            for a, text in self.sent
        ]


def caption(segment: str, text: str, *, final: bool = False) -> Caption:
    return Caption(
        segment_id=segment, speaker="alice", language="en", text=text, final=final, translated=False
    )


def not_sent(reason: str) -> float:
    return REGISTRY.get_sample_value("interpreter_captions_not_sent_total", {"reason": reason}) or 0.0


async def test_interim_captions_waiting_behind_a_slow_channel_are_coalesced_and_every_final_is_sent(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.DEBUG)
    channel = SlowChannel()
    publisher = RoomPublisher(channel)
    superseded_before = not_sent("superseded")
    publisher.publish(caption("alice-0", "one"))
    await eventually(lambda: channel.calls == 1, what="the first caption in flight")
    words = SECRET_WORDS.split()
    for i in range(1, 40):  # the speaker goes on: interims of segment 0, then of segment 1
        publisher.publish(caption("alice-0", " ".join(words[: i % len(words) + 1]) + f" {i}"))
    publisher.publish(caption("alice-1", "two"))
    publisher.set_state("speaking")
    publisher.publish(caption("alice-0", "one final", final=True))
    for i in range(20):
        publisher.publish(caption("alice-1", f"two {i}"))
    publisher.publish(caption("alice-1", "two final", final=True))
    publisher.publish(caption("alice-2", "three"))
    assert publisher.pending == 4  # segment 0, segment 1, the state, segment 2: one waiting entry each

    channel.release()
    await publisher.aclose()
    assert channel.captions() == [
        ("alice-0", False, "one"),  # in flight when the channel stalled
        ("alice-0", True, "one final"),  # every interim of it was superseded before it could be sent
        ("alice-1", True, "two final"),
        ("alice-2", False, "three"),
    ]
    assert channel.attributes == [{"lk.agent.state": "speaking"}]
    assert publisher.superseded == 39 + 1 + 20  # interims of segment 0 and 1 replaced by newer versions
    assert publisher.dropped == 0
    assert not_sent("superseded") - superseded_before == 60
    records = [r for r in caplog.records if r.name == "agent.room"]
    assert any(getattr(r, "superseded", None) == 60 for r in records), [r.getMessage() for r in records]
    for record in records:
        assert SECRET_WORDS.split()[1] not in record.getMessage() + repr(record.__dict__)


async def test_a_backlog_of_finals_is_bounded_and_the_oldest_are_dropped_and_counted(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO)
    channel = SlowChannel()
    publisher = RoomPublisher(channel, max_pending=5)
    dropped_before = not_sent("backlog")
    publisher.publish(caption("alice-0", "zero", final=True))
    await eventually(lambda: channel.calls == 1, what="the first caption in flight")
    publisher.publish(caption("bob-0", "one"))  # an interim: dropped before any final is
    for n in range(1, 11):
        publisher.publish(caption(f"alice-{n}", f"{SECRET_WORDS} {n}", final=True))
        assert publisher.pending <= 5
    publisher.set_state("speaking")  # attribute updates are never dropped...
    publisher.set_state("listening")  # ...but coalesced: the latest value wins
    assert publisher.pending == 6

    channel.release()
    await publisher.aclose()
    assert [segment for segment, _, _ in channel.captions()] == [
        "alice-0",
        *(f"alice-{n}" for n in range(6, 11)),
    ]
    assert all(final for _, final, _ in channel.captions())
    assert channel.attributes == [{"lk.agent.state": "listening"}]
    assert publisher.dropped == 6  # the interim and the five oldest finals
    assert not_sent("backlog") - dropped_before == 6
    warnings = [r for r in caplog.records if r.name == "agent.room" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "caption backlog" in warnings[0].getMessage()  # once per backlog
    for record in caplog.records:
        assert SECRET_WORDS not in record.getMessage() + repr(record.__dict__)


async def test_a_room_gone_drops_what_waits(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    channel = SlowChannel()
    publisher = RoomPublisher(channel)
    publisher.publish(caption("alice-0", "zero", final=True))
    await eventually(lambda: channel.calls == 1, what="the first caption in flight")
    publisher.publish(caption("alice-1", "one", final=True))
    publisher.room_gone()
    await asyncio.wait_for(publisher.aclose(), 10)  # a guard against hanging, not a timing
    assert channel.sent == []
    assert any("were not sent" in r.getMessage() for r in caplog.records)


async def test_a_call_to_the_room_is_given_up_when_the_room_goes_meanwhile() -> None:
    """`unless_gone`: the room goes while a call to it waits for an answer (a track being published as the
    room closes, or as the interpreter leaves): None, and the call is cancelled, not left pending."""
    gone = asyncio.Event()
    cancelled = asyncio.Event()

    async def never_answered() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "published"

    asyncio.get_running_loop().call_later(0.05, gone.set)
    assert await unless_gone(never_answered(), gone) is None
    assert cancelled.is_set()
    assert await unless_gone(asyncio.sleep(0, "answered"), asyncio.Event()) == "answered"
