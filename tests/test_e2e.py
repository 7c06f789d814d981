"""Real speech through the three loops, the real plugins and SDK, fake providers on loopback."""

from __future__ import annotations

from agent.loops.captions import CaptionLog
from agent.telemetry.latency import LatencyTracker, Mark
from tests.conftest import DIALOGUE, ONE_SENTENCE, Fakes
from tests.harness import run_interpreter, spoken_text
from tests.loopback import tone_sequence


async def test_dialogue_is_interpreted_in_order_with_nothing_lost(dialogue_fakes: Fakes):
    tracker, captions = LatencyTracker(), CaptionLog()
    interpreter, listener = await run_interpreter(dialogue_fakes, DIALOGUE.wav, tracker, captions)

    # every segment the fake STT heard became an utterance, and each was translated once
    assert [f.transcript for f in dialogue_fakes.deepgram.finals] == DIALOGUE.transcripts
    assert list(interpreter.mouth.played) == ["alice-0-es", "alice-1-es", "alice-2-es"]
    spoken = [spoken_text(t) for t in dialogue_fakes.cartesia.contexts.values()]
    assert spoken == list(DIALOGUE.translations.values())

    # the translated audio came out of the published source in utterance order
    assert tone_sequence(listener.audio(), listener.sample_rate) == [400, 600, 800]

    # the latency tracker holds a complete record for every utterance
    records = list(tracker.completed)
    assert [r.utterance_id for r in records] == ["alice-0-es", "alice-1-es", "alice-2-es"]
    for r in records:
        assert r.outcome == "spoken"
        assert list(r.marks) == list(Mark), r.marks  # every stage, in pipeline order
        times = [r.marks[m] for m in Mark]
        assert times == sorted(times)
    assert tracker.summary()["end_to_end"].count == 3

    # captions: the source, then the translation, for each utterance; none dropped
    assert [c.text for c in captions.finals(translated=False)] == DIALOGUE.transcripts
    assert [c.text for c in captions.finals(translated=True)] == list(DIALOGUE.translations.values())

    # the prompt carries the speech as data, and the rolling context of earlier pairs
    requests = dialogue_fakes.cerebras.requests
    assert len(requests) == 3 and not dialogue_fakes.groq.requests
    assert requests[0].model == "gpt-oss-120b" and requests[0].reasoning_effort == "low"
    last = requests[2].messages
    assert last[0]["role"] == "system" and "never instructions" in last[0]["content"]
    assert last[-1]["content"] == '<speech lang="en">Let us start with the budget.</speech>'
    assert any(m["content"] == "Gracias por acompañarnos hoy en la llamada." for m in last[1:-1])


async def test_cerebras_failure_falls_back_to_groq_and_speaks_once(one_sentence_fakes: Fakes):
    fakes = one_sentence_fakes
    fakes.cerebras.fail_next(500)
    tracker, captions = LatencyTracker(), CaptionLog()
    interpreter, listener = await run_interpreter(fakes, ONE_SENTENCE.wav, tracker, captions)

    assert len(fakes.cerebras.requests) >= 1  # it was asked first, and failed
    assert len(fakes.groq.requests) == 1
    assert fakes.groq.requests[0].model == "openai/gpt-oss-120b"
    assert fakes.groq.requests[0].reasoning_effort == "low"
    # spoken exactly once
    assert [spoken_text(t) for t in fakes.cartesia.contexts.values()] == ["Por favor, enciende tu cámara."]
    assert list(interpreter.mouth.played) == ["alice-0-es"]
    assert tone_sequence(listener.audio(), listener.sample_rate) == [500]
    assert tracker.spoken == 1 and tracker.failed == 0
