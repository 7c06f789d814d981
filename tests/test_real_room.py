"""The interpreter in a real room: the real LiveKit server, the worker dispatched into it as production runs
it, speakers and listeners as real participants (Opus over WebRTC, text streams through the SFU). Only the
providers are fakes, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from livekit import api, rtc
from livekit.agents.types import (
    ATTRIBUTE_AGENT_STATE,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    ATTRIBUTE_TRANSCRIPTION_TRACK_ID,
)

from agent.room.room_io import ATTR_LANGUAGES, ATTR_SPEAKER, ATTR_WARNINGS
from agent.run.filemode import Pcm, read_wav
from tests.conftest import DIALOGUE, ONE_SENTENCE, SPANISH, start_room_fakes, stop_fakes
from tests.livekit_server import LiveKitServer
from tests.loopback import eventually, tone_sequence
from tests.participants import LISTEN_RATE, Listener, Speaker
from tests.real_room import AGENT_NAME, RealRoom, real_room

# The rtc SDK (Rust, logger "livekit") logs its data channels closing at ERROR when the server deletes the
# room before the SDK has handled the disconnect (seen once in CI): its reaction to the room going, not ours
SDK_CHANNEL_CLOSED = re.compile(
    r"livekit::rtc_engine::rtc_session - publisher data channel '_\w+' closed unexpectedly"
    r'", "level": "ERROR", "name": "livekit"'
)


def tones(listener: Listener, track: str) -> list[float]:
    """The tones heard on a track, in order (Opus smears each tone's edges: slivers are ignored)."""
    return tone_sequence(listener.audio(track), LISTEN_RATE, min_windows=3)


@pytest.fixture
async def room(livekit_server: LiveKitServer, tmp_path: Path) -> AsyncIterator[RealRoom]:
    fakes = await start_room_fakes()
    try:
        # 600 ms endpointing: a short stall of a participant's audio on a busy machine (the test process
        # paces the speech) must not split a sentence; the fixtures pause 1 s between sentences
        async with real_room(livekit_server, fakes, tmp_path, STT_ENDPOINTING_MS="600") as room:
            yield room
            room.check_worker_output()
    finally:
        await stop_fakes(fakes)


async def every_translated_caption(alice: Speaker, bob: Speaker) -> None:
    """alice (English) has heard bob's two Spanish sentences in English, bob alice's three in Spanish."""
    await eventually(
        lambda: (
            len(bob.final_captions(translated=True, language="es")) == 3
            and len(alice.final_captions(translated=True, language="en")) == 2
        ),
        within_s=40,
        what="every translated caption",
    )


async def test_dispatched_by_a_token_it_interprets_a_two_way_conversation(room: RealRoom) -> None:
    # the first participant's token brings the interpreter in; no other settings
    alice = await room.speaker("alice", attributes={"language": "en"}, dispatch=room.dispatch())
    bob = await room.speaker("bob", attributes={"language": "es"})
    await room.agent_tracks(alice, "interpretation-es", "interpretation-en")
    await eventually(lambda: alice.agent_attribute(ATTR_LANGUAGES) == "en,es", what="the languages attribute")
    await eventually(lambda: alice.agent_attribute(ATTRIBUTE_AGENT_STATE) == "listening", what="listening")

    alice.say(read_wav(DIALOGUE.wav))
    bob.say(read_wav(SPANISH.wav))
    # alice hears the Spanish on the English track; bob the English on the Spanish track
    await every_translated_caption(alice, bob)
    await eventually(lambda: alice.agent_attribute(ATTRIBUTE_AGENT_STATE) == "listening", what="done")
    states = alice.agent_values(ATTRIBUTE_AGENT_STATE)  # it showed when it was speaking
    assert "speaking" in states and states[-1] == "listening", states
    assert tones(bob, "interpretation-es") == [400, 600, 800]
    assert tones(alice, "interpretation-en") == [300, 700]

    tracks = alice.agent_tracks()
    assert alice.publication is not None and bob.publication is not None
    for listener, speaker, spoken, target, scenario in (
        (bob, alice, "en", "es", DIALOGUE),
        (alice, bob, "es", "en", SPANISH),
    ):
        # the speaker's words, as the speaker's own stream: interim versions, then the final, per segment
        source = [c for c in listener.captions if not c.translated and c.sender == speaker.identity]
        finals = [c for c in source if c.final]
        assert [c.text for c in finals] == scenario.transcripts
        assert [c.segment_id for c in finals] == [f"{speaker.identity}-{i}" for i in range(len(finals))]
        assert speaker.publication is not None
        assert {c.attributes[ATTRIBUTE_TRANSCRIPTION_TRACK_ID] for c in source} == {speaker.publication.sid}
        assert {c.attributes["language"] for c in source} == {spoken}
        for final in finals:
            versions = [c for c in source if c.segment_id == final.segment_id]
            assert versions[-1] is final and len(versions) >= 2  # interims first, the final last

        # the interpretation, from the agent, on the target's track, naming the speaker
        translated = [c for c in listener.captions if c.translated and c.attributes["language"] == target]
        finals = [c for c in translated if c.final]
        assert [c.text for c in finals] == list(scenario.translations.values())
        ids = [f"{speaker.identity}-{i}-{target}" for i in range(len(finals))]
        assert [c.segment_id for c in finals] == ids
        assert {c.sender for c in translated} == {listener.agent().identity}  # type: ignore[union-attr]
        assert {c.attributes[ATTRIBUTE_TRANSCRIPTION_TRACK_ID] for c in translated} == {
            tracks[f"interpretation-{target}"]
        }
        assert {c.attributes[ATTR_SPEAKER] for c in translated} == {speaker.identity}
        for final in finals:  # "false" when its audio starts, "true" when it ends
            final_flags = [c.final for c in translated if c.segment_id == final.segment_id]
            assert final_flags == [False, True], final.segment_id
    assert ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID in alice.captions[0].attributes


async def test_two_speakers_with_no_language_set_get_a_two_way_conversation(room: RealRoom) -> None:
    """Nothing set (SOURCE_LANGUAGE is auto): each speaker's language is detected (Deepgram nova-3
    language=multi), each utterance routed by it, and each speaker hears their detected language."""
    room.fakes.deepgram.scripts["multi"] = DIALOGUE.transcripts + SPANISH.transcripts
    room.fakes.deepgram.languages.update(dict.fromkeys(SPANISH.transcripts, "es"))
    alice = await room.speaker("alice", dispatch=room.dispatch())
    bob = await room.speaker("bob")
    await room.agent_tracks(alice, "interpretation-es")
    await eventually(lambda: alice.agent_attribute(ATTRIBUTE_AGENT_STATE) == "listening", what="listening")

    alice.say(read_wav(DIALOGUE.wav))
    # English heard from alice: English joins the languages (for her), her words go to Spanish
    await room.agent_tracks(alice, "interpretation-es", "interpretation-en")
    await eventually(lambda: alice.agent_attribute(ATTR_LANGUAGES) == "en,es", what="English added")
    await eventually(
        lambda: len(bob.final_captions(translated=False)) == 3, within_s=40, what="alice's three sentences"
    )
    bob.say(read_wav(SPANISH.wav))
    await every_translated_caption(alice, bob)
    assert tones(bob, "interpretation-es") == [400, 600, 800]
    assert tones(alice, "interpretation-en") == [300, 700]
    for listener, speaker, spoken in ((bob, alice, "en"), (alice, bob, "es")):
        source = [c for c in listener.final_captions(translated=False) if c.sender == speaker.identity]
        assert {c.attributes["language"] for c in source} == {spoken}  # the language detected
    assert alice.agent_attribute(ATTR_LANGUAGES) == "en,es"
    assert {language for language, _ in stt_streams(room)} == {"multi"}


def stt_streams(room: RealRoom) -> list[tuple[str, bool]]:
    """Every STT stream the worker opened, in order: (its language, whether it is closed)."""
    return [(c.query.get("language", ""), c.closed) for c in room.fakes.deepgram.connections]


def open_streams(room: RealRoom) -> int:
    return sum(not closed for _, closed in stt_streams(room))


async def interpreter_dispatches(lk: api.LiveKitAPI, room: str) -> list[api.AgentDispatch]:
    """The room's dispatches of the interpreter (the server also lists its own automatic dispatch, agent_name
    "", that no worker takes)."""
    return [d for d in await lk.agent_dispatch.list_dispatch(room) if d.agent_name == AGENT_NAME]


async def test_dispatched_through_the_api_into_a_room_that_exists(room: RealRoom) -> None:
    lk = room.server.api()
    try:
        # the room's own settings, merged key by key with the dispatch's
        await lk.room.create_room(api.CreateRoomRequest(name=room.name, metadata='{"formality": "formal"}'))
        # plain tokens: nobody's joining brings the interpreter (the server made no dispatch of it as they
        # joined; and below, the one job the worker gets for the room is the API's dispatch)
        alice = await room.speaker("alice", attributes={"language": "en"})
        dora = await room.listener("dora", attributes={"interpret_to": "de"})
        assert await interpreter_dispatches(lk, room.name) == []

        await room.worker_available()
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(
                agent_name=AGENT_NAME, room=room.name, metadata=json.dumps({"target_languages": ["fr"]})
            )
        )
        # the dispatch's target language, and what each participant asks for (alice hears her own)
        await room.agent_tracks(dora, "interpretation-fr", "interpretation-de", "interpretation-en")
        await eventually(lambda: dora.agent_attribute(ATTR_LANGUAGES) == "de,en,fr", what="the languages")
        await eventually(lambda: dora.agent_attribute(ATTRIBUTE_AGENT_STATE) == "listening", what="listening")
        assert dora.agent_attribute(ATTR_WARNINGS) is None  # no warnings ("" deletes an attribute)
        ours = await interpreter_dispatches(lk, room.name)
        assert len(ours) == 1 + room.dispatched_again
        assert {d.metadata for d in ours} == {json.dumps({"target_languages": ["fr"]})}
        # one job, in the one worker, from a dispatch made through the API: none came from the joins,
        # which were earlier
        (job,) = room.worker.job_dispatches(room.name)
        assert job in {d.id for d in ours}, (job, ours)
    finally:
        await lk.aclose()

    await eventually(lambda: stt_streams(room) == [("en", False)], what="alice's STT stream")
    room.fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts)
    alice.say(read_wav(ONE_SENTENCE.wav))
    await eventually(lambda: len(dora.final_captions(translated=True)) == 2, what="fr and de captions")
    translated = dora.final_captions(translated=True)
    assert {c.attributes["language"] for c in translated} == {"fr", "de"}
    assert {c.text for c in translated} == set(ONE_SENTENCE.translations.values())
    assert {c.segment_id for c in translated} == {"alice-0-fr", "alice-0-de"}
    assert all("formal register" in r.messages[0]["content"] for r in room.fakes.cerebras.requests)
    await eventually(lambda: dora.agent_attribute(ATTRIBUTE_AGENT_STATE) == "listening", what="done")
    assert tones(dora, "interpretation-de") == tones(dora, "interpretation-fr") == [500]
    assert tones(dora, "interpretation-en") == []  # English is never interpreted into English


VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"


def cut(pcm: Pcm, seconds: float) -> Pcm:
    """The first `seconds` of some speech: stopping right after its last word, before any endpointing."""
    return Pcm(pcm.samples[: round(seconds * pcm.sample_rate)], pcm.sample_rate)


async def test_participants_change_their_languages_mid_meeting(room: RealRoom) -> None:
    alice = await room.speaker("alice", attributes={"language": "en"}, dispatch=room.dispatch())
    lena = await room.listener("lena", attributes={"language": "de"})
    await room.agent_tracks(lena, "interpretation-es", "interpretation-en", "interpretation-de")
    await eventually(lambda: stt_streams(room) == [("en", False)], what="alice's English STT stream")

    # lena now wants French and Italian: the German track goes, French and Italian ones come
    await lena.room.local_participant.set_attributes({"interpret_to": "fr, it"})
    tracks = ("interpretation-es", "interpretation-en", "interpretation-fr", "interpretation-it")
    await room.agent_tracks(lena, *tracks)
    await eventually(lambda: lena.agent_attribute(ATTR_LANGUAGES) == "en,es,fr,it", what="the languages")

    # alice now speaks Spanish: a new STT stream in Spanish; nobody asks for English any more
    await alice.room.local_participant.set_attributes({"language": "es"})
    await room.agent_tracks(lena, "interpretation-es", "interpretation-fr", "interpretation-it")
    await eventually(lambda: stt_streams(room) == [("en", True), ("es", False)], what="a Spanish STT stream")
    await eventually(lambda: lena.agent_attribute(ATTR_LANGUAGES) == "es,fr,it", what="the languages")

    alice.say(read_wav(SPANISH.wav))
    await eventually(lambda: len(lena.final_captions(translated=True)) == 4, within_s=30, what="4 captions")
    source = lena.final_captions(translated=False)
    assert [c.text for c in source] == SPANISH.transcripts
    assert {c.attributes["language"] for c in source} == {"es"}
    assert [c.segment_id for c in source] == ["alice.1-0", "alice.1-1"]  # her ears' first restart
    for language in ("fr", "it"):  # and never into Spanish
        translated = lena.final_captions(translated=True, language=language)
        assert [c.text for c in translated] == list(SPANISH.translations.values())
        assert [c.segment_id for c in translated] == [f"alice.1-0-{language}", f"alice.1-1-{language}"]
    await eventually(lambda: lena.agent_attribute(ATTRIBUTE_AGENT_STATE) == "listening", what="done")
    assert tones(lena, "interpretation-fr") == tones(lena, "interpretation-it") == [300, 700]
    assert tones(lena, "interpretation-es") == []

    # lena clears interpret_to (LiveKit deletes an attribute set to ""): she hears her language again
    await lena.room.local_participant.set_attributes({"interpret_to": ""})
    await room.agent_tracks(lena, "interpretation-es", "interpretation-de")
    assert "interpret_to" not in lena.room.local_participant.attributes


async def test_ears_follow_mute_unpublish_and_rejoin_and_what_was_heard_is_interpreted(
    room: RealRoom,
) -> None:
    good_morning, thank_you, budget = DIALOGUE.transcripts
    room.fakes.deepgram.scripts["en"] = [
        good_morning,
        ONE_SENTENCE.transcripts[0],
        thank_you,
        budget,
        good_morning,
    ]
    sentence = read_wav(ONE_SENTENCE.wav)
    just_said = cut(sentence, ONE_SENTENCE.speech_ends[0] + 0.05)  # mute or leave right after the words

    alice = await room.speaker("alice", attributes={"language": "en"}, dispatch=room.dispatch())
    bob = await room.listener("bob", attributes={"language": "es"})
    await room.agent_tracks(bob, "interpretation-es", "interpretation-en")
    await eventually(lambda: stt_streams(room) == [("en", False)], what="alice's STT stream")

    def interpreted(n: int) -> bool:
        return len(bob.final_captions(translated=True, language="es")) == n

    # muted right after speaking: the ears stop, and what they heard is still interpreted
    await alice.say(just_said)
    alice.track.mute()
    await eventually(lambda: open_streams(room) == 0, what="the STT stream to close on mute")
    await eventually(lambda: interpreted(1), within_s=30, what="the first interpretation")
    await alice.say(cut(sentence, 2.0))  # said while muted: nobody listens

    # unmuted: a new STT stream, the second one (none was opened while she was muted)
    alice.track.unmute()
    await eventually(lambda: stt_streams(room) == [("en", True), ("en", False)], what="a new STT stream")
    await alice.say(sentence)
    await eventually(lambda: interpreted(2), within_s=30, what="the second interpretation")

    await alice.unpublish()
    await eventually(lambda: open_streams(room) == 0, what="the STT stream to close on unpublish")
    # the stream opened on unmute is done: one final on it, the sentence said unmuted (nothing said while
    # she was muted was heard)
    assert [f.connection for f in room.fakes.deepgram.finals] == [0, 1]
    republished = await alice.publish()
    await eventually(lambda: len(stt_streams(room)) == 3 and open_streams(room) == 1, what="re-published")
    await alice.say(sentence)
    await eventually(lambda: interpreted(3), within_s=30, what="the third interpretation")

    # she leaves right after speaking: still interpreted; the English track goes with her
    await alice.say(just_said)
    await room.leave(alice)
    await eventually(lambda: open_streams(room) == 0, what="the STT stream to close when she left")
    await room.agent_tracks(bob, "interpretation-es")
    await eventually(lambda: interpreted(4), within_s=30, what="the fourth interpretation")

    alice = await room.speaker("alice", attributes={"language": "en"})
    await room.agent_tracks(bob, "interpretation-es", "interpretation-en")
    await eventually(lambda: len(stt_streams(room)) == 4 and open_streams(room) == 1, what="rejoined")
    await alice.say(sentence)
    await eventually(lambda: interpreted(5), within_s=30, what="the fifth interpretation")

    # the n-th restart of her ears numbers its segments <identity>.<n>-<i>
    ids = ["alice-0", "alice.1-0", "alice.2-0", "alice.2-1", "alice.3-0"]
    source = bob.final_captions(translated=False)
    assert [c.segment_id for c in source] == ids
    assert [c.text for c in source] == room.fakes.deepgram.scripts["en"]
    assert [c.segment_id for c in bob.final_captions(translated=True)] == [f"{i}-es" for i in ids]
    assert source[2].attributes[ATTRIBUTE_TRANSCRIPTION_TRACK_ID] == republished.sid
    assert alice.publication is not None
    assert source[4].attributes[ATTRIBUTE_TRANSCRIPTION_TRACK_ID] == alice.publication.sid
    await eventually(lambda: bob.agent_attribute(ATTRIBUTE_AGENT_STATE) == "listening", what="done")
    assert tones(bob, "interpretation-es") == [400, 500, 600, 800, 400]
    assert len(room.fakes.deepgram.finals) == 5 and room.fakes.deepgram.ignored_segments == []
    # muted and gone before the STT's endpointing: those two were flushed when the ears stopped
    assert [f.from_finalize for f in room.fakes.deepgram.finals] == [True, False, False, True, False]


async def test_room_metadata_changed_mid_meeting_applies_at_once_and_warns_until_fixed(
    room: RealRoom,
) -> None:
    room.fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts)
    alice = await room.speaker(
        "alice", attributes={"language": "en"}, dispatch=room.dispatch({"target_languages": ["fr"]})
    )
    lena = await room.listener("lena")
    await room.agent_tracks(lena, "interpretation-fr", "interpretation-en")
    lk = room.server.api()

    async def set_metadata(metadata: str) -> None:
        await lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=room.name, metadata=metadata))

    def warnings() -> str:
        return "\n".join(json.loads(lena.agent_attribute(ATTR_WARNINGS) or "[]"))

    try:
        # malformed: reported, and the dispatch's settings still apply
        await set_metadata("{not json")
        await eventually(lambda: "room metadata: not valid JSON" in warnings(), what="the JSON warning")
        assert set(lena.agent_tracks()) == {"interpretation-fr", "interpretation-en"}

        # partly bad: the good part applies (German instead of French), the bad parts are named
        await set_metadata(
            json.dumps({"target_languages": ["de", "xx"], "voices": {"de": "not-a-voice"}, "volume": 11})
        )
        await room.agent_tracks(lena, "interpretation-de", "interpretation-en")
        await eventually(lambda: "not-a-voice" in warnings(), what="the new warnings")
        assert "'xx'" in warnings() and "'volume'" in warnings() and "JSON" not in warnings()

        # fixed: no warnings any more; Italian with a glossary, a register and a voice
        glossary = {"keep": ["Acme"], "translate": {"camera": {"it": "telecamera"}}}
        settings = {"target_languages": ["it"], "glossary": glossary, "formality": "formal"}
        await set_metadata(json.dumps({**settings, "voices": {"it": VOICE}}))
        await room.agent_tracks(lena, "interpretation-it", "interpretation-en")
        await eventually(lambda: lena.agent_attribute(ATTR_WARNINGS) is None, what="the warnings to clear")
        await eventually(lambda: lena.agent_attribute(ATTR_LANGUAGES) == "en,it", what="the languages")
    finally:
        await lk.aclose()
    # someone asking for languages nobody supports gets no track for them: when the interpreter has taken
    # in the next person to join (asking for Portuguese), it still has none for them
    await room.listener("zed", attributes={"language": "tlh-Klingon", "interpret_to": "zz, x"})
    yan = await room.listener("yan", attributes={"interpret_to": "pt"})
    await eventually(lambda: lena.agent_attribute(ATTR_LANGUAGES) == "en,it,pt", what="Portuguese added")
    await room.agent_tracks(lena, "interpretation-it", "interpretation-en", "interpretation-pt")
    await room.leave(yan)
    await room.agent_tracks(lena, "interpretation-it", "interpretation-en")
    await eventually(lambda: lena.agent_attribute(ATTR_LANGUAGES) == "en,it", what="Portuguese gone")

    alice.say(read_wav(ONE_SENTENCE.wav))
    await eventually(lambda: len(lena.final_captions(translated=True)) == 1, within_s=30, what="a caption")
    (caption,) = lena.final_captions(translated=True)
    assert caption.segment_id == "alice-0-it" and caption.text == ONE_SENTENCE.translations["camera"]
    system = room.fakes.cerebras.requests[-1].messages[0]["content"]
    assert '"camera" → "telecamera"' in system and 'keep "Acme"' in system and "formal register" in system
    voices = {m["voice"].get("id") for m in room.fakes.cartesia.messages if m.get("language") == "it"}
    assert voices == {VOICE}
    await eventually(lambda: lena.agent_attribute(ATTRIBUTE_AGENT_STATE) == "listening", what="done")
    assert tones(lena, "interpretation-it") == [500]


async def test_the_interpreter_never_listens_to_agents(room: RealRoom) -> None:
    lena = await room.listener("lena", attributes={"language": "es"}, dispatch=room.dispatch())
    await room.agent_tracks(lena, "interpretation-es")
    # another agent (a dubbing bot, say) joins, asks for languages and speaks
    bot = Speaker("dubbing-bot")
    await room.join(bot, attributes={"language": "de", "interpret_to": "fr"}, agent=True)
    await bot.publish()
    await eventually(
        lambda: (
            (p := lena.room.remote_participants.get("dubbing-bot")) is not None and bool(p.track_publications)
        ),
        what="the bot's track",
    )
    assert lena.room.remote_participants["dubbing-bot"].kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    await bot.say(read_wav(ONE_SENTENCE.wav))

    # a person who joins after it: the interpreter's first STT stream is hers (none for the bot), it
    # interprets for what she asks (English) and not for what the bot asks for, and nothing of the bot's
    # speech was captioned
    room.fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts)
    alice = await room.speaker("alice", attributes={"language": "en"})
    await eventually(lambda: stt_streams(room) == [("en", False)], what="alice's STT stream, the only one")
    await room.agent_tracks(lena, "interpretation-es", "interpretation-en")
    await eventually(lambda: lena.agent_attribute(ATTR_LANGUAGES) == "en,es", what="the languages")
    assert lena.captions == []

    # she speaks and is interpreted: the interpreter was listening all along
    await alice.say(read_wav(ONE_SENTENCE.wav))
    await eventually(lambda: len(lena.final_captions(translated=True)) == 1, within_s=30, what="a caption")
    assert {c.sender for c in lena.captions if not c.translated} == {"alice"}
    assert {c.attributes[ATTR_SPEAKER] for c in lena.captions if c.translated} == {"alice"}
    assert len(room.fakes.deepgram.connections) == 1


async def test_the_room_closing_with_utterances_in_flight_ends_the_job_cleanly(room: RealRoom) -> None:
    room.fakes.cartesia.ttfb_s = 3.0  # slow speech synthesis: utterances are in flight when the room goes
    alice = await room.speaker("alice", attributes={"language": "en"}, dispatch=room.dispatch())
    bob = await room.listener("bob", attributes={"language": "es"})
    await room.agent_tracks(bob, "interpretation-es", "interpretation-en")
    assert await room.worker.active_jobs() == 1
    alice.say(read_wav(DIALOGUE.wav))
    await eventually(lambda: len(room.fakes.deepgram.finals) >= 1, within_s=30, what="a final transcript")
    lk = room.server.api()
    try:
        await lk.room.delete_room(api.DeleteRoomRequest(room=room.name))
    finally:
        await lk.aclose()

    # the job ends, its process exits, and the worker runs on
    for _ in range(600):
        if await room.worker.active_jobs() == 0:
            break
        await asyncio.sleep(0.1)
    assert await room.worker.active_jobs() == 0, room.worker.tail()
    assert room.worker.proc is not None and room.worker.proc.returncode is None
    room.check_worker_output()
    output = room.worker.output()
    assert '"reason": "room disconnected"' in output  # the job process said why it exits
    errors = [
        line
        for line in output.splitlines()
        if '"level": "ERROR"' in line and not SDK_CHANNEL_CLOSED.search(line)
    ]
    assert errors == [], "\n".join(errors)  # e.g. on_session_end timing out, utterances lost as a fault
    assert "did not drain in time" not in output
    assert "the room closed before every utterance was spoken" in output  # they were in flight
    # the job's last word on the room: what it cost, by provider and item, with nobody named in it
    line = next(line for line in output.splitlines() if "room usage at job end" in line)
    record = json.loads(line[line.index("{") :])
    items = {(u["provider"], u["item"]) for u in record["usage"]}
    assert {("deepgram", "audio_seconds"), ("cerebras", "input_tokens")} <= items, record
    assert record["cost_usd"] > 0 and "alice" not in line and "bob" not in line
    for participant in list(room.participants):
        await room.leave(participant)

    # and takes the next room
    room.fakes.cartesia.ttfb_s = 0.0
    room.name += "-next"
    dan = await room.speaker("dan", attributes={"language": "es"}, dispatch=room.dispatch())
    erin = await room.listener("erin", attributes={"language": "en"})
    await room.agent_tracks(erin, "interpretation-es", "interpretation-en")
    dan.say(read_wav(SPANISH.wav))
    await eventually(lambda: len(erin.final_captions(translated=True)) == 2, within_s=30, what="2 captions")
    assert [c.text for c in erin.final_captions(translated=True)] == list(SPANISH.translations.values())
