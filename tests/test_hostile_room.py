"""A hostile participant in a real room (the real LiveKit server, the real worker process, participants on
the real SDK): it asks for dozens of languages, storms its attributes with bad codes and huge values, and
renames itself to another participant's name, while a speaker keeps talking and a listener keeps hearing
and reading them in its own language, under the right name. Asserted on what the listener receives."""

from __future__ import annotations

import asyncio
import contextlib
import json

from agent.room.room_io import ATTR_SPEAKER, ATTR_SPEAKER_NAME, ATTR_WARNINGS
from agent.run.filemode import read_wav
from tests.conftest import DIALOGUE, ONE_SENTENCE
from tests.loopback import eventually, tone_sequence
from tests.participants import LISTEN_RATE, Speaker
from tests.real_room import RealRoom
from tests.test_real_room import room  # noqa: F401 (the real-room tests' fixture)

DOZENS = "de,fr,it,ja,ko,nl,pl,ru,sv,da,fi,uk,cs,el,hu,ro,bg,hr,sk,id,ms,vi,th,ta,te,bn,mr,gu,kn,pa,he,tl"
HUGE = "x" * 60_000  # LiveKit takes attributes up to 64 KiB in all


async def storm(mallory: Speaker, changes: int) -> int:
    """`changes` attribute changes as fast as the server takes them, then a rename: how many it took."""
    values = [DOZENS, "klingon,xx,,", "ES", "es_MX,zh-Hant-TW,pt-br", HUGE, "<script>" * 500, "it", "de,fr"]
    taken = 0
    for n in range(changes):
        attributes = {"interpret_to": values[n % len(values)], "junk": HUGE if n % 7 == 0 else str(n)}
        with contextlib.suppress(Exception):  # a value the server refuses is refused: the storm goes on
            await mallory.room.local_participant.set_attributes(attributes)
            taken += 1
    await mallory.room.local_participant.set_name("Alice")  # another participant's name
    await mallory.room.local_participant.set_attributes({"interpret_to": DOZENS, "junk": ""})
    return taken


async def test_a_hostile_participant_cannot_take_the_room_from_the_others(room: RealRoom) -> None:  # noqa: F811
    room.fakes.deepgram.scripts["en"] = list(DIALOGUE.transcripts)
    room.fakes.deepgram.scripts["de"] = list(ONE_SENTENCE.transcripts)
    alice = await room.speaker("alice", attributes={"language": "en"}, dispatch=room.dispatch(), name="Alice")
    # bob spells Spanish as his browser does; he hears it on the one Spanish track
    bob = await room.listener("bob", attributes={"interpret_to": "es_MX"}, name="Bob")
    mallory = await room.speaker(
        "mallory", attributes={"language": "de", "interpret_to": DOZENS}, name="Mallory"
    )
    await room.agent_tracks(
        bob, "interpretation-es", "interpretation-en", "interpretation-de", "interpretation-fr"
    )
    stormed = asyncio.create_task(storm(mallory, 300))
    alice.say(read_wav(DIALOGUE.wav))
    assert await stormed > 100  # the server took most of them
    await eventually(
        lambda: len(bob.final_captions(translated=True, language="es")) == 3,
        within_s=60,
        what="alice's three sentences in Spanish",
    )
    mallory.say(read_wav(ONE_SENTENCE.wav))  # renamed "Alice" by now
    await eventually(
        lambda: len(bob.final_captions(translated=True, language="es")) == 4,
        within_s=60,
        what="mallory's sentence in Spanish",
    )

    spanish = bob.final_captions(translated=True, language="es")
    assert [c.text for c in spanish[:3]] == list(DIALOGUE.translations.values())
    assert [(c.attributes[ATTR_SPEAKER], c.attributes[ATTR_SPEAKER_NAME]) for c in spanish] == [
        ("alice", "Alice"), ("alice", "Alice"), ("alice", "Alice"), ("mallory", "Mallory"),
    ]  # fmt: skip
    source = {(c.sender, c.attributes.get(ATTR_SPEAKER_NAME)) for c in bob.final_captions(translated=False)}
    assert source == {("alice", "Alice"), ("mallory", "Mallory")}
    # bob heard alice's three sentences, in order, on the Spanish track, then mallory's
    heard = tone_sequence(bob.audio("interpretation-es"), LISTEN_RATE, min_windows=3)
    assert heard == [400, 600, 800, 500], heard
    # alice was listened to by one STT stream throughout: the storm never restarted her
    assert [c.query.get("language") for c in room.fakes.deepgram.connections].count("en") == 1
    # mallory holds at most two places; what she asked beyond them and her bad codes are reported
    tracks = set(bob.agent_tracks())
    assert "interpretation-es" in tracks and len(tracks) <= 4, tracks
    warnings = json.loads(bob.agent_attribute(ATTR_WARNINGS) or "[]")
    assert any("asked for more than 2 languages" in w for w in warnings), warnings
