"""The interpreter in a real room: the real LiveKit server, the worker dispatched into it as production runs
it, speakers and listeners as real participants (Opus over WebRTC, text streams through the SFU). Only the
providers are fakes, on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from livekit.agents.types import (
    ATTRIBUTE_AGENT_STATE,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    ATTRIBUTE_TRANSCRIPTION_TRACK_ID,
)

from agent.filemode import read_wav
from agent.room import ATTR_LANGUAGES, ATTR_SPEAKER
from tests.conftest import DIALOGUE, SPANISH, start_room_fakes, stop_fakes
from tests.livekit_server import LiveKitServer
from tests.loopback import eventually, tone_sequence
from tests.participants import LISTEN_RATE
from tests.real_room import RealRoom, real_room


@pytest.fixture
async def room(livekit_server: LiveKitServer, tmp_path: Path) -> AsyncIterator[RealRoom]:
    fakes = await start_room_fakes()
    try:
        async with real_room(livekit_server, fakes, tmp_path) as room:
            yield room
            room.check_worker_output()
    finally:
        await stop_fakes(fakes)


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
    await eventually(
        lambda: (
            len(bob.final_captions(translated=True, language="es")) == 3
            and len(alice.final_captions(translated=True, language="en")) == 2
        ),
        within_s=40,
        what="every translated caption",
    )
    await eventually(lambda: alice.agent_attribute(ATTRIBUTE_AGENT_STATE) == "listening", what="done")
    assert tone_sequence(bob.audio("interpretation-es"), LISTEN_RATE) == [400, 600, 800]
    assert tone_sequence(alice.audio("interpretation-en"), LISTEN_RATE) == [300, 700]

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
            versions = [c.final for c in translated if c.segment_id == final.segment_id]
            assert versions == [False, True], final.segment_id
    assert ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID in alice.captions[0].attributes
