"""Any language, no settings: speakers with no `language` attribute are transcribed with Deepgram nova-3's
code switching (`language=multi`) and each utterance is routed by the language Deepgram detected; what such
a speaker hears follows the language of most of their recent utterances. Explicit languages keep working."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from livekit.agents import stt

from agent.language.codes import AUTO
from agent.room.auto_language import HeardLanguages
from agent.room.room_io import ATTR_LANGUAGES, ATTR_WARNINGS
from agent.settings.config import ConfigError, load_settings
from agent.settings.room_settings import parse_room_settings
from tests.conftest import DIALOGUE, ONE_SENTENCE, SPANISH, Fakes, stop_fakes
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.loopback import eventually
from tests.test_fakes import make_deepgram, recognize, speech, ws_url
from tests.test_filemode import run_cli
from tests.test_room import RoomHarness, room_harness

# a code-switched sentence, as in Deepgram's documentation: mostly Spanish, so detected as Spanish
SWITCHED = "No recuerdo mi bank password."
SWITCHED_LANGUAGES = ["es", "es", "es", "en", "en"]
TRANSLATIONS = {
    **DIALOGUE.translations,
    **ONE_SENTENCE.translations,
    **SPANISH.translations,
    "recuerdo": "I do not remember my bank password.",
}


async def start_auto_fakes(transcripts: list[str], languages: dict[str, str | list[str]]) -> Fakes:
    """Fakes whose Deepgram hands `transcripts` out in order (whoever speaks them), each in its language
    from `languages` (else English) on `language=multi` connections."""
    fakes = Fakes(
        deepgram=FakeDeepgram(transcripts, languages=languages),
        cerebras=FakeLLM(translations=TRANSLATIONS),
        groq=FakeLLM(translations=TRANSLATIONS),
        cartesia=FakeCartesia(),
    )
    for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await server.start()
    return fakes


@contextlib.asynccontextmanager
async def auto_room(
    transcripts: list[str],
    languages: dict[str, str | list[str]],
    *,
    metadata: str = "",
    **env: str,
) -> AsyncIterator[RoomHarness]:
    fakes = await start_auto_fakes(transcripts, languages)
    try:
        async with room_harness(fakes, fakes.settings(**env), metadata=metadata) as h:
            yield h
        assert all(c.closed for c in fakes.deepgram.connections), "an STT stream was left open"
    finally:
        await stop_fakes(fakes)


def source_captions(h: RoomHarness) -> list[tuple[str, str, str]]:
    """(speaker, text, language) of every final source caption."""
    return [(c.sender_identity, c.text, c.attributes["language"]) for c in h.captions(translated=False)]


# -- settings ------------------------------------------------------------------------------------------


def test_auto_is_the_default_and_needs_a_model_that_detects(settings_env: dict[str, str]) -> None:
    assert load_settings(settings_env, require_livekit=False).source_language == AUTO
    for value in ("auto", "AUTO", " auto "):
        env = {**settings_env, "SOURCE_LANGUAGE": value}
        assert load_settings(env, require_livekit=False).source_language == AUTO
    assert (
        load_settings({**settings_env, "SOURCE_LANGUAGE": "de"}, require_livekit=False).source_language
        == "de"
    )
    for model in ("nova-3-general", "nova-3-medical"):
        assert load_settings({**settings_env, "DEEPGRAM_MODEL": model}, require_livekit=False)

    # nova-2 cannot detect the languages auto relies on: a clear start-up error, not a silent fallback
    with pytest.raises(ConfigError) as refused:
        load_settings({**settings_env, "DEEPGRAM_MODEL": "nova-2"}, require_livekit=False)
    (problem,) = refused.value.problems
    assert problem.startswith("SOURCE_LANGUAGE=auto needs DEEPGRAM_MODEL nova-3") and "'nova-2'" in problem
    # an explicit language works with any model, as before
    env = {**settings_env, "DEEPGRAM_MODEL": "nova-2", "SOURCE_LANGUAGE": "en"}
    assert load_settings(env, require_livekit=False).source_language == "en"


@pytest.fixture
def settings_env() -> dict[str, str]:
    return {"DEEPGRAM_API_KEY": "d", "CEREBRAS_API_KEY": "c", "CARTESIA_API_KEY": "t"}


def test_room_metadata_accepts_auto() -> None:
    settings, problems = parse_room_settings(json.dumps({"source_language": "auto"}), None)
    assert settings.source_language == AUTO and problems == []
    settings, problems = parse_room_settings(
        json.dumps({"source_language": "Auto"}), '{"source_language": "fr"}'
    )
    assert settings.source_language == "fr" and problems == []


def test_what_a_speaker_hears_follows_most_of_their_recent_utterances() -> None:
    heard = HeardLanguages(window=5)
    assert heard.heard("a") is None
    assert heard.note("a", "en") is True and heard.heard("a") == "en"  # the first detection sets it
    assert heard.note("a", "en") is False
    # one code-switched sentence, then another: still English (en 2, es 2 → the one heard stays)
    assert heard.note("a", "es") is False and heard.note("a", "es") is False and heard.heard("a") == "en"
    # a third Spanish utterance: most of the last five are Spanish now
    assert heard.note("a", "es") is True and heard.heard("a") == "es"
    assert heard.note("a", "en") is False and heard.heard("a") == "es"
    assert heard.heard("b") is None  # per speaker


# -- the fake Deepgram answers language=multi as Deepgram does -----------------------------------------


async def test_fake_deepgram_multi_results_carry_languages_and_each_words_language() -> None:
    pcm = speech(("tone", 0.6), ("silence", 0.8), ("tone", 0.5), ("silence", 0.8))
    script, languages = [SWITCHED, "Hello there.", "Plain."], {SWITCHED: SWITCHED_LANGUAGES}
    async with FakeDeepgram(script, languages=languages) as fake, aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(fake, language="multi", interim_results="true")) as ws:
            for start in range(0, len(pcm), 800):
                await ws.send_bytes(pcm[start : start + 800].tobytes())
            await ws.send_json({"type": "CloseStream"})
            messages = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
        # another language: no detection fields, as from Deepgram
        async with http.ws_connect(ws_url(fake, language="en")) as ws:
            await ws.send_bytes(speech(("tone", 0.5), ("silence", 0.5)).tobytes())
            await ws.send_json({"type": "CloseStream"})
            plain = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]

    finals = [
        m["channel"]["alternatives"][0] for m in messages if m.get("type") == "Results" and m["is_final"]
    ]
    assert [f["transcript"] for f in finals] == [SWITCHED, "Hello there."]
    assert finals[0]["languages"] == ["es", "en"]  # most words first
    assert [w["language"] for w in finals[0]["words"]] == SWITCHED_LANGUAGES
    assert finals[1]["languages"] == ["en"] and {w["language"] for w in finals[1]["words"]} == {"en"}
    interims = [
        m["channel"]["alternatives"][0] for m in messages if m.get("type") == "Results" and not m["is_final"]
    ]
    assert interims and all(i["languages"] for i in interims)
    plain_alts = [m["channel"]["alternatives"][0] for m in plain if m.get("type") == "Results"]
    assert plain_alts and all("languages" not in a for a in plain_alts)
    assert all("language" not in w for a in plain_alts for w in a["words"])


async def test_the_plugin_takes_the_language_with_most_words() -> None:
    pcm = speech(("tone", 0.6), ("silence", 0.8))
    languages = {SWITCHED: SWITCHED_LANGUAGES}
    async with FakeDeepgram([SWITCHED], languages=languages) as fake, aiohttp.ClientSession() as http:
        engine = make_deepgram(fake, http)
        engine.update_options(language="multi")
        events = await recognize(fake, engine, pcm)
    (final,) = [e for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert final.alternatives[0].language == "es"
    assert fake.connections[0].query["language"] == "multi"


# -- rooms ---------------------------------------------------------------------------------------------


async def test_two_speakers_with_no_language_get_a_two_way_conversation() -> None:
    english, (spanish_1, spanish_2) = ONE_SENTENCE.transcripts[0], SPANISH.transcripts
    async with auto_room([english, spanish_1, spanish_2], {spanish_1: "es", spanish_2: "es"}) as h:
        await h.session.start()
        alice = h.room.join("alice")  # no language, no interpret_to: nothing set
        bob = h.room.join("bob")
        await h.session.settled()
        assert h.room.local_participant.attributes[ATTR_LANGUAGES] == "es"  # TARGET_LANGUAGE only, so far
        h.speak(alice, ONE_SENTENCE.wav)
        # alice was heard speaking English: English joins the target languages
        await eventually(lambda: "en" in h.session.outputs, what="the English track")
        h.speak(bob, SPANISH.wav)
        await eventually(lambda: len(h.played("en")) == 2, what="bob's Spanish spoken in English")
        await eventually(lambda: len(h.played("es")) == 1, what="alice's English spoken in Spanish")

        assert h.played("es") == ["alice-0-es"] and h.played("en") == ["bob-0-en", "bob-1-en"]
        assert h.room.local_participant.attributes[ATTR_LANGUAGES] == "en,es"
        assert (h.session.heard.heard("alice"), h.session.heard.heard("bob")) == ("en", "es")
        # each source caption says the language detected
        assert source_captions(h) == [
            ("alice", english, "en"),
            ("bob", spanish_1, "es"),
            ("bob", spanish_2, "es"),
        ]
        translated = {
            (c.attributes["interpreter.speaker"], c.attributes["language"])
            for c in h.captions(translated=True)
        }
        assert translated == {("alice", "es"), ("bob", "en")}
        # the STT really was asked to detect: every connection is nova-3 language=multi
        queries = [(c.query["model"], c.query["language"]) for c in h.fakes.deepgram.connections]
        assert queries and set(queries) == {("nova-3", "multi")}


async def test_a_speaker_who_switches_language_is_routed_by_each_utterance(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    first, _, third = DIALOGUE.transcripts
    async with auto_room([first, SWITCHED, third], {SWITCHED: SWITCHED_LANGUAGES}) as h:
        await h.session.start()
        alice = h.room.join("alice")
        h.speak(alice, DIALOGUE.wav)  # three sentences: English, code-switched (mostly Spanish), English
        await eventually(lambda: len(h.played("es")) == 2, what="the English sentences spoken in Spanish")
        await eventually(
            lambda: "en" in h.session.outputs and len(h.played("en")) == 1, what="the Spanish one"
        )

        # the Spanish sentence went to English only, the English ones to Spanish only: followed at once
        assert h.played("es") == ["alice-0-es", "alice-2-es"]
        assert h.played("en") == ["alice-1-en"]
        assert [language for _, _, language in source_captions(h)] == ["en", "es", "en"]
        # what she hears did not flap on one code-switched sentence
        assert h.session.heard.heard("alice") == "en"
        assert h.room.local_participant.attributes[ATTR_LANGUAGES] == "en,es"

    # each change of detected language is logged with its code as a field, never with what was said
    detected = [r for r in caplog.records if r.getMessage() == "speaker's language detected"]
    assert [r.__dict__["language"] for r in detected] == ["en", "es", "en"]
    said = [first, SWITCHED, third, *TRANSLATIONS.values()]
    for record in caplog.records:
        logged = record.getMessage() + repr({k: v for k, v in record.__dict__.items() if k != "msg"})
        assert not any(text in logged for text in said), record.getMessage()


async def test_a_speaker_who_keeps_to_another_language_comes_to_hear_it() -> None:
    """One English utterance, then two Spanish ones: most of her recent utterances are Spanish, so she
    now hears Spanish, and English (asked for by nobody else) leaves the target languages."""
    # (not "Good morning, everyone.": its interpretation, playing as she speaks on, is the first Spanish
    # sentence word for word, which would be her microphone picking it up: echo, tests/test_echo.py)
    english, (spanish_1, spanish_2) = ONE_SENTENCE.transcripts[0], SPANISH.transcripts
    async with auto_room([english, spanish_1, spanish_2], {spanish_1: "es", spanish_2: "es"}) as h:
        await h.session.start()
        alice = h.room.join("alice")
        h.speak(alice, DIALOGUE.wav)
        await eventually(lambda: h.session.heard.heard("alice") == "en", what="English first")
        await eventually(lambda: h.session.heard.heard("alice") == "es", what="then Spanish")
        await eventually(
            lambda: h.room.local_participant.attributes[ATTR_LANGUAGES] == "es", what="English dropped"
        )
        # both Spanish utterances were still interpreted into English (routed before the track went)
        await eventually(lambda: len(h.captions(translated=True)) == 3, what="every translated caption")
        languages = [c.attributes["language"] for c in h.captions(translated=True)]
        assert languages == ["es", "en", "en"]


async def test_detected_languages_respect_the_language_cap() -> None:
    async with auto_room(list(ONE_SENTENCE.transcripts), {}, MAX_LANGUAGES="1") as h:
        await h.session.start()
        alice = h.room.join("alice")
        h.speak(alice, ONE_SENTENCE.wav)
        await eventually(lambda: ATTR_WARNINGS in h.room.local_participant.attributes, what="the cap warning")
        warnings = json.loads(h.room.local_participant.attributes[ATTR_WARNINGS])
        assert warnings == ["languages not interpreted (MAX_LANGUAGES is 1): en"]
        await eventually(lambda: len(h.played("es")) == 1, what="the sentence spoken in Spanish")
        assert list(h.session.outputs) == ["es"] and h.session.heard.heard("alice") == "en"


async def test_explicit_languages_keep_todays_behaviour() -> None:
    """A `language` attribute, or a room `source_language`, is the language: no detection asked for."""
    async with auto_room(list(ONE_SENTENCE.transcripts), {}, metadata='{"source_language": "en"}') as h:
        await h.session.start()
        alice = h.room.join("alice", attributes={"language": "en"})
        carol = h.room.join("carol")  # no attribute: the room's source_language
        await h.session.settled()
        h.speak(alice, ONE_SENTENCE.wav)
        await eventually(lambda: len(h.played("es")) == 1, what="the sentence spoken in Spanish")
        h.speak(carol, ONE_SENTENCE.wav)
        await eventually(lambda: len(h.fakes.deepgram.connections) == 2, what="carol's STT stream")
        assert [c.query["language"] for c in h.fakes.deepgram.connections] == ["en", "en"]
        assert source_captions(h)[0] == ("alice", ONE_SENTENCE.transcripts[0], "en")
        # alice hears her `language`, as before; carol, with none, asks for nothing
        assert h.room.local_participant.attributes[ATTR_LANGUAGES] == "en,es"
        assert h.session.heard.heard("alice") is None and h.session.heard.heard("carol") is None


async def test_room_auto_with_a_model_that_cannot_detect_uses_the_workers_language() -> None:
    async with auto_room(
        list(ONE_SENTENCE.transcripts),
        {},
        metadata='{"source_language": "auto"}',
        SOURCE_LANGUAGE="en",
        DEEPGRAM_MODEL="nova-2",
    ) as h:
        await h.session.start()
        warnings = json.loads(h.room.local_participant.attributes[ATTR_WARNINGS])
        assert warnings == [
            "source_language: auto needs DEEPGRAM_MODEL nova-3 or flux-general-multi; the worker's "
            "SOURCE_LANGUAGE (en) is used"
        ]
        alice = h.room.join("alice")
        h.speak(alice, ONE_SENTENCE.wav)
        await eventually(lambda: len(h.played("es")) == 1, what="the sentence spoken in Spanish")
        assert [c.query["language"] for c in h.fakes.deepgram.connections] == ["en"]


async def test_room_auto_overrides_an_explicit_worker_language() -> None:
    async with auto_room(
        list(ONE_SENTENCE.transcripts), {}, metadata='{"source_language": "auto"}', SOURCE_LANGUAGE="en"
    ) as h:
        await h.session.start()
        alice = h.room.join("alice")
        h.speak(alice, ONE_SENTENCE.wav)
        await eventually(lambda: len(h.played("es")) == 1, what="the sentence spoken in Spanish")
        assert [c.query["language"] for c in h.fakes.deepgram.connections] == ["multi"]
        assert h.session.heard.heard("alice") == "en"


async def test_an_undetected_language_falls_back_to_the_speakers_last_detected_one() -> None:
    """Deepgram names a language we do not support: the utterance keeps the speaker's last detected
    language (here Spanish, so it is interpreted into English, not Spanish); it is not counted as a
    detection."""
    first, second = SPANISH.transcripts
    targets = '{"target_languages": ["en", "es"]}'
    async with auto_room([first, second], {first: "es", second: "xx"}, metadata=targets) as h:
        await h.session.start()
        bob = h.room.join("bob")
        h.speak(bob, SPANISH.wav)
        await eventually(
            lambda: "en" in h.session.outputs and len(h.played("en")) == 2, what="both in English"
        )
        assert h.played("es") == []
        assert [language for _, _, language in source_captions(h)] == ["es", "es"]


# -- file mode -----------------------------------------------------------------------------------------


async def test_file_mode_source_auto(tmp_path: Path) -> None:
    fakes = await start_auto_fakes(list(DIALOGUE.transcripts), {})
    try:
        out, captions = tmp_path / "out.wav", tmp_path / "captions.json"
        args = [str(DIALOGUE.wav), "--source", "auto", "--target", "es", "--out", str(out)]
        code, stdout, stderr = await run_cli(
            [*args, "--captions", str(captions), "--json"], fakes.env(), tmp_path
        )
        assert code == 0, stderr
        assert json.loads(stdout)["spoken"] == 3
        assert [c.query["language"] for c in fakes.deepgram.connections] == ["multi"]
        sources = [c for c in json.loads(captions.read_text()) if not c["translated"] and c["final"]]
        assert [c["language"] for c in sources] == ["en", "en", "en"]
    finally:
        await stop_fakes(fakes)


async def test_file_mode_refuses_an_unknown_source(tmp_path: Path) -> None:
    code, _, stderr = await run_cli(
        [str(DIALOGUE.wav), "--source", "automatic", "--out", str(tmp_path / "o.wav")], {}, tmp_path
    )
    assert code == 2 and "--source automatic: not a supported language" in stderr
