"""Nothing spent on nobody (`agent/room/audience.py`): a target language is spoken while a human hears it,
captioned while someone only reads it, and costs nothing while neither; a listener who comes back hears the
next utterance. The rules on fake participants; a room through the fake room, with what each language cost;
and in a real room, a listener who leaves and comes back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from livekit import rtc

from agent.loops.pipeline import Demand
from agent.room.audience import Audience
from agent.room.auto_language import HeardLanguages
from agent.room.languages import LanguageChoice
from agent.run.filemode import read_wav
from tests.conftest import ONE_SENTENCE, Fakes, start_room_fakes, stop_fakes
from tests.fakes.room import FakeParticipant
from tests.livekit_server import LiveKitServer
from tests.loopback import eventually
from tests.real_room import RealRoom, real_room
from tests.test_room import RoomHarness, harness  # noqa: F401  (the fixture)

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
EGRESS = rtc.ParticipantKind.PARTICIPANT_KIND_EGRESS
LISTENERS = {"SYNTHESIS": "listeners"}


def test_a_language_is_spoken_while_a_person_hears_it_and_captioned_while_one_only_reads_it(fakes_settings):
    choice = LanguageChoice(fakes_settings, HeardLanguages())
    people = [
        FakeParticipant("ana", attributes={"interpret_to": "es", "listening_to": "es-MX"}),  # hears es
        FakeParticipant("rita", attributes={"interpret_to": "fr", "listening_to": "none"}),  # reads fr only
        FakeParticipant("olga", attributes={"interpret_to": "de"}),  # says nothing: hears what it asks for
        FakeParticipant("bot", kind=AGENT, attributes={"interpret_to": "it", "listening_to": "it"}),
        FakeParticipant("recorder", kind=EGRESS, attributes={"listening_to": "pt"}),
        FakeParticipant("ed", attributes={"language": "en", "listening_to": "none"}),  # a speaker reading en
    ]
    audience = Audience(people, choice.attributes.of, choice.asks)
    demands = {code: audience.demand(code) for code in ("es", "fr", "de", "it", "pt", "en", "ja")}
    assert demands == {
        "es": Demand.SPEAK,
        "fr": Demand.CAPTION,
        "de": Demand.SPEAK,
        "it": Demand.NONE,  # an agent is nobody
        "pt": Demand.NONE,  # a recorder too
        "en": Demand.CAPTION,
        "ja": Demand.NONE,
    }
    assert audience.demand("ja", always=True) is Demand.SPEAK  # SYNTHESIS=always


@pytest.fixture
async def fakes_settings():
    fakes = await start_room_fakes()
    try:
        yield fakes.settings(**LISTENERS)
    finally:
        await stop_fakes(fakes)


@pytest.mark.parametrize("harness", [LISTENERS], indirect=True)
async def test_a_room_spends_on_each_language_only_what_its_people_use(harness: RoomHarness):  # noqa: F811
    room, session = harness.room, harness.session
    room.metadata = json.dumps({"target_languages": ["es", "fr", "de"]})
    harness.fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts)
    await session.start()
    alice = room.join("alice", attributes={"language": "en", "listening_to": "none"})
    room.join("ana", attributes={"interpret_to": "es", "listening_to": "es"})  # hears Spanish
    room.join("rita", attributes={"interpret_to": "fr", "listening_to": "none"})  # reads French
    await session.settled()  # nobody hears or reads German (a room target language all the same)
    assert set(session.outputs) == {"en", "es", "fr", "de"}
    harness.speak(alice, ONE_SENTENCE.wav)

    def translated(language: str) -> int:
        return sum(c.attributes["language"] == language for c in harness.captions(translated=True))

    await eventually(lambda: translated("es") == 1 and translated("fr") == 1, what="es and fr captions")
    await eventually(lambda: harness.played("es") == ["alice-0-es"], what="es spoken")
    assert harness.played("fr") == [] and translated("de") == 0
    # what each language cost: Spanish an LLM request and its speech, French the request only, German nothing
    usage = session.usage
    assert {m["language"] for m in harness.fakes.cartesia.messages if "language" in m} == {"es"}
    assert usage.total("characters", language="es") == len(ONE_SENTENCE.translations["camera"])
    assert usage.total("characters", language="fr") == 0
    assert usage.total("input_tokens", language="fr") > 0 and usage.total("output_tokens", language="fr") > 0
    assert usage.total("input_tokens", language="de") == usage.total("characters", language="de") == 0
    assert len(harness.fakes.cerebras.usage_sent) == 2  # es and fr
    assert usage.total("audio_seconds", provider="deepgram") > 0
    assert usage.cost_usd > 0


@pytest.fixture
async def room(livekit_server: LiveKitServer, tmp_path: Path) -> AsyncIterator[RealRoom]:
    fakes = await start_room_fakes()
    try:
        async with real_room(livekit_server, fakes, tmp_path, STT_ENDPOINTING_MS="600", **LISTENERS) as room:
            yield room
            room.check_worker_output()
    finally:
        await stop_fakes(fakes)


def es_contexts(fakes: Fakes) -> int:
    """The Spanish TTS contexts the fake Cartesia was asked for."""
    return len({m["context_id"] for m in fakes.cartesia.messages if m.get("language") == "es"})


async def test_a_listener_leaves_speech_stops_and_captions_go_on_and_resumes_when_they_return(room: RealRoom):
    fakes = room.fakes
    fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts) * 3
    sentence = read_wav(ONE_SENTENCE.wav)
    alice = await room.speaker("alice", attributes={"language": "en"}, dispatch=room.dispatch())
    rita = await room.listener(
        "rita", attributes={"interpret_to": "es", "listening_to": "none"}
    )  # reads only
    leo = await room.listener("leo", attributes={"interpret_to": "es", "listening_to": "es"})
    await room.agent_tracks(alice, "interpretation-en", "interpretation-es")

    def captions() -> int:
        return len(rita.final_captions(translated=True, language="es"))

    def demands(value: str) -> int:
        return room.worker.output().count(f'"demand": "{value}"')

    alice.say(sentence)
    await eventually(lambda: captions() == 1, within_s=40, what="the first translation")
    await eventually(lambda: len(leo.audio("interpretation-es")) > 0, what="leo hears it")
    assert es_contexts(fakes) == 1

    stopped, resumed = demands("caption"), demands("speak")
    await room.leave(leo)  # the last listener goes: Spanish is read (rita), no longer heard
    await eventually(lambda: demands("caption") > stopped, within_s=20, what="synthesis stopped")
    alice.say(sentence)
    await eventually(lambda: captions() == 2, within_s=40, what="the second translation, captioned")
    assert es_contexts(fakes) == 1  # nothing synthesized for nobody

    leo = await room.listener("leo", attributes={"interpret_to": "es", "listening_to": "es"})
    await eventually(lambda: demands("speak") > resumed, within_s=20, what="synthesis resumed")
    alice.say(sentence)
    await eventually(lambda: captions() == 3, within_s=40, what="the third translation")
    await eventually(lambda: es_contexts(fakes) == 2, what="the third spoken")
    await eventually(lambda: len(leo.audio("interpretation-es")) > 0, what="leo hears the next utterance")
