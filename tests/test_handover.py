"""A deploy mid-meeting, in parts (the whole, in a real room with two workers: tests/test_handover_room.py):
the ears of the interpreter handing over stop at the speaker's next pause, the ears of the one taking over
start there, from the audio they held; the worker tells its jobs it drains through a file; a handover's job
metadata."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import aiohttp
import pytest
from livekit import rtc

from agent.loops.ears.handover import CUT_MARGIN_S
from agent.loops.ears.loop import Ears
from agent.loops.ears.replay import AudioClock
from agent.providers.build import build_stt
from agent.room.handover import Takeover
from agent.room.room_io import ATTR_ALIVE, ATTR_CUT_AT, ATTR_STANDBY, RoomPublisher
from agent.room.speakers import Speakers
from agent.run.filemode import Pcm, read_wav
from agent.run.handover import DRAIN_FLAG_ENV, DrainFlag, handover_metadata, split_handover
from agent.settings.room_settings import parse_room_settings
from agent.telemetry.latency import LatencyTracker
from tests.conftest import MONOLOGUE, Fakes, stop_fakes
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.loopback import eventually
from tests.test_ears import Heard, live_track

FIRST_THREE_S = 6.3  # the monologue's first three sentences (the third ends at 5.91 s)


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


async def hand_over(shift_s: float = 0.0) -> tuple[list[str], list[str], float]:
    """Two interpreters' ears on one speaker, each hearing the speech live: the one handing over is asked to
    cut in the middle of the first sentence; the one taking over, on standby until then, is released from
    the cut's clock time moved by `shift_s` (two machines' clocks and jitter buffers disagree). What each
    transcribed, and where the cut lies on the old one's audio."""
    fakes = Fakes(
        deepgram=FakeDeepgram(transcript_for=MONOLOGUE.transcript_for),
        cerebras=FakeLLM(),
        groq=FakeLLM(),
        cartesia=FakeCartesia(),
    )
    for fake in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await fake.start()
    monologue = read_wav(MONOLOGUE.wav)
    speech = Pcm(monologue.samples[: int(FIRST_THREE_S * monologue.sample_rate)], monologue.sample_rate)
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
            new.handover.release(cut + shift_s, at_pause=True)
            await asyncio.wait_for(runs[0], 10)  # the old ears end by themselves once the cut is finalized
            await asyncio.sleep(FIRST_THREE_S - 1.2 + 1.0 - (tracker.clock() - asked_at))
            new.stop()
            await asyncio.wait_for(runs[1], 10)
            await stt.aclose()
    finally:
        await stop_fakes(fakes)
    assert [u.id for u in new_heard][:1] == ["ann~new-0"]
    return [u.text for u in old_heard], [u.text for u in new_heard], old.replay.timeline - CUT_MARGIN_S


async def test_a_speaker_handed_over_at_a_pause_loses_no_sentence_and_none_is_heard_twice() -> None:
    """The old ears cut in the pause after the first sentence and finalize it; the new ones transcribe every
    sentence after the cut, from the audio they held."""
    old, new, cut_audio = await hand_over()
    said = MONOLOGUE.transcripts[:3]
    assert old == said[:1], f"old {old}, new {new}"
    assert new == said[1:], f"old {old}, new {new}"  # nothing before the cut, nothing lost after
    # the cut lies in the pause after the first sentence (1.81-2.71 s of its audio), inside the silence
    assert 1.81 + CUT_MARGIN_S - 0.05 <= cut_audio <= 2.71 - CUT_MARGIN_S


@pytest.mark.parametrize("shift_s", [-0.45, 0.75])
async def test_a_cut_that_lands_beside_the_pause_on_the_new_ears_moves_into_it(shift_s: float) -> None:
    """The cut, as the new ears place it, lands in the first sentence's tail (a fragment of it transcribed
    twice: seen in `python -m bench fleet`'s deploy) or in the second's start (its first words lost): the
    new ears move it into the pause they heard there."""
    old, new, _ = await hand_over(shift_s)
    said = MONOLOGUE.transcripts[:3]
    assert (old, new) == (said[:1], said[1:])


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


# -- the interpreter taking over, against a stand-in room (the real one: tests/test_handover_room.py) ------


class Publications(dict[str, SimpleNamespace]):
    def add(self, sid: str, name: str, kind: int = rtc.TrackKind.KIND_AUDIO) -> None:
        self[sid] = SimpleNamespace(name=name, kind=kind, muted=False)


def participant(identity: str, kind: int, **attributes: str) -> SimpleNamespace:
    return SimpleNamespace(
        identity=identity, kind=kind, attributes=attributes, track_publications=Publications()
    )


class StandInSpeakers:
    """What `Takeover` uses of `Speakers`: whose audio arrives, and the release."""

    def __init__(self) -> None:
        self.holding = False
        self.hearing_sids: set[str] = set()
        self.released: list[tuple[dict[str, float], float | None]] = []

    def hearing(self, sid: str) -> bool:
        return sid in self.hearing_sids

    def release(self, cuts: dict[str, float], default: float | None) -> None:
        self.holding = False
        self.released.append((cuts, default))


class StandInPublisher:
    def __init__(self) -> None:
        self.attributes: dict[str, str] = {}

    def set_attributes(self, **attributes: str) -> None:
        self.attributes.update(attributes)


def takeover_in(room: SimpleNamespace) -> tuple[Takeover, StandInSpeakers, StandInPublisher]:
    speakers, publisher = StandInSpeakers(), StandInPublisher()
    takeover = Takeover(
        room=room, speakers=cast(Speakers, speakers), publisher=cast(RoomPublisher, publisher), old="old",
        clock=time.perf_counter,
    )  # fmt: skip
    return takeover, speakers, publisher


AGENT, STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT, rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD


async def test_taking_over_listens_once_every_speaker_is_heard_then_takes_the_cuts() -> None:
    old, alice = participant("old", AGENT), participant("alice", STANDARD)
    alice.track_publications.add("TR_a", "microphone")
    room = SimpleNamespace(remote_participants={"old": old, "alice": alice})
    takeover, speakers, publisher = takeover_in(room)
    assert speakers.holding  # ears start on hold from the start
    run = asyncio.create_task(takeover.run())
    await asyncio.sleep(0.3)
    assert ATTR_STANDBY not in publisher.attributes  # alice's audio has not arrived yet
    speakers.hearing_sids.add("TR_a")
    await eventually(lambda: publisher.attributes.get(ATTR_STANDBY) == "true", within_s=2)
    before = time.perf_counter()
    cut_ms = time.time() * 1000 - 500
    takeover.on_attributes({ATTR_CUT_AT: json.dumps({"alice": cut_ms})}, old)
    await asyncio.wait_for(run, 2)
    after = time.perf_counter()
    [(cuts, default)] = speakers.released
    assert default is None and set(cuts) == {"alice"}  # a speaker not cut: from all that was held
    # the cut, on this clock: 0.5 s before the moment it was read, however long reading it took
    assert before - 0.5 - 0.01 <= cuts["alice"] <= after - 0.5 + 0.01
    assert publisher.attributes[ATTR_STANDBY] == "" and not speakers.holding


async def test_taking_over_from_one_that_went_stale_or_left_starts_from_when_it_was_last_live() -> None:
    for gone in ("stale", "left"):
        old = participant("old", AGENT)
        room = SimpleNamespace(remote_participants={"old": old})
        takeover, speakers, _ = takeover_in(room)
        run = asyncio.create_task(takeover.run())
        await asyncio.sleep(0.3)
        last_live = time.perf_counter()
        if gone == "stale":  # its heartbeat stopped 4 s ago
            old.attributes[ATTR_ALIVE] = str(round(time.time() * 1000 - 4000))
            last_live -= 4.0
        else:
            del room.remote_participants["old"]
        await asyncio.wait_for(run, 2)
        [(cuts, default)] = speakers.released
        assert cuts == {} and default is not None and abs(default - last_live) < 0.2, gone


async def test_the_first_speech_of_a_language_waits_for_the_other_interpreters_track_of_it_to_go() -> None:
    old = participant("old", AGENT)
    old.track_publications.add("TR_es", "interpretation-es")
    room = SimpleNamespace(remote_participants={"old": old})
    takeover, _, _ = takeover_in(room)
    await asyncio.wait_for(takeover.turn("fr"), 1)  # the other does not speak French
    waiting = asyncio.create_task(takeover.turn("es"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    del old.track_publications["TR_es"]  # it spoke all it heard and unpublished its track
    await asyncio.wait_for(waiting, 1)
    old.track_publications.add("TR_es2", "interpretation-es")
    await asyncio.wait_for(takeover.turn("es"), 0.1)  # once its turn came, a language does not wait again
