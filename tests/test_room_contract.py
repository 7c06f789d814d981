"""The room contract under abuse, through the fake room (the real room: tests/test_hostile_room.py):
language codes in every spelling meet on one track; one participant's `interpret_to` is capped; huge and
malformed values are bounded and reported; a storm of one participant's attribute changes is coalesced
(on an injected clock) without touching anyone else's interpretation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.language.codes import SUPPORTED_LANGUAGES, parse_language, participant_language
from agent.room.attributes import ParticipantAttributes
from agent.room.room_io import ATTR_LANGUAGES, ATTR_SENTENCE, ATTR_SPEAKER, ATTR_SPEAKER_NAME, ATTR_WARNINGS
from tests.conftest import DIALOGUE, ONE_SENTENCE, start_room_fakes, stop_fakes
from tests.fakes.room import FakeParticipant, FakeRoom
from tests.loopback import eventually
from tests.test_room import RoomHarness, room_harness

VECTORS = Path(__file__).parent.parent / "web" / "src" / "language-codes.json"


class ManualTimers:
    """A clock that moves only when told, and the timers due on it (`ParticipantAttributes`' call_later)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._due: list[tuple[float, Callable[[], None], list[bool]]] = []

    def clock(self) -> float:
        return self.now

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Callable[[], None]:
        entry = (self.now + delay_s, callback, [False])
        self._due.append(entry)
        return lambda: entry[2].__setitem__(0, True)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [e for e in self._due if e[0] <= self.now]
        self._due = [e for e in self._due if e[0] > self.now]
        for _, callback, cancelled in sorted(due, key=lambda e: e[0]):
            if not cancelled[0]:
                callback()

    @property
    def pending(self) -> int:
        return sum(not e[2][0] for e in self._due)


@pytest.fixture
async def timers() -> ManualTimers:
    return ManualTimers()


@pytest.fixture
async def harness(request: pytest.FixtureRequest, timers: ManualTimers) -> AsyncIterator[RoomHarness]:
    fakes = await start_room_fakes()
    settings = fakes.settings(**getattr(request, "param", {}))
    attributes = ParticipantAttributes(clock=timers.clock, call_later=timers.call_later)
    async with room_harness(fakes, settings, attributes=attributes) as h:
        yield h
    await stop_fakes(fakes)


def warnings(room: FakeRoom) -> list[str]:
    return list(json.loads(room.local_participant.attributes.get(ATTR_WARNINGS, "[]")))


def test_language_codes_in_every_spelling_come_to_one_form_shared_with_the_page():
    vectors = json.loads(VECTORS.read_text())["vectors"]
    assert len(vectors) >= 30
    for vector in vectors:
        got = (parse_language(vector["input"]), participant_language(vector["input"]))
        assert got == (vector["tag"], vector["language"]), vector


def test_huge_values_are_not_codes():
    assert participant_language("es" + "-abc" * 16_000) is None
    assert participant_language("e" * 65_536) is None


async def test_listeners_asking_one_language_in_any_spelling_share_its_one_track(harness: RoomHarness):
    room, session = harness.room, harness.session
    room.set_metadata(json.dumps({"target_languages": ["pt-BR"]}))
    await session.start()
    for n, code in enumerate(["FR", "fr-CA", " fr_FR ", "pt", "PT-pt", "de_DE", "zh-Hant-TW", "zh_hans"]):
        room.join(f"listener-{n}", attributes={"interpret_to": code})
    await session.settled()
    # one track per language, named by its base code: the page (which knows base codes) finds each
    assert set(room.local_participant.published) == {
        "interpretation-pt", "interpretation-fr", "interpretation-de", "interpretation-zh",
    }  # fmt: skip
    await eventually(lambda: room.local_participant.attributes.get(ATTR_LANGUAGES) == "de,fr,pt,zh")
    assert warnings(room) == []


@pytest.mark.parametrize("harness", [{"MAX_LANGUAGES": "4"}], indirect=True)
async def test_one_participant_cannot_take_every_language_slot(harness: RoomHarness):
    room, session = harness.room, harness.session
    await session.start()
    room.join("mallory", attributes={"interpret_to": "de,fr,it,ja,ko,nl,pl,ru,sv,da"})
    room.join("bob", attributes={"interpret_to": "ko"})  # asked later, by someone else
    await session.settled()
    # mallory gets her first two; bob's language is interpreted (TARGET_LANGUAGE es is the room's)
    assert sorted(session.outputs) == ["de", "es", "fr", "ko"]
    assert warnings(room) == [
        "1 participant(s) asked for more than 2 languages in interpret_to: only their first 2 are used"
    ]


async def test_huge_and_malformed_attributes_are_bounded_and_reported(harness: RoomHarness):
    room, session = harness.room, harness.session
    harness.fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts)
    await session.start()
    alice = room.join("alice", attributes={"language": "en"})
    room.join("bob", attributes={"interpret_to": "es"})
    huge = "de," * 21_000 + "x" * 1000  # about 64 KB
    room.join("mallory", attributes={"interpret_to": huge, "language": "<script>" * 8000})
    room.join(
        "trudy", attributes={"interpret_to": "klingon,xx,es_ES,,,", "interpreter.voice": "own" * 20_000}
    )
    harness.speak(alice, ONE_SENTENCE.wav)
    await session.settled()
    assert sorted(session.outputs) == ["de", "en", "es"]  # mallory's German once; trudy's Spanish (es_ES)
    problems = warnings(room)
    assert problems == [
        "2 participant(s) set language codes that are not supported or malformed (or too long): ignored"
    ]
    assert len(room.local_participant.attributes[ATTR_WARNINGS]) < 300
    await eventually(lambda: len(harness.captions(translated=True)) == 2, what="alice interpreted")


@pytest.mark.parametrize("harness", [{"MAX_LANGUAGES": "6"}], indirect=True)
async def test_a_storm_of_one_participants_changes_is_coalesced_and_never_restarts_anyone_else(
    harness: RoomHarness, timers: ManualTimers
):
    room, session = harness.room, harness.session
    harness.fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts)
    await session.start()
    alice = room.join("alice", attributes={"language": "en"})
    room.join("bob", attributes={"interpret_to": "de"})
    mallory = room.join("mallory", attributes={"interpret_to": "it"})
    harness.speak(alice, ONE_SENTENCE.wav)
    await session.settled()
    (ears,) = [speaker.ears for speaker in session.speakers.values()]
    publishes = len(room.local_participant.publish_log)
    for i in range(300):  # hundreds of changes, each one seen by the session before the next
        room.set_attributes(
            mallory, interpret_to="pt" if i % 2 == 0 else "it", language="fr" if i % 3 else "ja"
        )
        await session.settled()
    # the first change applied at once; the rest wait for the window, which has not passed
    assert sorted(session.outputs) == ["de", "en", "es", "pt"]
    assert len(room.local_participant.publish_log) - publishes == 2  # "it" went, "pt" came: once
    timers.advance(1.0)
    await session.settled()
    # the latest state applied (i = 299: "it"), once
    assert sorted(session.outputs) == ["de", "en", "es", "it"]
    assert len(room.local_participant.publish_log) - publishes == 4
    assert timers.pending == 0
    # alice's ears never restarted; bob hears her
    assert [speaker.ears for speaker in session.speakers.values()] == [ears]
    await eventually(
        lambda: {c.attributes["language"] for c in harness.captions(translated=True)} >= {"de", "es"},
        what="alice interpreted into bob's German and the room's Spanish",
    )


def test_attribute_changes_apply_at_once_then_at_most_once_per_window():
    timers = ManualTimers()
    applied: list[str] = []
    attributes = ParticipantAttributes(clock=timers.clock, call_later=timers.call_later)
    attributes.on_applied = lambda: applied.append(attributes.of(ann)["interpret_to"])

    ann = FakeParticipant("ann", attributes={"interpret_to": "de", "other": "x" * 100_000})
    assert dict(attributes.of(ann)) == {"interpret_to": "de"}  # first sight: as it is, ours only
    ann.attributes = {"interpret_to": "fr"}
    attributes.changed(ann)
    assert applied == ["fr"]  # a change after a quiet time: at once
    for code in ("it", "pt", "ja"):
        ann.attributes = {"interpret_to": code}
        attributes.changed(ann)
    assert applied == ["fr"] and attributes.of(ann)["interpret_to"] == "fr"
    timers.advance(0.999)
    assert applied == ["fr"]
    timers.advance(0.001)
    assert applied == ["fr", "ja"] and attributes.coalesced == 2
    ann.attributes = {"interpret_to": "x" * 100_000}
    timers.advance(5.0)
    attributes.changed(ann)
    assert len(attributes.of(ann)["interpret_to"]) == 256
    attributes.forget({"bob"})
    assert attributes.tracked == 0


async def test_captions_carry_the_name_a_speaker_joined_with_never_a_name_taken_later(harness: RoomHarness):
    room, session = harness.room, harness.session
    harness.fakes.deepgram.scripts["en"] = DIALOGUE.transcripts + ONE_SENTENCE.transcripts
    await session.start()
    alice = room.join("alice", attributes={"language": "en"}, name="Alice")
    mallory = room.join("mallory", attributes={"language": "en"}, name="Mallory\u202e" + "M" * 70_000)
    trudy = room.join("trudy", attributes={"language": "en"}, name="ALICE")  # joins as someone else's name
    await session.settled()
    room.rename(mallory, "Alice")  # after joining: another participant's name
    harness.speak(alice, DIALOGUE.wav)
    harness.speak(mallory, ONE_SENTENCE.wav)
    await eventually(lambda: len(harness.captions(translated=True)) == 4, what="every translation")
    expected = {"alice": "Alice", "mallory": "Mallory" + "M" * 57, "trudy": "ALICE (2)"}
    for caption in harness.captions(final=False):
        speaker = caption.attributes.get(ATTR_SPEAKER, caption.sender_identity)
        assert caption.attributes[ATTR_SPEAKER_NAME] == expected[speaker], caption
    # every caption says which sentence of its speaker it is a piece of; a translation, its source's
    sentences = {c.attributes["lk.segment_id"]: c.attributes[ATTR_SENTENCE] for c in harness.captions()}
    for segment, sentence in sentences.items():
        speaker = segment.split("-")[0]
        assert sentence.startswith(f"{speaker}-s"), (segment, sentence)
        assert sentence == sentences[f"{speaker}-{segment.split('-')[1]}"], (segment, sentence)
    # these are whole sentences ("... ."): each piece closes its own
    assert len(set(sentences.values())) == len(harness.captions(translated=False))
    assert {c.attributes.get(ATTR_SPEAKER, c.sender_identity) for c in harness.captions()} == {
        "alice",
        "mallory",
    }
    assert session.names.renames_ignored == 1
    room.leave(trudy)
    await session.settled()
    assert set(session.names.names) == {"alice", "mallory"}


PAGE_CHECK = """
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
const out = await build({ entryPoints: ['src/language.ts'], bundle: true, format: 'esm', write: false });
const source = Buffer.from(out.outputFiles[0].text).toString('base64');
const page = await import('data:text/javascript;base64,' + source);
page.useSupportedLanguages(JSON.parse(process.env.SUPPORTED));
const { vectors } = JSON.parse(readFileSync('src/language-codes.json', 'utf8'));
console.log(JSON.stringify(vectors.map((vector) => page.canonicalLanguage(vector.input) ?? null)));
"""


def test_the_page_reads_language_codes_as_the_interpreter_does():
    """web/src/language.ts against the same vectors, run by node (web/node_modules: `npm ci` in web/)."""
    web = VECTORS.parent.parent
    node = shutil.which("node")
    if node is None or not (web / "node_modules" / "esbuild").is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node and web/node_modules are needed (cd web && npm ci)")
        pytest.skip("needs node and web/node_modules: cd web && npm ci")
    env = {**os.environ, "SUPPORTED": json.dumps(sorted(SUPPORTED_LANGUAGES))}
    done = subprocess.run(
        [node, "--input-type=module", "-e", PAGE_CHECK],
        cwd=web,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    vectors = json.loads(VECTORS.read_text())["vectors"]
    assert json.loads(done.stdout) == [vector["language"] for vector in vectors]


def test_withdrawing_own_voice_consent_never_waits_for_the_window():
    timers = ManualTimers()
    applied: list[str] = []
    attributes = ParticipantAttributes(clock=timers.clock, call_later=timers.call_later)
    ann = FakeParticipant("ann", attributes={"interpreter.voice": "own"})
    attributes.on_applied = lambda: applied.append(attributes.of(ann).get("interpreter.voice", ""))
    attributes.of(ann)
    ann.attributes = {"interpreter.voice": "own", "interpret_to": "fr"}
    attributes.changed(ann)  # applied at once
    ann.attributes = {"interpret_to": "de"}  # within the window: consent withdrawn (and a language)
    attributes.changed(ann)
    assert applied == ["own", ""] and attributes.of(ann)["interpret_to"] == "de"
    assert timers.pending == 0
