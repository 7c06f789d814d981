"""A deploy mid-meeting, in parts (the whole, in a real room with two workers: tests/test_handover_room.py):
the ears of the interpreter handing over stop at the speaker's next pause, the ears of the one taking over
start there, from the audio they held; the worker tells its jobs it drains through a file; a handover's job
metadata."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from agent.loops.ears.handover import CUT_MARGIN_S
from agent.loops.ears.loop import Ears
from agent.loops.ears.replay import AudioClock
from agent.providers.build import build_stt
from agent.run.filemode import Pcm, read_wav
from agent.run.handover import DRAIN_FLAG_ENV, DrainFlag, handover_metadata, split_handover
from agent.settings.room_settings import parse_room_settings
from agent.telemetry.latency import LatencyTracker
from tests.conftest import MONOLOGUE, Fakes, stop_fakes
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.test_ears import Heard, live_track

FIRST_FOUR_S = 8.6  # the monologue's first four sentences (the fourth ends at 8.25 s)


def test_the_audio_clock_maps_clock_time_back_to_the_audio_timeline() -> None:
    clock = AudioClock()
    for i in range(1, 51):  # 20 ms frames arriving at 100.02, 100.04, ...
        clock.note(i * 0.02, 100.0 + i * 0.02)
    for audio_t in (0.005, 0.3, 0.51, 1.0):
        at = clock.to_clock(audio_t)
        assert at is not None
        assert abs((clock.to_audio(at) or 0.0) - audio_t) < 1e-9
    assert clock.to_audio(101.5) == 1.5  # later than everything noted: extrapolated
    assert clock.to_audio(90.0) == 0.0  # before the speaker's first audio
    assert AudioClock().to_audio(1.0) is None


async def test_a_speaker_handed_over_at_a_pause_loses_no_sentence_and_none_is_heard_twice() -> None:
    """Two interpreters' ears on one speaker, each hearing the speech live: the one handing over is asked to
    cut in the middle of the first sentence, cuts in the pause after it and finalizes that sentence; the one
    taking over, on standby until then, transcribes every sentence after the cut, from the audio it held."""
    fakes = Fakes(
        deepgram=FakeDeepgram(transcript_for=MONOLOGUE.transcript_for),
        cerebras=FakeLLM(),
        groq=FakeLLM(),
        cartesia=FakeCartesia(),
    )
    for fake in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await fake.start()
    monologue = read_wav(MONOLOGUE.wav)
    speech = Pcm(monologue.samples[: int(FIRST_FOUR_S * monologue.sample_rate)], monologue.sample_rate)
    try:
        async with aiohttp.ClientSession() as http:
            stt = build_stt(fakes.settings(), "en", http)
            tracker = LatencyTracker()
            old_heard, new_heard = Heard(), Heard()

            def ears(out: Heard, prefix: str, *, standby: bool) -> Ears:
                return Ears(
                    stt=stt, frames=live_track(speech), out=out, tracker=tracker, speaker="ann",
                    language="en", segment_prefix=prefix, standby=standby,
                )  # fmt: skip

            old, new = ears(old_heard, "ann", standby=False), ears(new_heard, "ann~new", standby=True)
            runs = [asyncio.create_task(old.run()), asyncio.create_task(new.run())]
            await asyncio.sleep(1.2)  # in the first sentence (0.51-1.81 s)
            asked_at = tracker.clock()
            cut = await old.handover.cut(within_s=2.0)
            assert cut is not None
            assert new.handover.held and not fakes.deepgram.connections[1:]  # nothing sent to the STT yet
            new.handover.release(cut)
            await asyncio.wait_for(runs[0], 10)  # the old ears end by themselves once the cut is finalized
            await asyncio.sleep(FIRST_FOUR_S - 1.2 + 1.0 - (tracker.clock() - asked_at))
            new.stop()
            await asyncio.wait_for(runs[1], 10)
            await stt.aclose()
    finally:
        await stop_fakes(fakes)

    said = MONOLOGUE.transcripts[:4]
    context = f"old {[u.text for u in old_heard]}, new {[u.text for u in new_heard]}"
    assert [u.text for u in old_heard] == said[:1], context
    assert [u.text for u in new_heard] == said[1:], context  # nothing before the cut, nothing lost after
    assert [u.id for u in new_heard] == ["ann~new-0", "ann~new-1", "ann~new-2"]
    # the cut lies in the pause after the first sentence (1.81-2.71 s of its audio), inside the silence
    cut_audio = old.replay.timeline - CUT_MARGIN_S
    assert 1.81 + CUT_MARGIN_S - 0.05 <= cut_audio <= 2.71 - CUT_MARGIN_S, context


async def test_held_ears_of_a_speaker_who_stops_before_the_cut_interpret_nothing(
    one_sentence_fakes: Fakes,
) -> None:
    async with aiohttp.ClientSession() as http:
        stt = build_stt(one_sentence_fakes.settings(), "en", http)
        heard = Heard()
        ears = Ears(
            stt=stt, frames=live_track(read_wav(MONOLOGUE.wav)), out=heard, tracker=LatencyTracker(),
            speaker="ann", language="en", standby=True,
        )  # fmt: skip
        run = asyncio.create_task(ears.run())
        await asyncio.wait_for(ears.handover.hearing.wait(), 5)
        await asyncio.sleep(2.0)  # the first sentence is held
        ears.stop()
        await asyncio.wait_for(run, 5)
        await stt.aclose()
    assert heard == [] and one_sentence_fakes.deepgram.connections == []


async def test_the_drain_flag_reaches_a_process_through_its_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(DRAIN_FLAG_ENV, raising=False)
    assert DrainFlag.of_job() is None
    worker = DrainFlag.for_worker()
    try:
        job = DrainFlag.of_job()
        assert job is not None and job.path == worker.path and not job.is_raised()
        waiting = asyncio.create_task(job.raised())
        await asyncio.sleep(0.3)
        assert not waiting.done()
        worker.raise_flag()
        await asyncio.wait_for(waiting, 2)
    finally:
        worker.remove()
    assert not worker.path.parent.exists()


def test_a_handover_adds_its_key_to_the_rooms_metadata_and_the_job_takes_it_off() -> None:
    room = json.dumps({"target_languages": ["es"], "glossary": {"keep": ["LiveKit"]}})
    metadata = handover_metadata(room, "agent-AJ_old")
    assert json.loads(metadata) == {**json.loads(room), "handover_from": "agent-AJ_old"}
    old, stripped = split_handover(metadata)
    assert old == "agent-AJ_old" and stripped is not None and json.loads(stripped) == json.loads(room)
    settings, problems = parse_room_settings(stripped, None)
    assert problems == [] and settings.target_languages == ("es",)
    # taking over again from the one that took over: the room's metadata, the newest key
    again = handover_metadata(metadata, "agent-AJ_new")
    assert json.loads(again) == {**json.loads(room), "handover_from": "agent-AJ_new"}
    # no handover, or metadata that is not a JSON object: untouched
    for untouched in (room, "", None, "not json", "[1]", json.dumps({"handover_from": 3})):
        assert split_handover(untouched) == (None, untouched)
    assert json.loads(handover_metadata(None, "a")) == {"handover_from": "a"}
