"""The fault matrix: the LLMs and the TTS fail on command (the fakes inject it at the wire), and what
the speaker said is still spoken exactly once, or captioned when it cannot be.

These run one channel (brain + mouth) on the real plugins and SDK, fed utterances directly and
playing into an output that does not pace in real time, so each fault costs little test time. The
STT faults are in `test_ears.py`, the room-level ones (state, captions) in `test_room.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from livekit.agents import llm as lk_llm
from prometheus_client import REGISTRY

from agent.loops.brain.prompt import RESUME_REQUEST
from agent.loops.models import Utterance
from agent.loops.pipeline import PipelineOptions
from tests.channel import ChannelRun, channel_run
from tests.conftest import Fakes
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.fakes.llm import message_text
from tests.harness import spoken_text
from tests.loopback import eventually, tone_sequence

SOURCES = ["Good morning everyone, and welcome to this meeting.", "Let us start with the budget."]
TRANSLATIONS = {
    "Good morning": "Buenos días a todos, y bienvenidos a esta reunión.",
    "budget": "Empecemos por el presupuesto.",
}
# one tone per clause the brain cuts: a repeated or missing piece shows in the audio
TONES = {"Buenos": 400.0, "bienvenidos": 500.0, "presupuesto": 800.0}
CLAUSES = ["Buenos días a todos,", "y bienvenidos a esta reunión.", "Empecemos por el presupuesto."]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def tone_for(text: str) -> float:
    return next((f for w, f in TONES.items() if w in text), 440.0)


def scripted_fakes() -> Fakes:
    return Fakes(
        deepgram=FakeDeepgram([]),
        cerebras=FakeLLM(translations=TRANSLATIONS),
        groq=FakeLLM(translations=TRANSLATIONS),
        cartesia=FakeCartesia(freq_for=tone_for),
    )


@pytest.fixture
async def run() -> AsyncIterator[ChannelRun]:
    async with channel_run(scripted_fakes(), LLM_ATTEMPT_TIMEOUT_S="1") as r:
        yield r


def _recovered(llm: lk_llm.LLM) -> asyncio.Event:
    back = asyncio.Event()

    def on_change(event: lk_llm.AvailabilityChangedEvent) -> None:
        if event.available:
            back.set()

    llm.on("llm_availability_changed", on_change)
    return back


FAULTS = {
    "500": lambda llm: llm.fail_next(500),
    "429": lambda llm: llm.fail_next(429),
    "timeout before the first token": lambda llm: llm.hang_next(),
    "drop mid-stream": lambda llm: llm.drop_next_after(9),  # after "Buenos días a todos, y" (9 pieces)
    "error event before the first token": lambda llm: llm.error_next_after(0),  # in a 200 stream
    "error event mid-stream": lambda llm: llm.error_next_after(9),
}
FAULT_SEEN = dict(zip(FAULTS, ["fail", "fail", "hang", "drop", "error", "error"], strict=True))
MID_STREAM = ("drop mid-stream", "error event mid-stream")


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_cerebras_fault_groq_takes_over_speech_once_then_cerebras_again(run: ChannelRun, fault: str):
    cerebras, groq = run.fakes.cerebras, run.fakes.groq
    recovered = _recovered(run.llm)
    fallbacks = metric("interpreter_llm_fallbacks_total", llm="cerebras")
    FAULTS[fault](cerebras)
    run.say(SOURCES[0])
    await eventually(lambda: len(run.tracker.completed) == 1, what="the first utterance")
    await asyncio.wait_for(recovered.wait(), 10)  # the adapter's probe found Cerebras well again
    run.say(SOURCES[1])
    await run.finish()

    # exactly once: every clause heard once, in order, for exactly as long as it was synthesized
    assert tone_sequence(run.output.audio(), 24000) == [400, 500, 800]
    assert run.output.seconds == pytest.approx(run.expected_seconds(CLAUSES), abs=0.03)
    assert run.translated() == list(TRANSLATIONS.values())
    assert run.tracker.spoken == 2 and run.tracker.failed == 0
    # Groq served the first utterance (after the fault), Cerebras the second
    served = [r for r in cerebras.requests if r.fault is None]
    assert any("budget" in message_text(r.messages[-1]) for r in served)
    assert not any("budget" in message_text(r.messages[-1]) for r in groq.requests)
    assert groq.requests, "Groq took over"
    assert cerebras.requests[0].fault == FAULT_SEEN[fault]  # the fault the fake really injected
    if fault in MID_STREAM:
        # the clause given before the drop was not asked for again: Groq continued after it
        resumed = groq.requests[0].messages
        assert resumed[-1]["content"] == RESUME_REQUEST
        assert resumed[-2] == {"role": "assistant", "content": "Buenos días a todos,"}
        assert groq.requests[0].reply == "y bienvenidos a esta reunión."
    assert ("llm", True) not in run.faults  # one LLM answered all along: no outage
    assert metric("interpreter_llm_fallbacks_total", llm="cerebras") == fallbacks + 1


async def test_a_continuation_that_starts_over_is_not_spoken_twice(run: ChannelRun):
    run.fakes.cerebras.drop_next_after(9)
    run.fakes.groq.resume_repeats = True  # asked to continue, it translates the whole speech again
    run.say(SOURCES[0])
    await run.finish()

    assert run.fakes.groq.requests[0].reply == TRANSLATIONS["Good morning"]  # it did start over
    assert tone_sequence(run.output.audio(), 24000) == [400, 500]
    assert run.output.seconds == pytest.approx(run.expected_seconds(CLAUSES[:2]), abs=0.03)
    assert run.translated() == [TRANSLATIONS["Good morning"]]


async def test_both_llms_down_then_back_fault_is_shown_and_speech_resumes_by_itself(run: ChannelRun):
    for fake in (run.fakes.cerebras, run.fakes.groq):
        fake.fail_next(503, n=4)  # attempts and the adapter's recovery probes use them up in ~2 s
    run.say(SOURCES[1])
    await eventually(lambda: ("llm", True) in run.faults, what="the LLM fault to be reported")
    assert len(run.tracker.completed) == 0  # waiting, not failed
    await run.finish(within_s=30)

    assert run.faults == [("llm", True), ("llm", False)]
    assert run.translated() == [TRANSLATIONS["budget"]]
    assert tone_sequence(run.output.audio(), 24000) == [800]
    assert run.tracker.spoken == 1


async def test_an_outage_past_stale_after_s_fails_the_utterance_and_fresh_speech_is_spoken(
    caplog: pytest.LogCaptureFixture,
):
    fakes = scripted_fakes()
    async with channel_run(fakes, STALE_AFTER_S="1", LLM_ATTEMPT_TIMEOUT_S="1") as run:
        for fake in (fakes.cerebras, fakes.groq):
            fake.outage_status = 503
        with caplog.at_level(logging.INFO):
            run.say(SOURCES[0])
            # retried without a bound, the utterance would wait for the providers for ever
            await eventually(
                lambda: len(run.tracker.completed) == 1, within_s=15, what="the utterance given up"
            )
        assert run.faults == [("llm", True)]  # still shown: the outage lasts
        for fake in (fakes.cerebras, fakes.groq):
            fake.outage_status = None
        run.say(SOURCES[1])  # said after the providers came back
        await run.finish()

    assert [r.outcome for r in run.tracker.completed] == ["failed", "spoken"]
    assert run.translated() == [TRANSLATIONS["budget"]]  # the failed one has no translated caption
    assert tone_sequence(run.output.audio(), 24000) == [800]
    assert len(fakes.cartesia.contexts) == 1
    assert run.channel.brain.translator.gave_up == 1
    assert run.faults == [("llm", True), ("llm", False)]
    gave_up = [r for r in caplog.records if r.name.startswith("agent.") and r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in gave_up] == [
        "every LLM is failing: translations wait until one answers",
        "no LLM answered in time (cerebras 503, groq 503): this utterance is not translated",
    ]


async def test_an_outage_that_never_ends_frees_every_slot_and_the_channel_ends():
    fakes = scripted_fakes()
    async with channel_run(fakes, STALE_AFTER_S="1", LLM_ATTEMPT_TIMEOUT_S="1") as run:
        for fake in (fakes.cerebras, fakes.groq):
            fake.outage_status = 503
        for i in range(5):  # more than MAX_IN_FLIGHT (3)
            run.say(f"Point number {i} is on the list.")
        await run.finish(within_s=30)  # retried for ever, three utterances would hold the slots

    assert [r.outcome for r in run.tracker.completed] == ["failed"] * 5
    assert run.channel.brain.translator.gave_up == 5
    assert run.faults == [("llm", True)]
    assert run.translated() == [] and not fakes.cartesia.contexts


async def test_a_translation_ready_late_from_a_backlog_is_captioned_not_spoken(run: ChannelRun):
    now = run.tracker.clock()
    ended = now - 2 * PipelineOptions().stale_after_s  # it waited in a backlog past STALE_AFTER_S
    run.channel.put_nowait(
        Utterance(
            id="ann-0",
            speaker="ann",
            text=SOURCES[1],
            language="en",
            audio_start=0.0,
            audio_end=1.5,
            speech_end_at=ended,
            final_at=ended,
        )
    )
    await run.finish()

    assert [r.outcome for r in run.tracker.completed] == ["captioned"]
    assert run.translated() == [TRANSLATIONS["budget"]]
    assert not run.fakes.cartesia.contexts and run.output.seconds == 0
    assert not run.faults


async def test_tts_drop_mid_clause_restarts_the_clause_without_repeating_what_was_heard(run: ChannelRun):
    # the output plays instantly, so the dropped attempt's first chunks were already heard: the
    # restarted clause skips exactly that much
    run.fakes.cartesia.drop_next_context_after(3)
    run.say(SOURCES[0])
    await run.finish()

    assert len(run.fakes.cartesia.dropped_contexts) == 1
    assert tone_sequence(run.output.audio(), 24000) == [400, 500]
    assert run.output.seconds == pytest.approx(run.expected_seconds(CLAUSES[:2]), abs=0.03)
    assert run.translated() == [TRANSLATIONS["Good morning"]]
    assert run.tracker.spoken == 1


async def test_tts_drop_before_playback_replaces_the_unheard_audio(run: ChannelRun):
    cartesia = run.fakes.cartesia
    run.output.gate.clear()  # the track is busy with the first utterance...
    run.say(SOURCES[1])
    await eventually(lambda: len(cartesia.contexts) == 1, what="the first utterance synthesized")
    cartesia.drop_next_context_after(3)  # ...when the next one's first clause breaks off
    run.say(SOURCES[0])
    await eventually(lambda: len(cartesia.contexts) == 4, what="the clause synthesized again")
    again = cartesia.context_order[-1]
    await eventually(
        lambda: cartesia.audio_s[again] >= cartesia.duration_for(CLAUSES[0]) - 0.001,
        what="the clause's new audio sent in full, before playback",
    )
    run.output.gate.set()
    await run.finish()

    assert len(cartesia.dropped_contexts) == 1
    assert tone_sequence(run.output.audio(), 24000) == [800, 400, 500]
    assert run.output.seconds == pytest.approx(run.expected_seconds([CLAUSES[2], *CLAUSES[:2]]), abs=0.03)


async def test_tts_errors_are_retried_and_a_failing_clause_leaves_the_caption_and_the_next_plays(
    run: ChannelRun,
):
    run.fakes.cartesia.error_next(1)  # one error: the framework's retry covers it
    run.say(SOURCES[1])
    await eventually(lambda: len(run.tracker.completed) == 1, what="the first utterance")
    assert tone_sequence(run.output.audio(), 24000) == [800]
    heard = run.output.seconds

    run.fakes.cartesia.error_next(3)  # the next (one clause) fails the first try and both retries
    run.say(SOURCES[1])
    await eventually(lambda: len(run.tracker.completed) == 2, what="the failed utterance")
    run.say(SOURCES[1])  # and the one after plays
    await run.finish()

    assert run.translated() == [TRANSLATIONS["budget"]] * 3  # every caption, the failed one's too
    assert [r.outcome for r in run.tracker.completed] == ["spoken", "failed", "spoken"]
    assert tone_sequence(run.output.audio(), 24000) == [800]  # the failed one added nothing
    assert run.output.seconds == pytest.approx(2 * heard, abs=0.03)
    assert ("tts", True) in run.faults and run.faults[-1] == ("tts", False)


@pytest.mark.parametrize("slow", ["llm", "tts"])
async def test_backlog_folds_into_bounded_queue_every_caption_out_and_speech_catches_up(
    run: ChannelRun, slow: str
):
    # utterances arrive faster than they are translated (a slow LLM) or synthesized (a slow TTS)
    if slow == "llm":
        run.fakes.cerebras.ttft_s = run.fakes.groq.ttft_s = 0.3
    else:
        run.fakes.cartesia.ttfb_s = 0.3
    texts = [f"Point number {i} is on the list." for i in range(30)]
    sizes = []
    for text in texts:
        run.say(text)
        sizes.append(run.channel.inbox.qsize())
        await asyncio.sleep(0.02)  # models speech arriving every 20 ms: it waits for no event
    await run.finish(within_s=60)

    assert max(sizes) <= PipelineOptions().utterance_queue_size  # memory bounded by count
    # nothing lost: every utterance's words reached a translation, and each record was closed
    spoken_sources = " ".join(
        message_text(r.messages[-1]) for r in run.fakes.cerebras.requests if r.fault is None
    )
    for i in range(30):
        assert f"Point number {i} " in spoken_sources
    assert run.tracker.spoken == 30 and run.tracker.open_count == 0
    assert len(run.translated()) < 30  # folded: fewer, longer translations, so speech caught up


async def test_a_long_reply_arriving_in_one_chunk_is_spoken_whole_and_in_order():
    """Providers may send a whole reply at once: many clauses at one time, each with its own TTS
    stream, at most a few ahead of playback, none waiting on a later one."""
    sentences = [f"Frase número {n}." for n in ("uno", "dos", "tres", "cuatro", "cinco", "seis", "siete")]
    reply = " ".join(sentences)
    fakes = Fakes(
        deepgram=FakeDeepgram([]),
        cerebras=FakeLLM(responder=lambda _: reply),
        groq=FakeLLM(responder=lambda _: reply),
        cartesia=FakeCartesia(),
    )
    fakes.cerebras.whole_reply = True
    async with channel_run(fakes) as run:
        run.say("Seven short sentences, said one after another, numbered from one to seven.")
        await run.finish(within_s=20)
    assert [spoken_text(t) for t in fakes.cartesia.contexts.values()] == sentences
    assert run.output.seconds == pytest.approx(run.expected_seconds(sentences), abs=0.03)
    assert run.tracker.spoken == 1


def _refuse_with_a_bad_key(fake: FakeLLM) -> None:
    fake.api_key = "the-key-that-was-revoked-and-replaced"


def _refuse_an_unknown_model(fake: FakeLLM) -> None:
    fake.models = {"a-model-we-do-not-ask-for"}


def _refuse_unprocessable(fake: FakeLLM) -> None:
    fake.outage_status = 422


REFUSALS = {
    401: _refuse_with_a_bad_key,
    404: _refuse_an_unknown_model,
    422: _refuse_unprocessable,
}


@pytest.mark.parametrize("status", list(REFUSALS))
async def test_a_request_both_llms_refuse_fails_each_utterance_at_once_and_the_channel_goes_on(
    run: ChannelRun, status: int, caplog: pytest.LogCaptureFixture
):
    for fake in (run.fakes.cerebras, run.fakes.groq):
        REFUSALS[status](fake)
    texts = [f"Point number {i} is on the list." for i in range(5)]  # more than MAX_IN_FLIGHT (3)
    with caplog.at_level(logging.INFO):
        for text in texts:
            run.say(text)
        await run.finish(within_s=10)  # retried, the three slots would be held for good

    assert [r.outcome for r in run.tracker.completed] == ["failed"] * 5
    assert run.translated() == [] and not run.fakes.cartesia.contexts
    assert ("llm", True) in run.faults  # shown in interpreter.faults
    assert run.channel.brain.translator.refused == 5
    refused = [r for r in caplog.records if r.name == "agent.translate" and "refused" in r.getMessage()]
    assert [r.getMessage() for r in refused] == [
        f"the LLM refused the request (cerebras {status}, groq {status}): this utterance is not translated"
    ] * 5
    assert {r.levelno for r in refused} == {logging.ERROR}
    assert not [r for r in caplog.records if "trying again" in r.getMessage()]  # never retried as an outage
    # one request each per utterance, and the adapter's recovery probes: nothing retried in a loop
    for fake in (run.fakes.cerebras, run.fakes.groq):
        assert {r.status for r in fake.requests} == {status}
        assert len(fake.requests) <= 2 * len(texts)


async def test_cerebras_refusing_groq_serves_and_nothing_fails(run: ChannelRun):
    _refuse_with_a_bad_key(run.fakes.cerebras)
    run.say(SOURCES[0])
    run.say(SOURCES[1])
    await run.finish()

    assert run.translated() == list(TRANSLATIONS.values())
    assert run.tracker.spoken == 2 and run.tracker.failed == 0
    assert run.fakes.cerebras.requests[0].status == 401
    assert ("llm", True) not in run.faults and run.channel.brain.translator.refused == 0


async def test_one_llm_refusing_while_the_other_is_down_is_an_outage_waited_out(run: ChannelRun):
    _refuse_with_a_bad_key(run.fakes.cerebras)
    run.fakes.groq.fail_next(503, n=3)  # down for a moment: this one may come back
    run.say(SOURCES[1])
    await run.finish(within_s=30)

    assert run.translated() == [TRANSLATIONS["budget"]]
    assert run.tracker.spoken == 1 and run.channel.brain.translator.refused == 0
    assert run.faults == [("llm", True), ("llm", False)]


async def test_a_reply_cut_by_the_token_limit_is_continued_and_counted(
    run: ChannelRun, caplog: pytest.LogCaptureFixture
):
    cut = metric("interpreter_llm_truncations_total")
    run.fakes.cerebras.cut_next_after(7)  # "Buenos días a todos, y" (7 pieces), then finish_reason "length"
    with caplog.at_level(logging.INFO):
        run.say(SOURCES[0])
        await run.finish()

    first, second = run.fakes.cerebras.requests
    assert first.finish_reason == "length" and first.reply == "Buenos días a todos, y"
    assert not run.fakes.groq.requests  # a finished reply, not a failure: no fallback
    # continued after the clause it completed, as after a reply that broke off
    assert second.messages[-1]["content"] == RESUME_REQUEST
    assert second.messages[-2] == {"role": "assistant", "content": "Buenos días a todos,"}
    assert run.translated() == [TRANSLATIONS["Good morning"]]
    assert tone_sequence(run.output.audio(), 24000) == [400, 500]
    assert run.output.seconds == pytest.approx(run.expected_seconds(CLAUSES[:2]), abs=0.03)
    assert run.tracker.spoken == 1
    assert metric("interpreter_llm_truncations_total") == cut + 1
    assert run.channel.brain.translator.truncated == 1
    assert [r.getMessage() for r in caplog.records if "token limit" in r.getMessage()] == [
        "an LLM reply was cut by its token limit; continuing it"
    ]


async def test_a_groq_reply_cut_by_its_max_completion_tokens_is_continued(run: ChannelRun):
    """The openai plugin drops `finish_reason`; a cut by the limit we asked for shows in the usage."""
    run.fakes.cerebras.fail_next(500)
    run.fakes.groq.cut_next_after(7)
    run.say(SOURCES[0])
    await run.finish()

    first = run.fakes.groq.requests[0]
    assert first.finish_reason == "length" and isinstance(first.body.get("max_completion_tokens"), int)
    assert run.translated() == [TRANSLATIONS["Good morning"]]
    assert tone_sequence(run.output.audio(), 24000) == [400, 500]
    assert run.channel.brain.translator.truncated == 1


async def test_groq_reporting_an_error_mid_stream_is_continued_by_cerebras(run: ChannelRun):
    run.fakes.cerebras.fail_next(500)
    run.fakes.groq.error_next_after(9)
    resumes = metric("interpreter_llm_resumes_total")
    run.say(SOURCES[0])
    await run.finish()

    assert run.fakes.groq.requests[0].fault == "error"
    assert metric("interpreter_llm_resumes_total") == resumes + 1
    assert tone_sequence(run.output.audio(), 24000) == [400, 500]
    assert run.translated() == [TRANSLATIONS["Good morning"]]
    assert run.tracker.spoken == 1 and ("llm", True) not in run.faults


async def test_refused_requests_are_counted_by_provider_and_status(run: ChannelRun):
    before = metric("interpreter_llm_refusals_total", llm="cerebras", status="401")
    groq_before = metric("interpreter_llm_refusals_total", llm="groq", status="401")
    _refuse_with_a_bad_key(run.fakes.cerebras)
    run.say(SOURCES[1])
    await run.finish()

    refused = len([r for r in run.fakes.cerebras.requests if r.status == 401])
    assert refused >= 1 and run.tracker.spoken == 1
    assert metric("interpreter_llm_refusals_total", llm="cerebras", status="401") == before + refused
    assert metric("interpreter_llm_refusals_total", llm="groq", status="401") == groq_before


async def test_the_llm_fake_refuses_as_the_apis_do_in_their_error_shapes():
    async with FakeLLM() as fake, aiohttp.ClientSession() as http:
        fake.api_key = "right-key"
        good = {"model": "gpt-oss-120b", "messages": [{"role": "user", "content": "Hi"}]}
        cases = [  # (path, body, key, status, code)
            ("/v1/chat/completions", b"{not json", "right-key", 400, None),
            ("/openai/v1/chat/completions", json.dumps({"messages": []}).encode(), "right-key", 400, None),
            ("/v1/chat/completions", json.dumps(good).encode(), "wrong-key", 401, "invalid_api_key"),
            ("/openai/v1/chat/completions", json.dumps(good).encode(), "wrong-key", 401, "invalid_api_key"),
        ]
        for path, body, key, status, code in cases:
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            async with http.post(fake.root_url + path, data=body, headers=headers) as response:
                assert response.status == status
                answer = await response.json()
            # Cerebras: the fields at the top level; OpenAI-compatible (Groq): under "error"
            error = answer if path.startswith("/v1/") else answer["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["type"] == "invalid_request_error" and error["code"] == code
        assert [r.status for r in fake.requests] == [400, 400, 401, 401]
