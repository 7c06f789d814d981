"""Each scenario's figures over its rooms, and issue 20's goals beside them: 0 rooms lost or doubled; in a
burst, p95 of request → interpreter at work ≤ 3 s; after a worker is killed, back at work within 10 s at
p95; a deploy costs ≤ 1 s of gap and nothing lost. Every latency comes with what happened to the speech
meanwhile (sentences lost, doubled, merged)."""

from __future__ import annotations

import math
from typing import Any

from bench.fleet.figures import (
    back_after,
    cuts,
    doubled_s,
    join_figures,
    live_spans,
    longest_gap,
    placement,
    spread,
    totals,
)
from bench.fleet.records import RoomRecord

JOIN_P95_S = 3.0
BACK_P95_S = 10.0
DEPLOY_GAP_S = 1.0
IN_FLIGHT_S = 2.0  # sentences that ended this long before a worker was lost were still being interpreted


def goal(met: bool, text: str) -> dict[str, Any]:
    return {"met": met, "goal": text}


def burst_summary(rooms: list[RoomRecord], lost_after: float) -> dict[str, Any]:
    """Rooms interpreted, lost, doubled; request → joined and → at work; the cuts, over all the speech (the
    sentences said before the interpreter came are lost) and since it was at work."""
    per_room = []
    for room in rooms:
        row = join_figures(room, lost_after)
        row["cuts"] = cuts(room, -math.inf, room.ended)
        at_work = None if row["lost"] else room.requested_at + row["listening_s"]
        row["cuts_at_work"] = cuts(room, at_work, room.ended) if at_work is not None else None
        per_room.append(row)
    lost = sum(1 for r in per_room if r["lost"])
    doubled = sum(1 for r in per_room if r["doubled_s"] > 0)
    listening = spread([None if r["lost"] else r["listening_s"] for r in per_room])
    p95 = listening["p95"]
    return {
        "rooms": len(rooms),
        "interpreted": len(rooms) - lost,
        "lost": lost,
        "doubled": doubled,
        "longest_doubled_s": max((r["doubled_s"] for r in per_room), default=0.0),
        "joined_s": spread([r["joined_s"] for r in per_room]),
        "listening_s": listening,
        "cuts": totals(r["cuts"] for r in per_room),
        "cuts_at_work": totals(r["cuts_at_work"] for r in per_room if r["cuts_at_work"] is not None),
        "rooms_in_trouble": troubled(rooms),
        "placed": totals(placement(room) for room in rooms),
        "goal": goal(
            lost == 0 and doubled == 0 and p95 is not None and p95 <= JOIN_P95_S,
            f"0 rooms lost or doubled; request → at work p95 ≤ {JOIN_P95_S:g} s",
        ),
        "per_room": per_room,
    }


def at_work_before(room: RoomRecord, at: float) -> bool:
    """Whether an interpreter was at work in the room, and live, at `at`."""
    return any(
        (since := i.interpreting_since()) is not None
        and since <= at
        and any(a <= at <= b for a, b in live_spans(i, room.ended))
        for i in room.interpreters
    )


def event_rows(
    rooms: list[RoomRecord], at: float, spoke_from: float, stopped_at: float
) -> list[dict[str, Any]]:
    """Per room, around an event at `at` (a worker killed, or sent SIGTERM): whether it was interpreted
    then, when another interpreter was at work, the cuts from the sentences in flight on, the longest gap
    heard after (and the longest before, the usual), doubled."""
    rows = []
    for room in rooms:
        rows.append(
            {
                "room": room.name,
                "served_before": at_work_before(room, at),
                "back_s": back_after(room, at),
                "cuts": cuts(room, at - IN_FLIGHT_S, stopped_at),
                "gap_s": longest_gap(room, at - 1.0, stopped_at),
                "usual_gap_s": longest_gap(room, spoke_from + 3.0, at - 1.0),
                "doubled_s": round(doubled_s(room.interpreters, room.ended), 3),
                "interpreters": len(room.interpreters),
            }
        )
    return rows


# a speaker this far behind real time: the machine could not run the room's participants (a speaker that
# keeps up is ~0.6 s "behind" after its first second: its audio source takes that much in before it paces)
BEHIND_S = 1.5


def troubled(rooms: list[RoomRecord]) -> list[str]:
    """The rooms whose own speaker or listener lost its connection, or whose speaker fell behind real time
    (a machine too busy to run them): their figures say more about the machine than the interpreter."""
    return [room.name for room in rooms if room.troubles or room.speaker_behind_s > BEHIND_S]


def event_summary(rooms: list[RoomRecord], at: float, spoke_from: float, stopped_at: float) -> dict[str, Any]:
    """The rooms around an event at `at`, from `spoke_from` (the speakers began) to `stopped_at`."""
    rows = event_rows(rooms, at, spoke_from, stopped_at)
    back = spread([r["back_s"] for r in rows])
    return {
        "rooms": len(rows),
        "served_before": sum(1 for r in rows if r["served_before"]),
        "back_s": back,
        "never_back": back["never"],
        "window_s": round(stopped_at - at, 1),
        "doubled": sum(1 for r in rows if r["doubled_s"] > 0),
        "cuts": totals(r["cuts"] for r in rows),
        "gap_s": max((r["gap_s"] for r in rows), default=0.0),
        "usual_gap_s": max((r["usual_gap_s"] for r in rows), default=0.0),
        "rooms_in_trouble": troubled(rooms),
        "placed": totals(placement(room) for room in rooms),
        "per_room": rows,
    }


def kill_summary(
    rooms: list[RoomRecord], killed_at: float, spoke_from: float, stopped_at: float
) -> dict[str, Any]:
    out = event_summary(rooms, killed_at, spoke_from, stopped_at)
    p95 = out["back_s"]["p95"]
    out["goal"] = goal(
        out["never_back"] == 0 and out["doubled"] == 0 and p95 is not None and p95 <= BACK_P95_S,
        f"every room back within {BACK_P95_S:g} s at p95; none doubled",
    )
    return out


def deploy_summary(
    rooms: list[RoomRecord], signalled_at: float, spoke_from: float, stopped_at: float
) -> dict[str, Any]:
    out = event_summary(rooms, signalled_at, spoke_from, stopped_at)
    cut = out["cuts"]
    out["goal"] = goal(
        out["gap_s"] <= DEPLOY_GAP_S
        and cut.get("lost", 0) == 0
        and cut.get("doubled", 0) == 0
        and out["doubled"] == 0,
        f"a gap of ≤ {DEPLOY_GAP_S:g} s; no sentence lost or doubled",
    )
    return out
