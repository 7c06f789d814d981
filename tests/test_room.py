"""A whole room, through a fake of the room surface: every speaker, every wanted language, captions,
agent state, per-room settings, and nothing left running afterwards."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from livekit.agents.types import (
    ATTRIBUTE_AGENT_STATE,
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    ATTRIBUTE_TRANSCRIPTION_TRACK_ID,
    TOPIC_TRANSCRIPTION,
)

from agent.filemode import read_wav
from agent.latency import LatencyTracker
from agent.providers import build_llm, build_stt, build_tts
from agent.room import ATTR_FAULTS, ATTR_LANGUAGES, ATTR_SPEAKER, ATTR_WARNINGS
from agent.session import RoomSession
from tests.conftest import DIALOGUE, ONE_SENTENCE, SPANISH, Fakes, start_room_fakes
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

    def speak(self, participant: FakeParticipant, wav, delay_s: float = 0.0) -> FakePublication:  # type: ignore[no-untyped-def]
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


@pytest.fixture
async def harness() -> AsyncIterator[RoomHarness]:
    fakes = await start_room_fakes()
    settings = fakes.settings()
    tasks_before = asyncio.all_tasks()
    async with aiohttp.ClientSession() as http:
        llm, stt = build_llm(settings), build_stt(settings, "en", http)
        tts_made = []

        def tts_for(language: str, voice: str | None):  # type: ignore[no-untyped-def]
            tts_made.append((language, voice))
            return build_tts(settings, language, http, voice)

        room = FakeRoom(metadata="")
        tracker = LatencyTracker()
        session = RoomSession(
            room=room,
            settings=settings,
            stt=stt,
            llm=llm,
            tts_factory=tts_for,
            tracker=tracker,
            job_metadata=None,
        )
        h = RoomHarness(fakes, room, session, tracker)
        h.tts_made = tts_made  # type: ignore[attr-defined]
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
            # nothing the session started is left running
            await asyncio.sleep(0.1)
            leaked = [t for t in asyncio.all_tasks() - tasks_before if not t.done()]
            leaked = [t for t in leaked if t is not asyncio.current_task()]
            assert leaked == [], [t.get_coro() for t in leaked]
            for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
                await server.aclose()
    assert all(c.closed for c in fakes.deepgram.connections), "an STT stream was left open"


async def test_two_speakers_in_two_languages_get_a_two_way_conversation(harness: RoomHarness):
    room, session = harness.room, harness.session
    await session.start()
    alice = room.join("alice", attributes={"language": "en"})
    bob = room.join("bob", attributes={"language": "es"})
    await session.settled()
    # the default target (es) and what the participants speak: one track per language
    assert set(room.local_participant.published) == {"interpretation-es", "interpretation-en"}
    assert room.local_participant.attributes[ATTR_LANGUAGES] == "en,es"
    es_listener, en_listener = harness.listen("es"), harness.listen("en")

    alice_pub = harness.speak(alice, DIALOGUE.wav)
    bob_pub = harness.speak(bob, SPANISH.wav)
    await session.settled()
    assert len(session.speakers) == 2
    await eventually(lambda: len(harness.played("es")) == 3 and len(harness.played("en")) == 2, what="speech")
    await eventually(lambda: room.local_participant.attributes.get(ATTRIBUTE_AGENT_STATE) == "listening")

    # English was spoken on the Spanish track only, Spanish on the English track only
    assert harness.played("es") == ["alice-0-es", "alice-1-es", "alice-2-es"]
    assert harness.played("en") == ["bob-0-en", "bob-1-en"]
    await asyncio.sleep(0.5)
    assert tone_sequence(es_listener.audio(), 24000) == [400, 600, 800]
    assert tone_sequence(en_listener.audio(), 24000) == [300, 700]

    # source captions: attributed to the speaker and their track, interim then final, stable ids
    source = harness.captions(translated=False)
    alice_finals = [c for c in source if c.sender_identity == "alice"]
    assert [c.text for c in alice_finals] == DIALOGUE.transcripts
    assert {c.attributes[ATTRIBUTE_TRANSCRIPTION_TRACK_ID] for c in alice_finals} == {alice_pub.sid}
    assert {c.attributes["language"] for c in alice_finals} == {"en"}
    bob_finals = [c for c in source if c.sender_identity == "bob"]
    assert [c.text for c in bob_finals] == SPANISH.transcripts
    assert {c.attributes[ATTRIBUTE_TRANSCRIPTION_TRACK_ID] for c in bob_finals} == {bob_pub.sid}
    all_texts = room.local_participant.texts
    first_id = alice_finals[0].attributes[ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID]
    updates = [c for c in all_texts if c.attributes[ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID] == first_id]
    assert [c.attributes[ATTRIBUTE_TRANSCRIPTION_FINAL] for c in updates][-1] == "true"
    assert len(updates) >= 2  # at least one interim before the final

    # translated captions: the agent's own, in the target language, on that language's track
    translated = harness.captions(translated=True)
    es_track = session.outputs["es"].track_sid
    es_captions = [c for c in translated if c.attributes["language"] == "es"]
    assert [c.text for c in es_captions] == list(DIALOGUE.translations.values())
    assert {c.attributes[ATTRIBUTE_TRANSCRIPTION_TRACK_ID] for c in es_captions} == {es_track}
    assert {c.attributes[ATTR_SPEAKER] for c in es_captions} == {"alice"}
    assert {c.sender_identity for c in es_captions} == {room.local_participant.identity}
    en_captions = [c.text for c in translated if c.attributes["language"] == "en"]
    assert en_captions == list(SPANISH.translations.values())

    # every utterance has a latency record, and the agent showed when it was speaking
    assert harness.tracker.spoken == 5 and harness.tracker.failed == 0
    states = [
        a[ATTRIBUTE_AGENT_STATE] for a in room.local_participant.attribute_log if ATTRIBUTE_AGENT_STATE in a
    ]
    assert states[:2] == ["initializing", "listening"] and "speaking" in states and states[-1] == "listening"
    room.leave(alice)
    room.leave(bob)
    await session.settled()
    assert session.speakers == {}


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
    await asyncio.sleep(0.5)
    # one after the other on the one track, never mixed over each other
    assert tone_sequence(listener.audio(), 24000) == [400, 500, 600, 800]


async def test_ears_follow_participants_joining_muting_and_leaving(harness: RoomHarness):
    room, session = harness.room, harness.session
    bot = room.join("other-agent", agent=True)
    await session.start()
    harness.speak(bot, ONE_SENTENCE.wav)  # agents are never interpreted (no echo loops)
    await session.settled()
    assert session.speakers == {}

    alice = room.join("alice", attributes={"language": "en"})
    publication = harness.speak(alice, ONE_SENTENCE.wav)
    await session.settled()
    assert [s.identity for s in session.speakers.values()] == ["alice"]
    first_task = next(iter(session.speakers.values())).task

    room.mute(alice, publication)
    await session.settled()
    assert session.speakers == {} and first_task.done()
    room.mute(alice, publication, muted=False)
    await session.settled()
    assert [s.identity for s in session.speakers.values()] == ["alice"]
    assert next(iter(session.speakers.values())).ears.segment_id.startswith("alice.1-")

    room.unpublish(alice, publication)
    await session.settled()
    assert session.speakers == {}
    publication = harness.speak(alice, ONE_SENTENCE.wav)  # re-publishing starts ears again
    await session.settled()
    assert len(session.speakers) == 1
    task = next(iter(session.speakers.values())).task
    room.leave(alice)
    await session.settled()
    assert session.speakers == {} and task.done()
    await eventually(lambda: all(c.closed for c in harness.fakes.deepgram.connections), what="STT closed")


async def test_wanted_languages_add_and_remove_tracks(harness: RoomHarness):
    room, session = harness.room, harness.session
    await session.start()
    published = room.local_participant.published
    assert set(published) == {"interpretation-es"}  # the worker's default target
    dave = room.join("dave", attributes={"interpret_to": "fr, de"})
    await session.settled()
    assert set(published) == {"interpretation-es", "interpretation-fr", "interpretation-de"}
    room.set_attributes(dave, interpret_to="it")
    await session.settled()
    assert set(published) == {"interpretation-es", "interpretation-it"}
    assert ("unpublish", "interpretation-fr") in room.local_participant.publish_log
    room.leave(dave)
    await session.settled()
    assert set(published) == {"interpretation-es"}
    assert room.local_participant.attributes[ATTR_LANGUAGES] == "es"


async def test_bad_metadata_is_reported_and_the_job_goes_on_with_defaults(harness: RoomHarness):
    room, session = harness.room, harness.session
    session._job_metadata = "{not json"
    room.metadata = json.dumps(
        {
            "target_languages": ["xx", "fr"],
            "voices": {"fr": "not-a-voice"},
            "volume": 11,
            "formality": "royal",
        }
    )
    await session.start()
    warnings = json.loads(room.local_participant.attributes[ATTR_WARNINGS])
    text = "\n".join(warnings)
    for expected in ("job metadata", "not valid JSON", "'xx'", "not-a-voice", "'volume'", "formality"):
        assert expected in text, expected
    assert set(room.local_participant.published) == {"interpretation-fr"}  # the valid part applies
    assert room.local_participant.attributes[ATTRIBUTE_AGENT_STATE] == "listening"

    # the host fixes the room metadata mid-meeting: its warnings clear, the glossary reaches the prompt
    room.set_metadata(
        json.dumps(
            {
                "target_languages": ["es"],
                "glossary": {"keep": ["Acme"], "translate": {"budget": {"es": "partida"}}},
                "formality": "formal",
                "voices": {"es": "a0e99841-438c-4a64-b679-ae501e7d6091"},
            }
        )
    )
    await session.settled()
    remaining = json.loads(room.local_participant.attributes[ATTR_WARNINGS])
    assert len(remaining) == 1 and remaining[0].startswith("job metadata: not valid JSON")
    assert set(room.local_participant.published) == {"interpretation-es"}
    assert ("es", "a0e99841-438c-4a64-b679-ae501e7d6091") in harness.tts_made  # type: ignore[attr-defined]
    alice = room.join("alice", attributes={"language": "en"})
    harness.speak(alice, ONE_SENTENCE.wav)
    await eventually(lambda: len(harness.fakes.cerebras.requests) == 1, what="a translation request")
    system = harness.fakes.cerebras.requests[0].messages[0]["content"]
    assert "budget → partida" in system and "Acme" in system and "formal register" in system

    # a participant asking for languages nobody supports gets the defaults, and no track appears for them
    await session.settled()
    before = set(room.local_participant.published)  # es, and en for alice
    room.join("zed", attributes={"language": "tlh-Klingon", "interpret_to": "zz,x" * 500})
    await session.settled()
    assert set(room.local_participant.published) == before == {"interpretation-es", "interpretation-en"}


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
    await eventually(lambda: room.local_participant.attributes.get(ATTR_FAULTS) == "", what="fault cleared")
    assert [c.text for c in harness.captions(translated=False)] == DIALOGUE.transcripts
