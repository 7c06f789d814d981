"""Who is ours, who is live, who leaves (agent/room/presence.py), with the clock passed in; and an
interpreter's heartbeat and rival watch on the fake room. Against the real server: tests/test_recovery.py."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from livekit import rtc
from livekit.agents.types import ATTRIBUTE_AGENT_NAME
from livekit.protocol.models import ParticipantInfo

from agent.loops.captions import Caption
from agent.room.presence import (
    STALE_S,
    Member,
    Presence,
    has_people,
    interpreters,
    live_interpreters,
    winning_rival,
)
from agent.room.room_io import ATTR_ALIVE, ATTR_HANDOVER_FROM, ATTR_STARTED_AT, RoomPublisher
from tests.fakes.room import FakeRoom
from tests.loopback import eventually

NAME = "interpreter"
NOW = 1_800_000_000.0  # unix seconds
NOW_MS = int(NOW * 1000)


def interpreter(
    identity: str,
    *,
    started_at: int | None = None,
    alive: int | None = None,
    joined_at: int = NOW_MS - 60_000,
    name: str = NAME,
    handover_from: str | None = None,
) -> Member:
    attrs = {ATTRIBUTE_AGENT_NAME: name}
    if handover_from is not None:
        attrs[ATTR_HANDOVER_FROM] = handover_from
    if started_at is not None:
        attrs[ATTR_STARTED_AT] = str(started_at)
    if alive is not None:
        attrs[ATTR_ALIVE] = str(alive)
    return Member(identity, "agent", attrs, joined_at)


def person(identity: str = "alice") -> Member:
    return Member(identity, "person", {}, NOW_MS - 60_000)


def test_an_interpreter_is_live_while_its_heartbeat_is_fresh_or_it_has_just_joined() -> None:
    assert interpreter("a", alive=NOW_MS - 1000).is_live(NOW)
    assert interpreter("a", alive=NOW_MS - int(STALE_S * 1000)).is_live(NOW)
    assert not interpreter("a", alive=NOW_MS - int(STALE_S * 1000) - 1).is_live(NOW)
    # no heartbeat yet: starting if it joined less than STALE_S ago, gone (an old version, say) if not
    assert interpreter("a", joined_at=NOW_MS - 2000).is_live(NOW)
    assert not interpreter("a", joined_at=NOW_MS - 10_000).is_live(NOW)
    assert not interpreter("a", joined_at=0).is_live(NOW)
    # a heartbeat that stopped wins over a recent join (it beat, then its process died)
    assert not interpreter("a", alive=NOW_MS - 5000, joined_at=NOW_MS - 1000).is_live(NOW)


def test_ours_are_agents_with_our_agent_name() -> None:
    members = [
        interpreter("a", alive=NOW_MS),
        interpreter("b", alive=NOW_MS, name="someone-else"),
        Member("c", "person", {ATTRIBUTE_AGENT_NAME: NAME}),
        person(),
    ]
    assert [m.identity for m in interpreters(members, NAME)] == ["a"]
    assert [m.identity for m in live_interpreters(members, NAME, NOW)] == ["a"]


def test_only_people_make_a_room_worth_interpreting() -> None:
    assert has_people([interpreter("a"), person()])
    assert not has_people([interpreter("a"), Member("other-agent", "agent"), Member("egress", "recorder")])
    assert not has_people([])


def test_of_two_rivals_the_one_started_first_stays_and_the_other_leaves() -> None:
    old = interpreter("agent-b", started_at=NOW_MS - 5000, alive=NOW_MS)
    new = interpreter("agent-a", started_at=NOW_MS - 100, joined_at=NOW_MS - 50)  # starting: live
    room = [old, new, person()]
    assert winning_rival(new, room, NAME, NOW) == old
    assert winning_rival(old, room, NAME, NOW) is None
    # the same moment: the identity decides, the same way on both sides
    twin_a = interpreter("agent-a", started_at=NOW_MS, alive=NOW_MS)
    twin_b = interpreter("agent-b", started_at=NOW_MS, alive=NOW_MS)
    assert winning_rival(twin_b, [twin_a, twin_b], NAME, NOW) == twin_a
    assert winning_rival(twin_a, [twin_a, twin_b], NAME, NOW) is None
    # three: only the first stays
    third = interpreter("agent-c", started_at=NOW_MS - 1000, alive=NOW_MS)
    assert winning_rival(third, [old, new, third], NAME, NOW) == old
    assert winning_rival(new, [old, new, third], NAME, NOW) == old


def test_a_stale_interpreter_or_another_agent_is_no_rival() -> None:
    dead = interpreter("agent-dead", started_at=NOW_MS - 60_000, alive=NOW_MS - 10_000)
    other = interpreter("agent-other", started_at=NOW_MS - 60_000, alive=NOW_MS, name="someone-else")
    new = interpreter("agent-new", started_at=NOW_MS - 100, alive=NOW_MS)
    assert winning_rival(new, [dead, other, new], NAME, NOW) is None


def test_an_interpreter_taking_over_and_the_one_it_takes_over_from_are_no_rivals() -> None:
    old = interpreter("agent-old", started_at=NOW_MS - 60_000, alive=NOW_MS)
    new = interpreter("agent-new", started_at=NOW_MS - 100, alive=NOW_MS, handover_from="agent-old")
    assert winning_rival(new, [old, new], NAME, NOW) is None
    assert winning_rival(old, [old, new], NAME, NOW) is None
    # a third one is a rival of both
    stray = interpreter("agent-stray", started_at=NOW_MS - 50, alive=NOW_MS)
    assert winning_rival(stray, [old, new, stray], NAME, NOW) == old


def test_without_started_at_the_join_orders_them() -> None:
    early = interpreter("agent-z", alive=NOW_MS, joined_at=NOW_MS - 9000)
    late = interpreter("agent-a", alive=NOW_MS, joined_at=NOW_MS - 1000)
    assert winning_rival(late, [early, late], NAME, NOW) == early


def test_members_read_from_the_server_api_and_from_the_rtc_sdk() -> None:
    info = ParticipantInfo(
        identity="agent-x",
        kind=ParticipantInfo.Kind.AGENT,
        attributes={ATTRIBUTE_AGENT_NAME: NAME, ATTR_ALIVE: str(NOW_MS)},
        joined_at=int(NOW) - 2,
        joined_at_ms=NOW_MS - 1500,
    )
    member = Member.from_info(info)
    assert (member.identity, member.kind, member.joined_at_ms) == ("agent-x", "agent", NOW_MS - 1500)
    assert member.is_ours(NAME) and member.is_live(NOW)
    assert (
        Member.from_info(ParticipantInfo(identity="rec", kind=ParticipantInfo.Kind.EGRESS)).kind == "recorder"
    )
    assert Member.from_info(ParticipantInfo(identity="bob", kind=ParticipantInfo.Kind.SIP)).kind == "person"
    # an older server without joined_at_ms
    assert Member.from_info(ParticipantInfo(identity="p", joined_at=100)).joined_at_ms == 100_000

    room = FakeRoom()
    joined = datetime.datetime.fromtimestamp(NOW - 1, tz=datetime.UTC)
    agent = room.join("agent-y", agent=True, attributes={ATTRIBUTE_AGENT_NAME: NAME}, joined_at=joined)
    member = Member.from_rtc(agent)
    assert (member.kind, member.joined_at_ms) == ("agent", NOW_MS - 1000)
    assert member.is_live(NOW)  # starting
    assert Member.from_rtc(room.join("carol")).kind == "person"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def started_room(clock: Clock, started_at: int) -> FakeRoom:
    room = FakeRoom()
    room.local_participant.identity = "agent-me"
    room.local_participant.attributes.update({ATTRIBUTE_AGENT_NAME: NAME, ATTR_STARTED_AT: str(started_at)})
    return room


async def test_an_interpreter_beats_and_leaves_once_for_a_rival_that_started_first() -> None:
    clock = Clock()
    room = started_room(clock, NOW_MS - 1000)
    room.join("alice")
    lost: list[Member] = []
    presence = Presence(room, NAME, lost.append, clock=clock, interval_s=0.01)
    assert not presence.check()
    presence.start()
    await eventually(lambda: room.local_participant.attributes.get(ATTR_ALIVE) == str(NOW_MS), what="a beat")
    clock.now += 1
    await eventually(lambda: room.local_participant.attributes.get(ATTR_ALIVE) == str(NOW_MS + 1000))

    # a later one joins: it is the one to leave, not this one
    room.join(
        "agent-later", agent=True, attributes={ATTRIBUTE_AGENT_NAME: NAME, ATTR_STARTED_AT: str(NOW_MS)}
    )
    await asyncio.sleep(0.05)
    assert not lost
    # one that started first shows its heartbeat: this one leaves, once, and beats no more
    rival = room.join("agent-first", agent=True, attributes={ATTRIBUTE_AGENT_NAME: NAME})
    assert not lost  # no started_at, joined at an unknown time, no heartbeat: not live
    room.set_attributes(rival, **{ATTR_STARTED_AT: str(NOW_MS - 5000), ATTR_ALIVE: str(NOW_MS + 1000)})
    assert [m.identity for m in lost] == ["agent-first"]
    beats = len(room.local_participant.attribute_log)
    clock.now += 1
    room.set_attributes(rival, **{ATTR_ALIVE: str(NOW_MS + 2000)})
    await asyncio.sleep(0.05)
    assert len(lost) == 1 and len(room.local_participant.attribute_log) == beats
    await presence.aclose()


async def test_a_starting_interpreter_that_loses_publishes_nothing() -> None:
    clock = Clock()
    room = started_room(clock, NOW_MS)
    room.join(
        "agent-first",
        agent=True,
        attributes={ATTRIBUTE_AGENT_NAME: NAME, ATTR_STARTED_AT: str(NOW_MS - 9000), ATTR_ALIVE: str(NOW_MS)},
    )
    lost: list[Member] = []
    presence = Presence(room, NAME, lost.append, clock=clock)
    assert presence.check() and len(lost) == 1
    await presence.aclose()  # never started: nothing to stop
    assert room.local_participant.attribute_log == []


class BlockedCaptions:
    """A local participant whose data channel sends nothing (captions wait forever); attributes (over the
    signalling connection) still go through."""

    identity = "agent-me"
    kind = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    joined_at = None

    def __init__(self) -> None:
        self.attributes: dict[str, str] = {ATTRIBUTE_AGENT_NAME: NAME, ATTR_STARTED_AT: str(NOW_MS)}

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.attributes.update(attributes)

    async def stream_text(self, **kwargs: Any) -> Any:
        await asyncio.Event().wait()


async def test_a_heartbeat_never_waits_behind_a_caption_backlog() -> None:
    clock = Clock()
    room = FakeRoom()
    participant = BlockedCaptions()
    room.local_participant = participant  # type: ignore[assignment]
    captions = RoomPublisher(participant)  # the session's publisher: captions and attributes, in order
    for n in range(50):
        captions.publish(Caption(f"alice-{n}", "alice", "en", "words", final=True, translated=False))
    captions.set_state("speaking")  # waits behind the captions, as it should
    presence = Presence(room, NAME, lambda _: None, clock=clock, interval_s=0.01)
    presence.start()
    for beat in range(3):
        clock.now = NOW + beat
        await eventually(lambda: participant.attributes.get(ATTR_ALIVE) == str(int(clock.now * 1000)))
    assert captions.pending == 50 and "lk.agent.state" not in participant.attributes  # 49 captions, the state
    await presence.aclose()
    captions.room_gone()
    await captions.aclose()
