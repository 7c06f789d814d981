"""A deploy mid-meeting in a real room: SIGTERM to the worker interpreting it, another worker registered.
The job hands the room over (make before break): it dispatches a new interpreter, which a worker that is not
draining takes; keeps interpreting until that one listens; cuts the speaker at a pause; finishes what it heard
before the cut; leaves. The new one interprets from the cut. Every sentence is captioned and translated once,
in order, and its worker exits 0. With no other worker, the job keeps interpreting (and dispatching again)
until its drain times out, then finishes what it heard and leaves.

Everything is real but the providers: the LiveKit server, both workers as production runs them (`python -m
agent start` subprocesses, the framework's SIGTERM handling), the token dispatch, the participants. The fake
Deepgram hands out the monologue's sentences in the order their segments end, whichever interpreter's
connection heard them, and records each segment's length: a sentence split by the cut, heard by both or by
neither would show in the count or the lengths.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from livekit import rtc

from agent.room.room_io import ATTR_CUT_AT, ATTR_DRAINING, ATTR_HANDOVER_FROM, ATTR_STANDBY
from agent.run.filemode import read_wav
from agent.run.handover import REDISPATCH_S
from agent.run.worker import SESSION_DRAIN_TIMEOUT_S
from tests.conftest import MONOLOGUE, Fakes, start_fakes, stop_fakes
from tests.livekit_server import LiveKitServer
from tests.loopback import eventually
from tests.participants import Listener, Speaker
from tests.real_room import AGENT_NAME, FORBIDDEN, RealRoom, is_agent, real_room
from tests.room_worker import WorkerProcess
from tests.test_shutdown import AUDIBLE_RMS, SHUTDOWN_FORBIDDEN

TRANSLATIONS = [next(t for k, t in MONOLOGUE.translations.items() if k in s) for s in MONOLOGUE.transcripts]
# where each sentence's speech starts and ends in the WAV (the fake Deepgram's VAD), for the figures reported
SENTENCE_STARTS = [0.51, 2.71, 4.80, 6.85, 9.20, 10.91, 12.72, 15.19]
SENTENCE_ENDS = [1.81, 3.90, 5.91, 8.25, 10.02, 11.81, 14.23, 16.20]
HANDOVER_DRAIN_S = 120  # the drain bound of the worker handing over: far more than the handover takes


@asynccontextmanager
async def monologue_fakes() -> AsyncIterator[Fakes]:
    # the script is handed out in the order segments end, whichever interpreter's connection heard them
    fakes = await start_fakes(MONOLOGUE)
    try:
        yield fakes
    finally:
        await stop_fakes(fakes)


def agents(participant: Listener) -> dict[str, rtc.RemoteParticipant]:
    return {p.identity: p for p in participant.room.remote_participants.values() if is_agent(p)}


async def meeting(room: RealRoom) -> tuple[Speaker, Listener, rtc.RemoteParticipant]:
    """Alice (English; her token dispatches the interpreter) and Bob, who listens in Spanish; the agent."""
    alice = await room.speaker(
        "alice", attributes={"language": "en"}, dispatch=room.dispatch({"formality": "formal"})
    )
    bob = await room.listener("bob", attributes={"language": "es"})
    await room.agent_tracks(bob, "interpretation-es", "interpretation-en")
    agent = bob.agent()
    assert agent is not None
    return alice, bob, agent


def longest_silence(frames: list[tuple[float, np.ndarray]], start: float, end: float) -> float:
    """The longest stretch between `start` and `end` (arrival times) with no audible interpretation frame."""
    audible = sorted(
        at for at, s in frames if s.size and np.sqrt(np.mean(s.astype(np.float32) ** 2)) > AUDIBLE_RMS
    )
    times = [start, *(t for t in audible if start < t < end), end]
    return max(b - a for a, b in itertools.pairwise(times))


async def test_sigterm_hands_the_room_over_to_another_worker_nothing_lost_nothing_twice(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    async with (
        monologue_fakes() as fakes,
        real_room(livekit_server, fakes, tmp_path / "a", DRAIN_TIMEOUT_S=str(HANDOVER_DRAIN_S)) as room,
    ):
        alice, bob, old = await meeting(room)  # worker A alone was there to take the room
        changes: list[tuple[str, str]] = []  # (identity, `interpreter.cut_at`) as Bob saw them
        bob.room.on(
            "participant_attributes_changed",
            lambda changed, p: (
                changes.append((p.identity, changed[ATTR_CUT_AT])) if ATTR_CUT_AT in changed else None
            ),
        )
        worker_b = WorkerProcess(livekit_server, fakes.env(DRAIN_TIMEOUT_S="2"), tmp_path / "b")
        await worker_b.start()
        try:
            speaking = alice.say(read_wav(MONOLOGUE.wav))
            said_at = time.perf_counter()
            await eventually(
                lambda: bool(fakes.deepgram.finals), within_s=30, what="the first sentence heard"
            )
            sigterm_at = time.perf_counter()
            stopping = asyncio.create_task(room.worker.terminate(timeout_s=HANDOVER_DRAIN_S + 60))

            def newcomer() -> rtc.RemoteParticipant | None:
                return next((p for i, p in agents(bob).items() if i != old.identity), None)

            await eventually(lambda: newcomer() is not None, within_s=60, what="a new interpreter")
            new = newcomer()
            assert new is not None
            await speaking
            returncode = await stopping
            exit_s = time.perf_counter() - sigterm_at
            await eventually(
                lambda: old.identity not in agents(bob), within_s=30, what="the old one to leave"
            )
            await eventually(
                lambda: len(bob.final_captions(translated=True, language="es")) >= len(TRANSLATIONS),
                within_s=30,
                what="every sentence translated",
            )
            await asyncio.sleep(1.0)  # anything said twice would come now
            output_a, output_b = room.worker.output(), worker_b.output()
            new_tracks = {pub.name for pub in new.track_publications.values()}
            new_attributes = dict(new.attributes)
        finally:
            await worker_b.aclose()

        source = bob.final_captions(translated=False)
        translated = bob.final_captions(translated=True, language="es")
        by_old = [c.text for c in translated if c.sender == old.identity]
        by_new = [c.text for c in translated if c.sender == new.identity]
        heard = bob.heard.get("interpretation-es", [])
        cuts = [json.loads(v) for identity, v in changes if identity == old.identity and v]
        dg = fakes.deepgram
        context = (
            f"exit after {exit_s:.1f} s; source {[c.text for c in source]}; by the old one {by_old}; "
            f"by the new one {by_new}; deepgram finals {[f.transcript for f in fakes.deepgram.finals]}; "
            f"cuts {cuts}; segments {[(f.connection, f.start, f.end) for f in dg.finals]}, ignored "
            f"{dg.ignored_segments}, connections {[(c.index, round(c.audio_s, 2)) for c in dg.connections]}\n"
            f"A: {room.worker.tail(60)}\nB: {worker_b.tail(60)}"
        )
        # worker A exited by itself, cleanly; worker B took the one job A's interpreter dispatched
        assert returncode == 0, context
        assert exit_s < HANDOVER_DRAIN_S, context  # it handed over: it did not wait for its drain to time out
        assert worker_b.job_requests(room.name) == 1, context
        # the new interpreter came to take over from the old one, publishes the languages, and listens no more
        assert new_attributes.get(ATTR_HANDOVER_FROM) == old.identity, context
        assert new_attributes.get(ATTR_STANDBY, "") == "", context
        assert new_tracks == {"interpretation-es", "interpretation-en"}, context
        assert new_attributes.get("interpreter.warnings", "") == "", context  # `handover_from` was taken off
        # every sentence captioned and translated exactly once, in order, the old one then the new one
        assert [c.text for c in source] == MONOLOGUE.transcripts, context
        assert [c.text for c in translated] == TRANSLATIONS, context
        assert by_old and by_new and by_old + by_new == TRANSLATIONS, context
        # the speech was heard as eight segments, one per sentence, each as long as that sentence (Opus and
        # resampling blur a segment's edges, so not to the 10 ms): a sentence split, or heard by both
        # interpreters, or by neither, would change the lengths, or leave a transcript unused. (Once, on a
        # machine loaded far beyond its cores, the new interpreter's connection heard two more segments after
        # its last sentence, never reproduced: they would show here, were they between its sentences.)
        lengths = [round(f.end - f.start, 2) for f in fakes.deepgram.finals]
        assert not fakes.deepgram.remaining_transcripts, context
        assert all(abs(a - b) < 0.25 for a, b in zip(lengths, MONOLOGUE.sentences, strict=True)), lengths
        last_end = {f.connection: f.end for f in fakes.deepgram.finals}
        assert all(i.start >= last_end.get(i.connection, 0.0) for i in dg.ignored_segments), context
        assert len(cuts) == 1 and set(cuts[0]) == {"alice"}, context  # the old one cut her, once
        # the new one began speaking once the old one had finished (each translation's caption comes as its
        # audio starts, its final as its last audio is queued): the listener never hears the two at once
        old_done = max(c.at for c in translated if c.sender == old.identity)
        new_start = min(c.at for c in bob.captions if c.translated and c.sender == new.identity)
        assert old_done < new_start, context
        # what the listener heard around the handover: reported, not asserted (the benchmark measures it)
        end = max(c.at for c in translated)
        # each translation's caption comes as its audio starts: its lag behind the end of its sentence
        lags = [round(c.at - said_at - end, 2) for c, end in zip(translated, SENTENCE_ENDS, strict=True)]
        print(
            f"\nhandover: translations start {lags} s after their sentences end (the first {len(by_old)} "
            "by the old one)"
        )
        # between two translations, the silence the listener heard beyond the pause between their sentences
        starts = {c.segment_id: c.at for c in reversed(bob.captions) if c.translated}  # the first caption's
        extra = [
            round(starts[b.segment_id] - a.at - (SENTENCE_STARTS[i + 1] - SENTENCE_ENDS[i]), 2)
            for i, (a, b) in enumerate(itertools.pairwise(translated))
        ]
        print(
            f"\nhandover: longest silence on interpretation-es from SIGTERM to the last translation "
            f"{longest_silence(heard, sigterm_at, end):.2f} s; silence beyond the original's pauses between "
            f"translations {extra} s; the old one spoke {len(by_old)}, the new one {len(by_new)}"
        )
        for name, output in (("A", output_a), ("B", output_b)):
            found = [f for f in FORBIDDEN if f in output]
            assert not found, f"{found} in worker {name}'s output\n{context}"
        found = [f for f in SHUTDOWN_FORBIDDEN if f in output_a]
        assert not found, f"{found} in worker A's output\n{context}"


async def test_sigterm_with_no_other_worker_keeps_interpreting_until_the_drain_bound(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    drain_s = int(REDISPATCH_S) + 2  # time for one dispatch again
    async with (
        monologue_fakes() as fakes,
        real_room(livekit_server, fakes, tmp_path / "alone", DRAIN_TIMEOUT_S=str(drain_s)) as room,
    ):
        alice, bob, agent = await meeting(room)
        alice.say(read_wav(MONOLOGUE.wav))
        await eventually(lambda: bool(fakes.deepgram.finals), within_s=30, what="the first sentence heard")
        heard_before = len(fakes.deepgram.finals)
        stopping = asyncio.create_task(
            room.worker.terminate(timeout_s=drain_s + SESSION_DRAIN_TIMEOUT_S + 30)
        )
        await eventually(lambda: agent.attributes.get(ATTR_DRAINING) == "true", within_s=10, what="draining")
        returncode = await stopping
        await eventually(lambda: bob.agent() is None, within_s=10, what="the agent to leave")
        output = room.worker.output()
        lk = livekit_server.api()
        try:
            dispatches = await lk.agent_dispatch.list_dispatch(room.name)
        finally:
            await lk.aclose()
        handovers = [d for d in dispatches if d.agent_name == AGENT_NAME and "handover_from" in d.metadata]

        source = [c.text for c in bob.final_captions(translated=False)]
        translated = [c.text for c in bob.final_captions(translated=True, language="es")]
        context = f"source {source}; translated {translated}; dispatches {dispatches}\n{room.worker.tail(60)}"
        assert returncode == 0, context
        # it kept interpreting while it drained: sentences said after SIGTERM were captioned and spoken
        assert len(source) > heard_before + 1, context
        assert source == MONOLOGUE.transcripts[: len(source)], context
        assert translated == TRANSLATIONS[: len(source)], context
        # it asked for an interpreter to take over, and again when nobody came; none is left in the room
        assert len(handovers) >= 2 and "nobody came to take the room over" in output, context
        assert all(f'"handover_from": "{agent.identity}"' in d.metadata for d in handovers), context
        assert '"formality": "formal"' in handovers[0].metadata, context  # the room's own metadata
        assert not agents(bob), context
        found = [f for f in (*FORBIDDEN, *SHUTDOWN_FORBIDDEN) if f in output]
        assert not found, f"{found} in the worker's output\n{context}"
