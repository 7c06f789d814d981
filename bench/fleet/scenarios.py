"""The three scenarios of `python -m bench fleet`, each bounded in time whether or not rooms get their
interpreter:

- `burst`: fresh workers (one, or two) registered; N rooms ask for an interpreter within one second —
  N people joining with a token that asks for it, or N dispatches through the API into rooms whose people
  are already there — and every speaker talks from its room's request on;
- `meeting` (`kill` and `deploy`): rooms interpreted by worker A (opened one second apart, so that today's
  worker takes each), then worker B registered, everyone talking; then A's machine dies (SIGSTOP + SIGKILL
  of A and every process under it) or A is sent SIGTERM (a deploy: the worker process only, as Fly sends
  it), and the rooms are watched while their speakers go on talking.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass
from typing import Any

from bench.fleet.fleet import Fleet, FleetRoom, kill_machine, request
from bench.fleet.summary import burst_summary, deploy_summary, kill_summary
from bench.harness.speech import Sentence, Timeline
from bench.room.rooms import Context

# sentence lengths (s), three characters of transcript apart (bench/harness/model.py: 12.5 a second)
LADDER = tuple(0.8 + 0.24 * k for k in range(8))
TURN_S = 1.64 + 1.5  # a turn with its pause, on average


@dataclass(frozen=True)
class Sizes:
    rooms: int = 8  # burst
    lost_after_s: float = 30.0  # a room with no interpreter at work this long after its request is lost
    speech_s: float = 20.0  # burst: each speaker talks this long from its request
    meeting_rooms: int = 4  # kill, deploy
    before_s: float = 10.0  # kill, deploy: everyone talks this long before the event
    after_s: float = 30.0  # and this long after it
    settle_s: float = 5.0  # a worker's idle processes warm up after it registered
    tail_s: float = 5.0  # after the speakers stop, for the last translations


def speech(seconds: float, seed: int) -> Timeline:
    """Dialogue turns for about `seconds`, each a sentence then 1-2 s of silence; the sentences' lengths
    step through LADDER in an order of the seed's, again and again, so no two of any eight in a row are
    alike and each transcript's length says which sentence it is (`figures.sentence_of`)."""
    rng = random.Random(seed)
    order = rng.sample(LADDER, len(LADDER))
    t, voiced = 0.5, list[tuple[float, float]]()
    while t < seconds:
        length = order[len(voiced) % len(order)]
        voiced.append((t, length))
        t += length + rng.uniform(1.0, 2.0)
    sentences = [Sentence(start, start + length) for start, length in voiced]
    return Timeline(voiced, sentences, sentences, t)


async def burst(ctx: Context, sizes: Sizes, workers: int, mode: str) -> dict[str, Any]:
    """One burst: `sizes.rooms` rooms within a second against `workers` fresh workers; `mode` "token" (people
    joining with a token that asks for the interpreter) or "api" (dispatches through the API)."""
    fleet = Fleet(ctx, f"burst-{workers}w-{mode}")
    await fleet.start_workers(workers, sizes.settle_s)
    n = sizes.rooms
    talks = [speech(sizes.speech_s, seed=i) for i in range(n)]
    lk = ctx.server.api()
    try:
        there = []  # with the API, the people are there first; their requests come together
        if mode == "api":
            there = await asyncio.gather(*(fleet.open(f"r{i}", talks[i], dispatch=False) for i in range(n)))
        fleet.t0 = time.perf_counter()

        async def ask(i: int) -> FleetRoom:
            await asyncio.sleep(i / n)  # n requests within one second
            if mode == "api":
                await request(lk, there[i])
                room = there[i]
            else:
                room = await fleet.open(f"r{i}", talks[i], dispatch=True)
            fleet.speak(room)
            return room

        asked = await asyncio.gather(*(ask(i) for i in range(n)))
        await fleet.wait_working(asked, sizes.lost_after_s)
        speaking = [r.speaking for r in asked if r.speaking is not None]
        longest = max(t.total_s for t in talks)  # the speakers finish (a starved one is cut short)
        if speaking:
            await asyncio.wait(speaking, timeout=max(0.0, longest + 5.0 - fleet.now()))
    finally:
        await lk.aclose()
    records = await fleet.finish(sizes.tail_s)
    out = burst_summary(records, sizes.lost_after_s)
    run = {"workers": workers, "mode": mode, "observer_lag_s": fleet.observer_lag_s}
    return {**run, **out, "records": [r.as_dict() for r in records]}


async def meeting(ctx: Context, sizes: Sizes, event: str) -> dict[str, Any]:
    """Rooms interpreted by worker A, worker B registered, everyone talking; then `event`: "kill" (A's
    machine dies) or "deploy" (A is sent SIGTERM); the rooms watched for `sizes.after_s` more."""
    fleet = Fleet(ctx, event)
    (first,) = await fleet.start_workers(1, sizes.settle_s)
    fleet.t0 = time.perf_counter()
    rooms = []
    for i in range(sizes.meeting_rooms):
        talk = speech(sizes.before_s + sizes.after_s + 2 * TURN_S, seed=100 + i)
        rooms.append(await fleet.open(f"r{i}", talk, dispatch=True))
        await asyncio.sleep(1.0)  # one at a time: every room on A, whatever A's burst limit
    await fleet.wait_working(rooms, sizes.lost_after_s)
    await fleet.start_workers(1, sizes.settle_s)
    spoke_from = fleet.now()
    for room in rooms:
        fleet.speak(room)
    await asyncio.sleep(sizes.before_s)
    at = fleet.now()
    if event == "kill":
        kill_machine(first)
    else:
        assert first.proc is not None
        first.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(sizes.after_s)
    stopped_at = fleet.now()
    records = await fleet.finish(sizes.tail_s)
    summarise = kill_summary if event == "kill" else deploy_summary
    out = summarise(records, at, spoke_from, stopped_at)
    times = {"at_s": round(at, 3), "spoke_from_s": round(spoke_from, 3), "stopped_at_s": round(stopped_at, 3)}
    run = {"event": event, "observer_lag_s": fleet.observer_lag_s, **times}
    return {**run, **out, "records": [r.as_dict() for r in records]}
