"""Cartesia's errors as Cartesia documents them, on one channel (brain + mouth) on the real plugin: an
error frame after some of a clause's audio, and handshakes refused (401, 429). No text is lost from what
is spoken without it showing: the clause is synthesized again (counted), or the utterance fails (counted,
the `tts` fault shown, its caption published in full)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from tests.channel import ChannelRun, channel_run
from tests.loopback import tone_sequence
from tests.test_faults import CLAUSES, SOURCES, TRANSLATIONS, scripted_fakes


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture
async def run() -> AsyncIterator[ChannelRun]:
    async with channel_run(scripted_fakes(), LLM_ATTEMPT_TIMEOUT_S="1") as r:
        yield r


async def test_an_error_frame_after_some_audio_synthesizes_the_clause_again(run: ChannelRun):
    cartesia = run.fakes.cartesia
    retries = metric("interpreter_tts_clause_retries_total")
    cartesia.error_next_context_after(3)  # 3 chunks of "Buenos días a todos," then the error frame
    run.say(SOURCES[0])
    await run.finish()

    assert len(cartesia.errored_contexts) == 1
    errored = cartesia.errored_contexts[0]
    assert 0 < cartesia.audio_s[errored] < cartesia.duration_for(CLAUSES[0])  # cut short by the error
    # taken as the clause's end, the rest of it would be missing from what was heard
    assert metric("interpreter_tts_clause_retries_total") == retries + 1
    assert tone_sequence(run.output.audio(), 24000) == [400, 500]
    assert run.output.seconds == pytest.approx(run.expected_seconds(CLAUSES[:2]), abs=0.03)
    assert run.tracker.spoken == 1
    assert run.translated() == [TRANSLATIONS["Good morning"]]


async def test_a_handshake_refused_401_fails_the_utterance_caption_kept_fault_shown(run: ChannelRun):
    cartesia = run.fakes.cartesia
    cartesia.refuse_handshakes(401, n=20)  # a bad key: every connection refused
    run.say(SOURCES[1])
    await run.finish()

    assert cartesia.refused_handshakes and set(cartesia.refused_handshakes) == {401}
    assert not cartesia.contexts and run.output.seconds == 0
    assert [r.outcome for r in run.tracker.completed] == ["failed"]
    assert run.translated() == [TRANSLATIONS["budget"]]  # the caption, in full
    assert ("tts", True) in run.faults
    # not worth retrying (401): one try for the clause, and the early stream's
    assert len(cartesia.refused_handshakes) <= 2


async def test_a_handshake_refused_429_is_retried_and_the_clause_spoken(run: ChannelRun):
    cartesia = run.fakes.cartesia
    cartesia.refuse_handshakes(429)  # over the concurrency limit, once
    run.say(SOURCES[1])
    await run.finish()

    assert cartesia.refused_handshakes == [429]
    assert tone_sequence(run.output.audio(), 24000) == [800]
    assert run.tracker.spoken == 1 and ("tts", True) not in run.faults
