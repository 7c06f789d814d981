"""A distinct voice per speaker (issue 13, part 1): the `VoiceBook`'s rule, and a room through the fake room
surface where the fake Cartesia records the voice each context was spoken with."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from agent.room.room_io import ATTR_SPEAKER
from agent.room.voices import MULTILINGUAL_VOICES, PLUGIN_DEFAULT_VOICE, VoiceBook, curated_voices
from agent.settings.room_settings import RoomSettings
from tests.conftest import DIALOGUE, ONE_SENTENCE, Fakes
from tests.loopback import eventually
from tests.test_filemode import run_cli
from tests.test_room import RoomHarness, agent_warnings, harness  # noqa: F401  (the fixture)

ROOM_VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"
CAROL_VOICE = "15a9cd88-84b0-4a8b-95f2-5d583b54c72e"
OWN = "00000000-0000-4000-8000-000000000001"


def book_of(*speakers: str, settings: RoomSettings | None = None) -> VoiceBook:
    book = VoiceBook()
    if settings is not None:
        book.settings = settings
    for speaker in speakers:
        book.join(speaker)
    return book


def test_each_speaker_gets_a_distinct_voice_in_join_order_whoever_speaks_first():
    book = book_of("ann", "ben", "cid")
    # cid speaks first, but the voices follow the join order
    assert book.voice_for("cid", "es") == MULTILINGUAL_VOICES[2]
    assert book.voice_for("ann", "es") == PLUGIN_DEFAULT_VOICE  # the language's default voice
    assert book.voice_for("ben", "es") == MULTILINGUAL_VOICES[1]
    assert len({book.voice_for(s, "es") for s in ("ann", "ben", "cid")}) == 3
    assert [book.voice_for("cid", "es") for _ in range(3)] == [MULTILINGUAL_VOICES[2]] * 3  # kept


def test_a_speaker_of_the_target_language_holds_no_voice_in_it():
    book = VoiceBook()
    book.join("ann", "es")  # never interpreted into Spanish
    book.join("ben", "en")
    assert book.voice_for("ben", "es") == PLUGIN_DEFAULT_VOICE
    # in French both need one: ann joined first, so hers is the default
    assert book.voice_for("ben", "fr") == curated_voices("fr")[0]
    assert book.voice_for("ann", "fr") == PLUGIN_DEFAULT_VOICE


def test_native_voices_come_first_and_the_room_default_is_the_first_speakers():
    book = book_of("ann", "ben", settings=RoomSettings(voices={"fr": ROOM_VOICE}))
    assert book.voice_for("ann", "fr") == ROOM_VOICE
    assert book.voice_for("ben", "fr") == curated_voices("fr")[0] != ROOM_VOICE
    assert curated_voices("fr")[0] not in MULTILINGUAL_VOICES  # a French voice
    # the room default changed mid-meeting: whoever holds the default follows it, the others keep theirs
    book.settings = RoomSettings(voices={"fr": OWN})
    assert (book.voice_for("ann", "fr"), book.voice_for("ben", "fr")) == (OWN, curated_voices("fr")[0])


def test_when_the_set_is_used_up_the_least_used_voice_is_reused_and_a_leaver_frees_theirs():
    speakers = [f"s{i}" for i in range(len(MULTILINGUAL_VOICES) + 2)]
    book = book_of(*speakers)
    voices = [book.voice_for(s, "es") for s in speakers]
    n = len(MULTILINGUAL_VOICES)
    assert len(set(voices[:n])) == n
    assert voices[n:] == [PLUGIN_DEFAULT_VOICE, MULTILINGUAL_VOICES[1]]  # each used once: earliest first
    book.leave("s2")
    book.join("new")
    assert book.voice_for("new", "es") == voices[2]  # held by nobody present now
    book.join("s2")
    assert book.voice_for("s2", "es") == voices[2]  # back: their voice, kept for the meeting


def test_a_speaker_override_wins_for_one_language_or_all():
    settings = RoomSettings(speaker_voices={"ann": {"*": OWN}, "ben": {"fr": ROOM_VOICE}})
    book = book_of("ann", "ben", settings=settings)
    assert book.voice_for("ann", "es") == book.voice_for("ann", "fr") == OWN
    assert book.voice_for("ben", "fr") == ROOM_VOICE
    assert book.voice_for("ben", "es") == MULTILINGUAL_VOICES[1]


def voices_of(h: RoomHarness) -> dict[str, set[str | None]]:
    """Speaker → the voices their contexts were spoken with: a context's text is part of one translation,
    and each translated caption names its speaker."""
    cartesia = h.fakes.cartesia
    said: dict[str, list[str]] = {}
    for caption in h.captions(translated=True):
        said.setdefault(caption.attributes[ATTR_SPEAKER], []).append(caption.text)
    out: dict[str, set[str | None]] = {speaker: set() for speaker in said}
    for context_id in cartesia.context_order:
        text = "".join(cartesia.contexts[context_id]).strip()
        if text:
            (speaker,) = {s for s, texts in said.items() if any(text in t for t in texts)}
            out[speaker].add(cartesia.voice_by_context[context_id])
    return out


async def test_two_speakers_on_one_track_get_two_voices_kept_across_utterances_and_a_mute(
    harness: RoomHarness,  # noqa: F811
):
    room, session = harness.room, harness.session
    await session.start()
    alice = room.join("alice", attributes={"language": "en"})
    carol = room.join("carol", attributes={"language": "en"})
    await session.settled()
    first, second, third = DIALOGUE.transcripts
    harness.fakes.deepgram.scripts["en"] = [first, ONE_SENTENCE.transcripts[0], second, third]
    publication = harness.speak(alice, DIALOGUE.wav)
    harness.speak(carol, ONE_SENTENCE.wav, delay_s=1.5)
    await eventually(lambda: len(harness.played("es")) >= 1, what="alice's first utterance spoken")
    (ears,) = [s.ears for s in session.speakers.values() if s.identity == "alice"]
    room.mute(alice, publication, True)
    await session.settled()
    room.mute(alice, publication, False)
    await session.settled()
    assert [s.ears for s in session.speakers.values() if s.identity == "alice"] not in ([], [ears])
    # the mute closes alice's segment early, so she has one more; every utterance is spoken
    await eventually(lambda: len(harness.captions(translated=True)) == 4, what="four translations")
    assert sorted(c.attributes[ATTR_SPEAKER] for c in harness.captions(translated=True)) == [
        "alice",
        "alice",
        "alice",
        "carol",
    ]
    voices = voices_of(harness)
    assert voices == {"alice": {PLUGIN_DEFAULT_VOICE}, "carol": {MULTILINGUAL_VOICES[1]}}


async def test_room_voices_and_speaker_overrides_apply_and_a_bad_override_is_a_warning(
    harness: RoomHarness,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.INFO)
    room, session = harness.room, harness.session
    room.metadata = json.dumps(
        {"voices": {"es": ROOM_VOICE}, "speaker_voices": {"alice": {"es": "nope"}, "carol": CAROL_VOICE}}
    )
    await session.start()
    alice = room.join("alice", attributes={"language": "en"})
    carol = room.join("carol", attributes={"language": "en"})
    await session.settled()
    warning = "room metadata: speaker_voices[#1]['es']: voice id 'nope' is not a UUID; dropped"
    await eventually(lambda: agent_warnings(room) == [warning], what="the bad override reported")
    assert not any("alice" in r.getMessage() or "carol" in r.getMessage() for r in caplog.records)
    harness.fakes.deepgram.scripts["en"] = [DIALOGUE.transcripts[0], ONE_SENTENCE.transcripts[0]]
    harness.speak(alice, ONE_SENTENCE.wav)  # "heard" as DIALOGUE's first line
    harness.speak(carol, ONE_SENTENCE.wav, delay_s=2.5)
    await eventually(lambda: len(harness.played("es")) == 2, what="both utterances spoken")
    await eventually(lambda: len(harness.captions(translated=True)) == 2, what="both captions")
    voices = voices_of(harness)
    # alice: her override is dropped, so the room's Spanish voice (she joined first); carol: hers
    assert voices == {"alice": {ROOM_VOICE}, "carol": {CAROL_VOICE}}


async def test_file_mode_speaks_with_the_configured_voice_unchanged(dialogue_fakes: Fakes, tmp_path: Path):
    args = [str(DIALOGUE.wav), "--source", "en", "--target", "es", "--out", str(tmp_path / "out.wav")]
    code, _, stderr = await run_cli(args, dialogue_fakes.env(CARTESIA_VOICE=OWN), tmp_path)
    assert code == 0, stderr
    spoken = [
        c for c in dialogue_fakes.cartesia.context_order if "".join(dialogue_fakes.cartesia.contexts[c])
    ]
    assert len(spoken) >= 3
    assert {dialogue_fakes.cartesia.voice_by_context[c] for c in spoken} == {OWN}
