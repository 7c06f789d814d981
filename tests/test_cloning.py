"""Own voice, opt-in per speaker (issue 13, part 2): the `VoiceCloner` against the fake Cartesia's
`/voices/clone` and `DELETE /voices/{id}`, then a room through the fake room surface."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
import numpy as np
import pytest
from livekit import rtc

from agent.room.cloning import ATTR_OWN_VOICE, ATTR_VOICE, CLONE_TAG, SAMPLE_RATE, OnClone, VoiceCloner
from agent.room.voices import MULTILINGUAL_VOICES, PLUGIN_DEFAULT_VOICE, VoiceBook
from agent.run.filemode import read_wav
from tests.conftest import DIALOGUE, ONE_SENTENCE, start_room_fakes, stop_fakes
from tests.fakes.cartesia import FakeCartesia
from tests.loopback import eventually
from tests.noise import HUM, mix
from tests.test_room import RoomHarness, room_harness

KEY = "cartesia-test-key"
CLONE = "00000000-0000-4000-8000-00000000c10e"


def frame(seconds: float = 0.02, amplitude: float = 0.3, freq: float = 220.0) -> rtc.AudioFrame:
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    pcm = (amplitude * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    return rtc.AudioFrame(pcm.tobytes(), SAMPLE_RATE, 1, n)


def speech(seconds: float) -> list[rtc.AudioFrame]:
    """`seconds` of voiced 20 ms frames, each followed by a silent one (a pause the gate drops)."""
    out = []
    for _ in range(round(seconds / 0.02)):
        out += [frame(), frame(amplitude=0.0)]
    return out


class Cloned:
    """What the cloner handed to the book: (identity, clone id or None), in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, identity: str, voice_id: str | None) -> None:
        self.calls.append((identity, voice_id))


@pytest.fixture
async def cartesia() -> AsyncIterator[FakeCartesia]:
    fake = FakeCartesia()
    await fake.start()
    yield fake
    await fake.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def cloner_for(
    cartesia: FakeCartesia, http: aiohttp.ClientSession, on_clone: Cloned, **kwargs: float
) -> VoiceCloner:
    return VoiceCloner(
        http=http,
        base_url=cartesia.base_url,
        api_key=KEY,
        on_clone=on_clone,
        delete_backoff_s=0.01,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_consenting_speakers_voiced_audio_is_cloned_once_then_deleted(
    cartesia: FakeCartesia, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    cloned = Cloned()
    cloner = cloner_for(cartesia, http, cloned)
    for f in speech(2.0):  # before consent: nothing kept
        cloner.hear("alice", f)
    cloner.consent("alice", "en-US")
    for f in speech(4.9):
        cloner.hear("alice", f)
    assert cartesia.clone_requests == [] and cloned.calls == []  # not before 5 s of speech
    for f in speech(3.0):
        cloner.hear("alice", f)
    await eventually(lambda: cloned.calls != [], what="the clone")
    (request,) = cartesia.clone_requests
    assert request.voice_id is not None
    assert cloned.calls == [("alice", request.voice_id)] and cloner.made == 1
    # the clip: the speaker's voiced audio only (the pauses trimmed), at least 5 s, 16 kHz mono
    assert 5.0 <= request.clip_seconds <= 5.1 and request.clip_rms > 0.2  # a 0.3 sine: 0.21
    assert (request.sample_rate, request.channels, request.language) == (16000, 1, "en")
    assert request.name.startswith("interp-") and request.api_key == KEY and request.cartesia_version
    # marked as ours, for the worker's sweep (agent/run/clone_sweep.py)
    assert cartesia.voice_objects[request.voice_id]["description"] == CLONE_TAG
    assert len(cloner.first_word_to_own_voice_s) == 1  # into the metric too
    for f in speech(10.0):  # the clone is made: nothing more is kept or sent
        cloner.hear("alice", f)
    await cloner.aclose()
    assert cartesia.deleted_voices == [request.voice_id] and cartesia.voices == set()
    assert cloned.calls[-1] == ("alice", None) and cloner.deleted == 1 and cloner.undeleted == set()
    assert not any("alice" in r.getMessage() or request.voice_id in r.getMessage() for r in caplog.records)


async def test_the_clip_is_capped_at_max_speech(cartesia: FakeCartesia, http: aiohttp.ClientSession):
    cloner = cloner_for(cartesia, http, Cloned(), min_speech_s=5.0, max_speech_s=10.0)
    cloner.consent("alice", "es")
    cloner.hear("alice", frame(seconds=12.0))  # one long frame: more than the cap at once
    await eventually(lambda: cloner.made == 1, what="the clone")
    assert cartesia.clone_requests[0].clip_seconds == 10.0
    await cloner.aclose()


async def test_silence_and_speakers_without_consent_never_reach_the_clone_endpoint(
    cartesia: FakeCartesia, http: aiohttp.ClientSession
):
    cloner = cloner_for(cartesia, http, Cloned())
    cloner.consent("alice", "en")
    for _ in range(1000):  # 20 s of silence from alice, 20 s of speech from bob
        cloner.hear("alice", frame(amplitude=0.0))
        cloner.hear("bob", frame())
    await cloner.aclose()
    assert cartesia.clone_requests == [] and cloner.made == cloner.failed == 0


async def test_a_rooms_steady_noise_never_reaches_the_clone_endpoint(
    cartesia: FakeCartesia, http: aiohttp.ClientSession
):
    """Hall hum at -30 dBFS (10 dB under speech): louder than the fixed gate, but the room, not a voice."""
    cloner = cloner_for(cartesia, http, Cloned())
    cloner.consent("alice", "en")
    hum = mix(read_wav(DIALOGUE.wav).samples, read_wav(HUM).samples, 10)[:8000]  # 0.5 s: the hum alone
    for chunk in np.tile(hum, 40).reshape(-1, 320):  # 20 s of it, 20 ms frames
        cloner.hear("alice", rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, 320))
    await cloner.aclose()
    assert cartesia.clone_requests == [] and cloner.made == 0


@pytest.mark.parametrize("status", [400, 402, 500])
async def test_a_refused_clone_keeps_the_preset_and_is_counted(
    cartesia: FakeCartesia, http: aiohttp.ClientSession, status: int, caplog: pytest.LogCaptureFixture
):
    cartesia.refuse_clones(status)
    cloned = Cloned()
    cloner = cloner_for(cartesia, http, cloned)
    cloner.consent("alice", "en")
    cloner.hear("alice", frame(seconds=6.0))
    await eventually(lambda: cloner.failed == 1, what="the failure counted")
    assert cloned.calls == [] and cloner.made == 0
    (record,) = [r for r in caplog.records if r.name == "agent.cloning" and r.levelno == logging.WARNING]
    assert record.__dict__["cause"] == f"cartesia {status}"
    await cloner.aclose()
    assert cartesia.delete_requests == 0


async def test_a_slow_clone_times_out_keeps_the_preset_and_is_counted(
    cartesia: FakeCartesia, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
):
    cartesia.clone_delay_s = 30.0
    cloned = Cloned()
    cloner = cloner_for(cartesia, http, cloned, timeout_s=0.2)
    cloner.consent("alice", "en")
    cloner.hear("alice", frame(seconds=6.0))
    await eventually(lambda: cloner.failed == 1, what="the timeout counted")
    assert cloned.calls == [] and len(cartesia.clone_requests) == 1
    assert [r.__dict__.get("cause") for r in caplog.records if r.name == "agent.cloning"][-1] == "timeout"
    await cloner.aclose()


async def test_withdrawn_consent_switches_back_at_once_and_deletes(
    cartesia: FakeCartesia, http: aiohttp.ClientSession
):
    cloned = Cloned()
    cloner = cloner_for(cartesia, http, cloned)
    cloner.consent("alice", "en")
    cloner.hear("alice", frame(seconds=6.0))
    await eventually(lambda: cloner.made == 1, what="the clone")
    voice_id = cartesia.clone_requests[0].voice_id
    cloner.withdraw("alice")
    assert cloned.calls == [("alice", voice_id), ("alice", None)]  # at once, before the delete answers
    await eventually(lambda: cartesia.deleted_voices == [voice_id], what="the clone deleted")
    assert not cloner.consented("alice") and cloner.undeleted == set()
    cloner.hear("alice", frame(seconds=6.0))  # no longer collected
    await cloner.aclose()
    assert len(cartesia.clone_requests) == 1


async def test_a_clone_finished_after_withdrawal_is_deleted_and_never_used(
    cartesia: FakeCartesia, http: aiohttp.ClientSession
):
    cartesia.clone_delay_s = 0.3
    cloned = Cloned()
    cloner = cloner_for(cartesia, http, cloned)
    cloner.consent("alice", "en")
    cloner.hear("alice", frame(seconds=6.0))
    await eventually(lambda: len(cartesia.clone_requests) == 1, what="the clone requested")
    cloner.withdraw("alice")
    await cloner.aclose()  # waits for the clone under way, then deletes it
    assert cloned.calls == [] and cartesia.voices == set()
    assert cloner.made == cloner.deleted == 1
    assert cartesia.deleted_voices == [cartesia.clone_requests[0].voice_id]


async def test_a_failed_delete_is_retried_and_the_id_kept_until_deleted(
    cartesia: FakeCartesia, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
):
    cloner = cloner_for(cartesia, http, Cloned(), delete_attempts=2)
    cloner.consent("alice", "en")
    cloner.hear("alice", frame(seconds=6.0))
    await eventually(lambda: cloner.made == 1, what="the clone")
    voice_id = cartesia.clone_requests[0].voice_id
    assert voice_id is not None
    cartesia.fail_deletes(3)  # both attempts of the leave fail, and the first at close
    cloner.withdraw("alice")
    await eventually(lambda: cartesia.delete_requests == 2, what="two attempts")
    await eventually(
        lambda: any(r.levelno == logging.ERROR for r in caplog.records), what="the give-up logged"
    )
    assert cloner.undeleted == {voice_id} and cloner.delete_failures == 2  # kept
    await cloner.aclose()  # tried again: fails once more, then deleted
    assert cartesia.deleted_voices == [voice_id] and cloner.undeleted == set()
    assert cloner.delete_failures == 3 and cloner.deleted == 1
    assert not any(voice_id in r.getMessage() for r in caplog.records)


async def test_close_is_bounded_and_says_how_many_clones_are_left_undeleted(
    cartesia: FakeCartesia, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
):
    cloner = VoiceCloner(
        http=http,
        base_url=cartesia.base_url,
        api_key=KEY,
        on_clone=Cloned(),
        delete_backoff_s=60.0,  # its retries would outlast any drain
        close_budget_s=0.5,
    )
    cloner.consent("alice", "en")
    cloner.hear("alice", frame(seconds=6.0))
    await eventually(lambda: cloner.made == 1, what="the clone")
    cartesia.fail_deletes(100)
    await cloner.aclose()
    (record,) = [r for r in caplog.records if r.getMessage() == "cloned voices left undeleted at close"]
    assert record.__dict__["undeleted"] == 1 and len(cloner.undeleted) == 1 and cartesia.deleted_voices == []


def test_the_book_speaks_a_consenting_speaker_with_their_clone_on_every_language_until_cleared():
    book = VoiceBook()
    book.join("alice", "en")
    book.join("bob", "en")
    presets = {lang: book.voice_for("alice", lang) for lang in ("es", "fr")}
    book.set_clone("alice", CLONE)
    assert {lang: book.voice_for("alice", lang) for lang in ("es", "fr")} == {"es": CLONE, "fr": CLONE}
    assert book.voice_for("bob", "es") == MULTILINGUAL_VOICES[1]  # others keep theirs
    book.set_clone("alice", None)
    assert {lang: book.voice_for("alice", lang) for lang in ("es", "fr")} == presets


# -- a room, through the fake room surface -----------------------------------------------------------


@pytest.fixture
async def room(request: pytest.FixtureRequest) -> AsyncIterator[RoomHarness]:
    """The room harness of tests/test_room.py with the session's own-voice cloner (through the fake
    Cartesia, as the worker builds it); `request.param`: {"env": {...}, "cloner": {...}}."""
    param = getattr(request, "param", {})
    fakes = await start_room_fakes()
    settings = fakes.settings(**param.get("env", {}))

    def cloner(http: aiohttp.ClientSession) -> Callable[[OnClone], VoiceCloner]:
        def build(on_clone: OnClone) -> VoiceCloner:
            return param.get("cls", VoiceCloner)(
                http=http,
                base_url=settings.tts.base_url,
                api_key=settings.tts.api_key,
                on_clone=on_clone,
                **param.get("cloner", {}),
            )

        return build

    metadata = json.dumps({"target_languages": ["es", "fr"]})
    async with room_harness(fakes, settings, metadata=metadata, cloner=cloner) as h:
        yield h
    await stop_fakes(fakes)


def spoken(h: RoomHarness) -> list[tuple[str, str | None]]:
    """(language, voice) of every context the fake Cartesia spoke words in, in order."""
    cartesia = h.fakes.cartesia
    language: dict[str, str] = {}
    for message in cartesia.messages:
        language.setdefault(str(message.get("context_id")), str(message.get("language")))
    return [
        (language[c], cartesia.voice_by_context[c])
        for c in cartesia.context_order
        if "".join(cartesia.contexts[c]).strip()
    ]


OWN_VOICE = {ATTR_VOICE: "own"}


# 4 s of speech makes her clone here (5 s by default): the 5.8 s she says leave a margin on a loaded machine
@pytest.mark.parametrize("room", [{"cloner": {"min_speech_s": 4.0}}], indirect=True)
async def test_a_consenting_speaker_is_heard_in_the_preset_then_their_own_voice_on_two_languages(
    room: RoomHarness,
):
    h, session = room, room.session
    h.fakes.deepgram.scripts["en"] = (
        ONE_SENTENCE.transcripts + DIALOGUE.transcripts + ONE_SENTENCE.transcripts
    )
    await session.start()
    alice = h.room.join("alice", attributes={"language": "en", **OWN_VOICE})
    await session.settled()
    assert session.cloner is not None and session.cloner.consented("alice")
    first = h.speak(alice, ONE_SENTENCE.wav)  # 1.2 s of speech: not enough for a clone
    await eventually(lambda: len(h.captions(translated=True)) == 2, what="the first sentence, es and fr")
    await eventually(lambda: len(spoken(h)) >= 2, what="the first sentence spoken")
    before = spoken(h)
    assert {language for language, _ in before} == {"es", "fr"}
    assert {voice for _, voice in before} == {PLUGIN_DEFAULT_VOICE}  # the preset
    assert h.fakes.cartesia.clone_requests == []
    h.room.unpublish(alice, first)
    h.speak(alice, DIALOGUE.wav)  # 4.6 s more: past 4 s, the clone is made
    await eventually(lambda: session.cloner is not None and session.cloner.made == 1, what="the clone")
    (request,) = h.fakes.cartesia.clone_requests
    assert 4.0 <= request.clip_seconds <= 5.0 and request.clip_rms > 0.02  # her speech, not silence
    assert request.language == "en" and request.voice_id is not None
    await eventually(lambda: len(h.captions(translated=True)) == 8, what="the dialogue translated")
    n = len(spoken(h))
    h.speak(alice, ONE_SENTENCE.wav)
    await eventually(lambda: len(h.captions(translated=True)) == 10, what="the last sentence, es and fr")
    await eventually(lambda: len({lang for lang, _ in spoken(h)[n:]}) == 2, what="spoken in es and fr")
    after = spoken(h)[n:]
    assert {voice for _, voice in after} == {request.voice_id}  # her own voice, on both languages
    print("first word to own voice (s):", session.cloner.first_word_to_own_voice_s)
    h.room.leave(alice)
    await session.settled()
    await eventually(lambda: h.fakes.cartesia.deleted_voices == [request.voice_id], what="deleted on leave")
    assert session.voices.voice_for("alice", "es") == PLUGIN_DEFAULT_VOICE
    # counted as Cartesia bills it: the clone and delete calls, the characters spoken in each kind of voice
    cartesia, usage = h.fakes.cartesia, session.usage

    def characters(own: bool) -> int:
        contexts = [c for c, v in cartesia.voice_by_context.items() if (v == request.voice_id) == own]
        return sum(len(text.strip()) for c in contexts for text in cartesia.contexts[c])

    assert usage.total("clones") == 1 and usage.total("clone_deletes") == 1
    assert usage.total("clone_characters") == characters(own=True) > 0
    assert usage.total("characters") == characters(own=False) > 0


@pytest.mark.parametrize("room", [{"cloner": {"min_speech_s": 3.0}}], indirect=True)
async def test_withdrawn_consent_switches_back_at_once_and_deletes_the_clone(room: RoomHarness):
    h, session = room, room.session
    h.fakes.deepgram.scripts["en"] = DIALOGUE.transcripts + ONE_SENTENCE.transcripts
    await session.start()
    alice = h.room.join("alice", attributes={"language": "en", **OWN_VOICE})
    await session.settled()
    h.speak(alice, DIALOGUE.wav)
    await eventually(lambda: session.cloner is not None and session.cloner.made == 1, what="the clone")
    voice_id = h.fakes.cartesia.clone_requests[0].voice_id
    assert session.voices.voice_for("alice", "fr") == voice_id
    await eventually(lambda: len(h.captions(translated=True)) == 6, what="the dialogue translated")
    agent = h.room.local_participant
    assert agent.attributes[ATTR_OWN_VOICE] == '["alice"]'  # the room sees she is heard in her own voice
    h.room.set_attributes(alice, **{ATTR_VOICE: ""})
    await session.settled()
    assert session.voices.voice_for("alice", "fr") == PLUGIN_DEFAULT_VOICE  # at once
    await eventually(lambda: ATTR_OWN_VOICE not in agent.attributes, what="her own voice no longer shown")
    await eventually(lambda: h.fakes.cartesia.deleted_voices == [voice_id], what="the clone deleted")
    n = len(spoken(h))
    h.speak(alice, ONE_SENTENCE.wav)
    await eventually(lambda: len(h.captions(translated=True)) == 8, what="the sentence, es and fr")
    await eventually(lambda: len(spoken(h)) >= n + 2, what="the sentence spoken")
    assert {voice for _, voice in spoken(h)[n:]} == {PLUGIN_DEFAULT_VOICE}
    assert len(h.fakes.cartesia.clone_requests) == 1  # no second clone


@pytest.mark.parametrize(
    ("room", "fault"),
    [
        ({"cloner": {"min_speech_s": 3.0}}, "refused"),
        ({"cloner": {"min_speech_s": 3.0, "timeout_s": 0.3}}, "slow"),
    ],
    indirect=["room"],
)
async def test_cloning_refused_or_slow_keeps_the_preset_nothing_lost_failure_counted(
    room: RoomHarness, fault: str
):
    h, session = room, room.session
    if fault == "refused":
        h.fakes.cartesia.refuse_clones(400)
    else:
        h.fakes.cartesia.clone_delay_s = 2.0
    h.fakes.deepgram.scripts["en"] = DIALOGUE.transcripts + ONE_SENTENCE.transcripts
    await session.start()
    alice = h.room.join("alice", attributes={"language": "en", **OWN_VOICE})
    await session.settled()
    h.speak(alice, DIALOGUE.wav)
    await eventually(lambda: session.cloner is not None and session.cloner.failed == 1, what="counted")
    await eventually(lambda: len(h.captions(translated=True)) == 6, what="every utterance translated")
    await eventually(
        lambda: len(h.played("es")) == len(h.played("fr")) == 3, what="every utterance spoken (nothing lost)"
    )
    assert len(h.fakes.cartesia.clone_requests) == 1 and session.cloner is not None
    assert session.cloner.made == 0
    assert {voice for _, voice in spoken(h)} == {PLUGIN_DEFAULT_VOICE}


@pytest.mark.parametrize(
    ("room", "attributes"),
    [({"env": {"VOICE_CLONING": "off"}}, OWN_VOICE), ({}, {}), ({}, {ATTR_VOICE: "preset"})],
    indirect=["room"],
)
async def test_no_audio_reaches_the_clone_endpoint_without_consent_or_with_cloning_off(
    room: RoomHarness, attributes: dict[str, str]
):
    h, session = room, room.session
    h.fakes.deepgram.scripts["en"] = DIALOGUE.transcripts + ONE_SENTENCE.transcripts
    await session.start()
    bob = h.room.join("bob", attributes={"language": "en", **attributes})
    await session.settled()
    h.speak(bob, DIALOGUE.wav)
    await eventually(lambda: len(h.captions(translated=True)) == 6, what="the dialogue translated")
    h.speak(bob, ONE_SENTENCE.wav)  # 5.8 s of speech in all
    await eventually(lambda: len(h.captions(translated=True)) == 8, what="the sentence translated")
    assert h.fakes.cartesia.clone_requests == []
    if attributes == OWN_VOICE:  # VOICE_CLONING=off
        assert session.cloner is None
    else:
        assert session.cloner is not None and not session.cloner.consented("bob")


class BuggyCloner(VoiceCloner):
    """A cloner with a bug in its tap (injected, as tests/buggy_plugins.py does for plugins)."""

    def hear(self, identity: str, frame: rtc.AudioFrame) -> None:
        raise ZeroDivisionError("a bug in the tap")


@pytest.mark.parametrize("room", [{"cls": BuggyCloner}], indirect=True)
async def test_a_bug_in_the_tap_is_logged_once_and_the_speaker_is_still_interpreted(
    room: RoomHarness, caplog: pytest.LogCaptureFixture
):
    h, session = room, room.session
    h.fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts)
    await session.start()
    alice = h.room.join("alice", attributes={"language": "en", **OWN_VOICE})
    await session.settled()
    h.speak(alice, ONE_SENTENCE.wav)
    await eventually(lambda: len(h.captions(translated=True)) == 2, what="interpreted into es and fr")
    bugs = [r for r in caplog.records if r.getMessage().startswith("the own-voice tap failed")]
    assert len(bugs) == 1 and bugs[0].exc_info is not None


@pytest.mark.parametrize("room", [{"cloner": {"min_speech_s": 3.0}}], indirect=True)
async def test_the_clone_is_deleted_when_the_session_closes(room: RoomHarness):
    h, session = room, room.session
    h.fakes.deepgram.scripts["en"] = list(DIALOGUE.transcripts)
    await session.start()
    alice = h.room.join("alice", attributes={"language": "en", **OWN_VOICE})
    await session.settled()
    h.speak(alice, DIALOGUE.wav)
    await eventually(lambda: session.cloner is not None and session.cloner.made == 1, what="the clone")
    await session.aclose()  # as the drain does, alice still in the room
    assert h.fakes.cartesia.deleted_voices == [h.fakes.cartesia.clone_requests[0].voice_id]
    assert h.fakes.cartesia.voices == set()


@pytest.mark.parametrize("room", [{"cloner": {"min_speech_s": 3.0}}], indirect=True)
async def test_clones_are_deleted_first_when_the_session_closes_even_while_its_drain_hangs(room: RoomHarness):
    """The drain finishes what was heard; with Cartesia not answering it takes its whole bound (and the job's
    close would cancel it past 5 s): the clone is deleted at once all the same, before the drain ends."""
    h, session = room, room.session
    h.fakes.deepgram.scripts["en"] = DIALOGUE.transcripts + ONE_SENTENCE.transcripts
    await session.start()
    alice = h.room.join("alice", attributes={"language": "en", **OWN_VOICE})
    await session.settled()
    h.speak(alice, DIALOGUE.wav)
    await eventually(lambda: session.cloner is not None and session.cloner.made == 1, what="the clone")
    voice_id = h.fakes.cartesia.clone_requests[0].voice_id
    await eventually(lambda: len(h.captions(translated=True)) == 6, what="the dialogue translated")
    h.fakes.cartesia.ttfb_s = 60.0  # Cartesia stops answering: the last sentence's speech hangs the drain
    h.speak(alice, ONE_SENTENCE.wav)
    await eventually(lambda: len(h.captions(translated=True)) == 8, what="the sentence translated")
    closing = asyncio.create_task(session.aclose())
    await eventually(lambda: h.fakes.cartesia.deleted_voices == [voice_id], within_s=5, what="deleted first")
    assert not closing.done()  # the drain still runs (within its bound)
    await closing


async def test_a_closed_cloner_takes_no_new_consent_and_closing_again_retries_what_is_left(
    cartesia: FakeCartesia, http: aiohttp.ClientSession
):
    cloner = cloner_for(cartesia, http, Cloned(), delete_attempts=1)
    cloner.consent("alice", "en")
    cloner.hear("alice", frame(seconds=6.0))
    await eventually(lambda: cloner.made == 1, what="the clone")
    cartesia.fail_deletes(2)  # the withdrawal's attempt and the close's
    await cloner.aclose()
    assert len(cloner.undeleted) == 1
    cloner.consent("bob", "en")  # a last room event while the session closes
    assert not cloner.consented("bob")
    await cloner.aclose()  # the job's close, after a drain that failed: tries again
    assert cloner.undeleted == set() and cartesia.voices == set()
