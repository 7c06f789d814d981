"""A whole room through a fake of the room surface, for what a real room cannot set up quickly: provider
outages (captions without audio, both LLMs down) and speech timed to the millisecond (several speakers into
one track, in the order their speech ended). Nothing the session started is left running afterwards.
Everything else about rooms (dispatch, tracks per language, participants' attributes, mute/leave/rejoin,
room metadata, agents, the room closing) is tested in a real room: tests/test_real_room.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from livekit.agents import tts
from livekit.agents.types import (
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    TOPIC_TRANSCRIPTION,
)

from agent.providers.build import build_llm, build_stt, build_tts
from agent.room.attributes import ParticipantAttributes
from agent.room.room_io import ATTR_FAULTS, ATTR_LANGUAGES, ATTR_SPEAKER, ATTR_WARNINGS
from agent.room.session import ClonerFactory, RoomSession
from agent.run.filemode import read_wav
from agent.settings.config import Settings
from agent.telemetry.latency import LatencyTracker
from tests.conftest import DIALOGUE, ONE_SENTENCE, Fakes, start_room_fakes, stop_fakes
from tests.fakes.room import FakeParticipant, FakePublication, FakeRoom, SentText
from tests.loopback import LoopbackListener, LoopbackSpeaker, delayed, eventually, tone_sequence


@dataclass
class RoomHarness:
    fakes: Fakes
    room: FakeRoom
    session: RoomSession
    tracker: LatencyTracker
    speakers: list[LoopbackSpeaker] = field(default_factory=list)
    listeners: dict[str, LoopbackListener] = field(default_factory=dict)

    def speak(self, participant: FakeParticipant, wav: Path, delay_s: float = 0.0) -> FakePublication:
        pcm = read_wav(wav)
        speaker = LoopbackSpeaker(delayed(pcm, delay_s) if delay_s else pcm)
        self.speakers.append(speaker)
        publication = self.room.publish_audio(participant, speaker.track)
        speaker.start()
        return publication

    def listen(self, language: str) -> LoopbackListener:
        track = self.room.local_participant.published[f"interpretation-{language}"]
        self.listeners[language] = listener = LoopbackListener(24000, track)
        return listener

    def captions(self, *, final: bool = True, translated: bool | None = None) -> list[SentText]:
        out = []
        for sent in self.room.local_participant.texts:
            assert sent.topic == TOPIC_TRANSCRIPTION
            if final and sent.attributes[ATTRIBUTE_TRANSCRIPTION_FINAL] != "true":
                continue
            if translated is not None and (ATTR_SPEAKER in sent.attributes) != translated:
                continue
            out.append(sent)
        return out

    def played(self, language: str) -> list[str]:
        return list(self.session.outputs[language].channel.mouth.played)


@contextlib.asynccontextmanager
async def room_harness(
    fakes: Fakes,
    settings: Settings,
    *,
    metadata: str = "",
    cloner: Callable[[aiohttp.ClientSession], ClonerFactory] | None = None,
    attributes: ParticipantAttributes | None = None,
) -> AsyncIterator[RoomHarness]:
    """A `RoomSession` on the real plugins against `fakes` (started), in a fake room with `metadata`;
    `cloner` builds the session's own-voice cloner on the harness's HTTP session. The session, the
    participants' loopbacks and the providers are closed afterwards (the fakes are the caller's)."""
    async with aiohttp.ClientSession() as http:
        llm, stt = build_llm(settings), build_stt(settings, "en", http)

        def tts_for(language: str, voice: str | None) -> tts.TTS:
            return build_tts(settings, language, http, voice)

        room = FakeRoom(metadata=metadata)
        tracker = LatencyTracker()
        session = RoomSession(
            room=room,
            settings=settings,
            stt=stt,
            llm=llm,
            tts_factory=tts_for,
            tracker=tracker,
            cloner=cloner(http) if cloner is not None else None,
            attributes=attributes,
        )
        h = RoomHarness(fakes, room, session, tracker)
        try:
            yield h
        finally:
            await session.aclose()
            for listener in h.listeners.values():
                await listener.aclose()
            for speaker in h.speakers:
                await speaker.aclose()
            await llm.aclose()
            await stt.aclose()


@pytest.fixture
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[RoomHarness]:
    fakes = await start_room_fakes()
    settings = fakes.settings(**getattr(request, "param", {}))  # parametrized indirectly: the worker's env
    tasks_before = asyncio.all_tasks()
    async with room_harness(fakes, settings) as h:
        yield h

    # nothing the session started is left running (tasks being cancelled get to end first)
    def leaked() -> list[asyncio.Task[object]]:
        tasks = asyncio.all_tasks() - tasks_before - {asyncio.current_task()}
        return [t for t in tasks if t is not None and not t.done()]

    with contextlib.suppress(AssertionError):
        await eventually(lambda: not leaked(), within_s=5.0, what="the session's tasks to end")
    assert leaked() == [], [t.get_coro() for t in leaked()]
    await stop_fakes(fakes)
    assert all(c.closed for c in fakes.deepgram.connections), "an STT stream was left open"


async def test_speakers_sharing_a_language_are_spoken_in_the_order_their_speech_ended(harness: RoomHarness):
    room, session = harness.room, harness.session
    await session.start()
    alice = room.join("alice", attributes={"language": "en"})
    carol = room.join("carol", attributes={"language": "en"})
    await session.settled()
    listener = harness.listen("es")
    # the fake STT hands out one English script in the order segments end, whoever speaks them
    first, second, third = DIALOGUE.transcripts
    harness.fakes.deepgram.scripts["en"] = [first, ONE_SENTENCE.transcripts[0], second, third]
    harness.speak(alice, DIALOGUE.wav)  # speech ends at 1.96, 4.97, 7.53 s
    harness.speak(carol, ONE_SENTENCE.wav, delay_s=1.5)  # speech ends at 3.33 s
    await eventually(lambda: len(harness.played("es")) == 4, what="four utterances spoken")
    assert harness.played("es") == ["alice-0-es", "carol-0-es", "alice-1-es", "alice-2-es"]
    # one after the other on the one track, never mixed over each other: wait until four tones were heard
    await eventually(lambda: len(tone_sequence(listener.audio(), 24000)) >= 4, what="four tones heard")
    assert tone_sequence(listener.audio(), 24000) == [400, 500, 600, 800]


async def test_captions_are_sent_even_when_audio_cannot_be(
    harness: RoomHarness, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    room, session = harness.room, harness.session
    harness.fakes.cartesia.error_next(3)  # the first try and both retries of the utterance's TTS fail
    harness.fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts)
    await session.start()
    alice = room.join("alice", attributes={"language": "en"})
    harness.speak(alice, ONE_SENTENCE.wav)
    await eventually(lambda: len(harness.captions(translated=True)) == 1, what="the translated caption")
    caption = harness.captions(translated=True)[0]
    assert caption.text == ONE_SENTENCE.translations["camera"]
    assert caption.attributes["language"] == "es"
    assert harness.played("es") == []  # nothing could be spoken...
    assert harness.tracker.failed == 1  # ...and that is counted, not hidden
    # the failure was logged, and no log message holds what was said or its translation
    assert any("failed to synthesize speech" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        message = record.getMessage()
        assert ONE_SENTENCE.transcripts[0] not in message and caption.text not in message, message


async def test_both_llms_down_captions_flow_the_fault_shows_and_speech_resumes_when_one_returns(
    harness: RoomHarness,
):
    room, session = harness.room, harness.session
    harness.fakes.deepgram.scripts["en"] = list(DIALOGUE.transcripts)
    for fake in (harness.fakes.cerebras, harness.fakes.groq):
        fake.outage_status = 503
    await session.start()
    alice = room.join("alice", attributes={"language": "en"})
    harness.speak(alice, DIALOGUE.wav)

    # the speaker's captions keep coming while no LLM answers, and the agent says what is wrong
    await eventually(lambda: len(harness.captions(translated=False)) == 2, what="two source captions")
    await eventually(lambda: room.local_participant.attributes.get(ATTR_FAULTS) == "llm", what="the fault")
    assert harness.played("es") == [] and harness.captions(translated=True) == []

    for fake in (harness.fakes.cerebras, harness.fakes.groq):
        fake.outage_status = None  # the providers return: nothing said meanwhile is lost
    await eventually(lambda: len(harness.captions(translated=True)) == 3, what="every translation")
    assert [c.text for c in harness.captions(translated=True)] == list(DIALOGUE.translations.values())
    await eventually(lambda: len(harness.played("es")) == 3, what="the speech")
    assert harness.played("es") == ["alice-0-es", "alice-1-es", "alice-2-es"]
    await eventually(lambda: ATTR_FAULTS not in room.local_participant.attributes, what="fault cleared")
    assert [c.text for c in harness.captions(translated=False)] == DIALOGUE.transcripts


async def an_utterance_being_synthesized(harness: RoomHarness) -> None:
    """The session started, alice said a sentence, and its translation is being synthesized (for a minute)."""
    harness.fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts)
    harness.fakes.cartesia.ttfb_s = 60.0
    await harness.session.start()
    alice = harness.room.join("alice", attributes={"language": "en"})
    harness.speak(alice, ONE_SENTENCE.wav)
    await eventually(lambda: len(harness.fakes.cerebras.requests) == 1, what="a translation request")


async def test_the_room_closing_mid_utterance_stops_everything_at_once(
    harness: RoomHarness, caplog: pytest.LogCaptureFixture
):
    # what a real server does when a room is deleted (tests/test_real_room.py): the participants leave, the
    # agent is disconnected, and a call to the room made meanwhile (unpublishing a track nobody wants any
    # more) is never answered
    caplog.set_level(logging.INFO)
    room, session = harness.room, harness.session
    await an_utterance_being_synthesized(harness)
    await room.close(disconnect_after_s=0.5)
    await asyncio.wait_for(session.aclose(), 30)  # a guard against hanging, not a timing
    assert session.outputs == {} and session.speakers == {}
    assert harness.tracker.failed == 1 and harness.tracker.spoken == 0
    records = [r for r in caplog.records if r.name.startswith("agent.")]
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []
    assert any(r.getMessage() == "the room closed before every utterance was spoken" for r in records)


async def test_the_room_closing_while_the_session_drains_stops_the_drain_at_once(harness: RoomHarness):
    # the worker drains the room (SIGTERM) and meanwhile the room closes (its last person left): the drain
    # must notice, or it waits on a room that no longer answers (a real server's rtc SDK then never answers
    # the unpublishing of a track: "could not find publication to remove")
    room, session = harness.room, harness.session
    await an_utterance_being_synthesized(harness)
    drain = asyncio.create_task(session.aclose())
    await asyncio.sleep(0.2)
    assert not drain.done()  # finishing what was heard
    await room.close(disconnect_after_s=0.5)
    await asyncio.wait_for(drain, 5)  # a guard against hanging (the drain's own bound is 10 s), not a timing
    assert session.outputs == {} and session.speakers == {}


async def test_a_storm_of_room_events_is_coalesced_and_the_session_ends_in_the_rooms_state(
    harness: RoomHarness,
):
    # a front end toggling mute and its languages faster than the session applies them: the control queue
    # holds one "look at the room again" step, not one per event, and nothing said is lost
    room, session = harness.room, harness.session
    harness.fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts)
    await session.start()
    alice = room.join("alice", attributes={"language": "en", "interpret_to": "de"})
    publication = harness.speak(alice, ONE_SENTENCE.wav)
    await session.settled()
    assert sorted(session.outputs) == ["de", "es"]
    (ears,) = [speaker.ears for speaker in session.speakers.values()]
    for i in range(20):  # no await in between: the control task sees none of them until the storm is over
        room.mute(alice, publication, True)
        room.mute(alice, publication, False)
        room.set_attributes(alice, interpret_to="fr" if i % 2 else "de")
    room.set_metadata('{"formality": "formal"}')
    pending = session.pending_control_steps
    await session.settled()
    # the room as it is now: alice unmuted (her ears never restarted), and she wants French (her
    # attribute changes are applied at most once a second: the latest, once its second has passed)
    assert [speaker.ears for speaker in session.speakers.values()] == [ears]
    await eventually(lambda: sorted(session.outputs) == ["es", "fr"], what="her latest languages")
    assert pending <= 3, pending
    await eventually(lambda: len(harness.captions(translated=True)) == 2, what="both translations")
    assert sorted(c.attributes["language"] for c in harness.captions(translated=True)) == ["es", "fr"]


def agent_warnings(room: FakeRoom) -> list[str]:
    return list(json.loads(room.local_participant.attributes.get(ATTR_WARNINGS, "[]")))


@pytest.mark.parametrize("harness", [{"MAX_LANGUAGES": "3"}], indirect=True)
async def test_languages_past_max_languages_wait_in_the_order_asked_and_take_a_freed_place(
    harness: RoomHarness, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    room, session = harness.room, harness.session
    await session.start()
    ann = room.join("ann", attributes={"interpret_to": "fr"})
    room.join("ben", attributes={"interpret_to": "de"})
    room.join("cid", attributes={"interpret_to": "it"})
    room.join("dan", attributes={"interpret_to": "pt"})
    await session.settled()
    # the worker's TARGET_LANGUAGE (no room target_languages), then in the order they were asked for
    assert sorted(session.outputs) == ["de", "es", "fr"]
    await eventually(
        lambda: room.local_participant.attributes.get(ATTR_LANGUAGES) == "de,es,fr", what="langs"
    )
    assert agent_warnings(room) == ["languages not interpreted (MAX_LANGUAGES is 3): it, pt"]
    cap_logs = [r for r in caplog.records if r.getMessage().startswith("language cap")]
    assert [getattr(r, "languages", None) for r in cap_logs] == [["it", "pt"]]

    # asking for one more later does not push anyone out: it waits at the back
    room.set_attributes(ann, interpret_to="fr,ja")
    await session.settled()
    assert sorted(session.outputs) == ["de", "es", "fr"]
    await eventually(
        lambda: agent_warnings(room) == ["languages not interpreted (MAX_LANGUAGES is 3): it, pt, ja"]
    )

    # the last listener of German leaves: the first language waiting gets its place
    room.leave(room.remote_participants["ben"])
    await session.settled()
    assert sorted(session.outputs) == ["es", "fr", "it"]
    await eventually(
        lambda: agent_warnings(room) == ["languages not interpreted (MAX_LANGUAGES is 3): pt, ja"]
    )

    # the room's own target languages come first, and a settings problem is still reported beside the cap
    room.set_metadata(json.dumps({"target_languages": ["ko"], "formality": "very"}))
    await session.settled()
    assert sorted(session.outputs) == ["fr", "it", "ko"]
    await eventually(lambda: len(agent_warnings(room)) == 2, what="both warnings")
    problem, cap = agent_warnings(room)
    assert problem.startswith("room metadata: formality") and cap.endswith("(MAX_LANGUAGES is 3): pt, ja")
