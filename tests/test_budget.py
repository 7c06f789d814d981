"""A room's budget per hour (`agent/room/budget.py`): when an hour's spend reaches it the room is told and
nothing new is interpreted until the next hour; what was already heard still is. The rules on a clock the
test moves; a room through the fake room, whose budget one translation spends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.room.budget import Budget
from agent.room.room_io import ATTR_BUDGET_REACHED
from agent.settings.room_settings import parse_room_settings
from tests.conftest import DIALOGUE
from tests.loopback import eventually
from tests.test_room import RoomHarness, harness  # noqa: F401  (the fixture)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_an_hours_budget_stops_spending_until_the_next_hour_begins():
    clock, changes = Clock(), []
    budget = Budget(lambda: changes.append(budget.reached), clock=clock)
    budget.spent(5.0)  # no budget: never reached
    assert not budget.reached and changes == []
    budget.follow(2.0)  # set mid-hour: what this hour spent counts
    assert budget.reached and changes == [True] and budget.resumes_at == 1_000.0 + 3600
    clock.now = 1_000.0 + 3600  # the next hour: its budget is whole again (the timer's check)
    budget.check()
    assert not budget.reached and changes == [True, False]
    budget.spent(6.9)  # 1.9 of this hour's 2.0
    assert not budget.reached
    clock.now += 600
    budget.spent(7.0)
    assert budget.reached and changes == [True, False, True] and budget.resumes_at == 1_000.0 + 7200
    clock.now += 3000
    budget.check()
    assert not budget.reached
    budget.follow(None)  # the limit lifted
    budget.spent(100.0)
    assert not budget.reached and changes == [True, False, True, False]


def test_a_budget_that_is_not_a_positive_number_is_reported_and_none_applies():
    for bad in ('"ten"', "0", "-3", "true"):
        settings, problems = parse_room_settings(None, f'{{"budget_usd_per_hour": {bad}}}')
        assert settings.budget_usd_per_hour is None
        assert problems == [
            "room metadata: budget_usd_per_hour: expected a number of US dollars above 0; ignored"
        ]
    settings, problems = parse_room_settings(None, '{"budget_usd_per_hour": 12.5}')
    assert settings.budget_usd_per_hour == 12.5 and problems == []


SPEECH_ONLY = Path(__file__).parent / "fixtures" / "prices_speech_only.toml"  # a dollar a character


@pytest.mark.parametrize(
    "harness", [{"SYNTHESIS": "listeners", "PRICES_FILE": str(SPEECH_ONLY)}], indirect=True
)
async def test_a_spent_budget_is_shown_and_what_comes_after_is_not_interpreted(harness: RoomHarness):  # noqa: F811
    room, session = harness.room, harness.session
    room.metadata = json.dumps({"budget_usd_per_hour": 1.0})  # the first translation's speech spends it
    await session.start()
    alice = room.join("alice", attributes={"language": "en"})
    room.join("ana", attributes={"interpret_to": "es", "listening_to": "es"})
    await session.settled()
    harness.speak(alice, DIALOGUE.wav)  # three sentences
    await eventually(lambda: len(harness.captions(translated=False)) == 3, within_s=30, what="three heard")
    await eventually(lambda: harness.played("es") == ["alice-0-es"], what="the first spoken in full")
    attributes = room.local_participant.attributes
    assert int(attributes[ATTR_BUDGET_REACHED]) == int(session.budget.resumes_at * 1000)
    # what came after the budget was spent: captioned as said, not translated, nothing more spent
    assert [c.attributes["language"] for c in harness.captions(translated=True)] == ["es"]
    assert len(harness.fakes.cerebras.usage_sent) == 1
