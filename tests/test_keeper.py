"""The keeper's rules (agent/run/keeper.py) on rooms and dispatches as the server API returns them, with the
clock passed in. The keeper against the real server, with workers lost: tests/test_recovery.py."""

from __future__ import annotations

import json

from livekit import api
from livekit.agents.types import ATTRIBUTE_AGENT_NAME

from agent.room.presence import Member
from agent.room.room_io import ATTR_ALIVE
from agent.run.keeper import (
    ABSENT,
    JOIN_WAIT_S,
    REDISPATCH_AFTER_S,
    STALE,
    _Backoff,
    dispatch_pending,
    metadata_for_again,
    missing_interpreter,
)

NAME = "interpreter"
NOW = 1_800_000_000.0
NOW_MS = int(NOW * 1000)


def ns(seconds_ago: float) -> int:
    return int((NOW - seconds_ago) * 1e9)


def dispatch(
    created_s_ago: float,
    metadata: str = "",
    jobs: list[tuple[str, float]] = (),  # type: ignore[assignment]
) -> api.AgentDispatch:
    """A dispatch as `ListDispatch` shows it: `jobs` are (agent identity, seconds since the job started)."""
    return api.AgentDispatch(
        agent_name=NAME,
        metadata=metadata,
        state=api.AgentDispatchState(
            created_at=ns(created_s_ago),
            jobs=[
                api.Job(state=api.JobState(participant_identity=identity, started_at=ns(ago)))
                for identity, ago in jobs
            ],
        ),
    )


def agent(identity: str, alive_s_ago: float, name: str = NAME) -> Member:
    attributes = {ATTRIBUTE_AGENT_NAME: name, ATTR_ALIVE: str(NOW_MS - int(alive_s_ago * 1000))}
    return Member(identity, "agent", attributes, NOW_MS - 60_000)


PERSON = Member("alice", "person", {}, NOW_MS - 60_000)


def test_a_room_with_people_and_no_live_interpreter_of_ours_misses_one() -> None:
    assert missing_interpreter([PERSON, agent("agent-a", 1)], NAME, NOW) is None
    assert missing_interpreter([PERSON, agent("agent-a", 10)], NAME, NOW) == STALE  # its worker was lost
    assert missing_interpreter([PERSON, agent("agent-a", 10), agent("agent-b", 0.5)], NAME, NOW) is None
    assert missing_interpreter([PERSON], NAME, NOW) == ABSENT
    assert missing_interpreter([PERSON, agent("agent-other", 0, name="other")], NAME, NOW) == ABSENT
    # nobody to interpret: only agents (ours gone stale, too) or a recorder
    assert missing_interpreter([agent("agent-a", 10), Member("egress", "recorder")], NAME, NOW) is None
    assert missing_interpreter([], NAME, NOW) is None


def test_a_young_dispatch_or_a_job_whose_agent_is_still_starting_is_waited_for() -> None:
    beating = {"agent-old"}  # in the room with a heartbeat (found stale: its worker was lost)
    assert dispatch_pending([dispatch(REDISPATCH_AFTER_S - 0.5)], beating, NOW)
    assert not dispatch_pending([dispatch(REDISPATCH_AFTER_S + 0.5)], beating, NOW)
    # a worker took the job; its agent has not joined yet, or joined and not beaten yet
    assert dispatch_pending([dispatch(10, jobs=[("agent-new", 5)])], beating, NOW)
    assert not dispatch_pending([dispatch(60, jobs=[("agent-new", JOIN_WAIT_S + 1)])], beating, NOW)
    # its agent has beaten (the keeper found it silent since): nothing to wait for
    assert not dispatch_pending([dispatch(10, jobs=[("agent-old", 5)])], beating, NOW)
    assert dispatch_pending([dispatch(60), dispatch(1)], beating, NOW)


def test_a_room_is_dispatched_again_with_its_newest_settings_without_a_handover() -> None:
    old = dispatch(60, json.dumps({"target_languages": ["es"]}))
    new = dispatch(30, json.dumps({"target_languages": ["fr"], "handover_from": "agent-x"}))
    assert json.loads(metadata_for_again([new, old])) == {"target_languages": ["fr"]}
    assert metadata_for_again([old]) == old.metadata
    assert metadata_for_again([dispatch(1, json.dumps({"handover_from": "agent-x"}))]) == ""
    assert metadata_for_again([dispatch(1, "not json")]) == "not json"
    assert metadata_for_again([dispatch(1)]) == ""


def test_dispatches_that_bring_nobody_are_tried_again_less_and_less_often() -> None:
    backoff = _Backoff()
    waits = []
    for _ in range(7):
        backoff.tried(NOW)
        waits.append(backoff.next_s - NOW)
    assert waits == [3, 6, 12, 24, 30, 30, 30]
