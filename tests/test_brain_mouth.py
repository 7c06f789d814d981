"""Brain and mouth together: several utterances in flight, audio still in utterance order."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from livekit.agents import tts

from agent.loops.brain.loop import Brain
from agent.loops.brain.prompt import ContextBook
from agent.loops.captions import CaptionLog
from agent.loops.models import Speech, Utterance
from agent.loops.mouth.loop import Mouth
from agent.loops.queues import UtteranceQueue
from agent.providers.build import build_llm, build_tts, close_stream
from agent.telemetry.latency import LatencyTracker, Mark
from tests.buggy_plugins import BuggyOnceTTS
from tests.channel import channel_run
from tests.conftest import Fakes
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.fakes.llm import last_user_text
from tests.harness import spoken_text
from tests.loopback import LoopbackListener, eventually, tone_sequence

SOURCES = ["First point.", "Second point.", "Third point."]
TRANSLATIONS = {"First": "Primer punto.", "Second": "Segundo punto.", "Third": "Tercer punto."}
TONES = {"Primer": 400.0, "Segundo": 600.0, "Tercer": 800.0}


def utterance(i: int, text: str, now: float) -> Utterance:
    return Utterance(
        id=f"bob-{i}", speaker="bob", text=text, language="en",
        audio_start=i, audio_end=i + 0.5, speech_end_at=now, final_at=now,
    )  # fmt: skip


async def test_in_flight_utterances_play_in_order_even_when_a_later_one_is_ready_first():
    # the first translation is slow to start; the next two are ready at once
    slow_first = FakeLLM(
        translations=TRANSLATIONS, ttft_for=lambda m: 0.6 if "First" in last_user_text(m) else 0.0
    )
    cartesia = FakeCartesia(freq_for=lambda t: next((f for w, f in TONES.items() if w in t), 440.0))
    fakes = Fakes(deepgram=FakeDeepgram([]), cerebras=slow_first, groq=FakeLLM(), cartesia=cartesia)
    servers = (fakes.deepgram, slow_first, fakes.groq, cartesia)
    for server in servers:
        await server.start()
    settings = fakes.settings()
    tracker, captions = LatencyTracker(), CaptionLog()
    inbox, outbox = UtteranceQueue(8), asyncio.Queue[Speech | None](maxsize=3)
    listener = LoopbackListener(24000)
    async with aiohttp.ClientSession() as http:
        llm, tts = build_llm(settings), build_tts(settings, "es", http)
        brain = Brain(
            llm=llm, tts=tts, inbox=inbox, outbox=outbox, tracker=tracker, captions=captions,
            contexts=ContextBook("es"), max_in_flight=3,
        )  # fmt: skip
        mouth = Mouth(output=listener.source, inbox=outbox, tracker=tracker, captions=captions)
        for i, text in enumerate(SOURCES):
            inbox.put_nowait(utterance(i, text, tracker.clock()))
        inbox.close()
        try:
            await asyncio.wait_for(asyncio.gather(brain.run(), mouth.run()), 20)
            await listener.aclose()
        finally:
            await llm.aclose()
            await tts.aclose()
            for server in servers:
                await server.aclose()

    # the later utterances were synthesized while the first was still waiting for its LLM...
    first_audio = {r.utterance_id: r.marks[Mark.TTS_FIRST_AUDIO] for r in tracker.completed}
    assert first_audio["bob-1"] < first_audio["bob-0"] and first_audio["bob-2"] < first_audio["bob-0"]
    # ...yet everything played in utterance order, each once
    assert list(mouth.played) == ["bob-0", "bob-1", "bob-2"]
    assert tone_sequence(listener.audio(), 24000) == [400, 600, 800]
    assert [c.text for c in captions.finals(translated=True)] == list(TRANSLATIONS.values())
    assert tracker.spoken == 3 and tracker.open_count == 0


async def test_the_first_clauses_tts_socket_connects_while_the_llm_is_still_thinking():
    fakes = Fakes(
        deepgram=FakeDeepgram([]),
        cerebras=FakeLLM(translations=TRANSLATIONS, ttft_s=0.5),
        groq=FakeLLM(),
        cartesia=FakeCartesia(),
    )
    async with channel_run(fakes) as run:
        assert fakes.cartesia.connections == 0  # a cold pool
        run.say(SOURCES[0])
        await eventually(lambda: fakes.cartesia.connections == 1, what="the early socket")
        assert not run.tracker.completed and not fakes.cartesia.contexts  # the LLM has not answered yet
        await run.finish()
    assert fakes.cartesia.connections == 1  # the first clause was spoken over that socket
    assert [spoken_text(t) for t in fakes.cartesia.contexts.values()] == ["Primer punto."]


async def test_closing_a_tts_stream_that_lost_its_cancellation_cancels_it_again():
    class LostCancel:
        """Like a plugin stream whose task missed a cancel (Python 3.11 `wait_for` while connecting):
        its first `aclose` only returns once the task is cancelled again."""

        def __init__(self) -> None:
            self.calls = 0
            self.cancelled = asyncio.Event()

        async def aclose(self) -> None:
            self.calls += 1
            if self.calls > 1:
                self.cancelled.set()
            await self.cancelled.wait()

    stream = LostCancel()
    await asyncio.wait_for(close_stream(stream, patience_s=0.05), 5)
    assert stream.calls == 2


async def test_a_bug_while_interpreting_is_logged_with_its_traceback_and_the_next_utterance_still_plays(
    caplog: pytest.LogCaptureFixture,
):
    """A TTS plugin with a bug (its first stream raises an error that is not a provider's, its message
    quoting the translation): that utterance fails with the traceback logged, messages withheld; the next
    utterance is interpreted."""
    fakes = Fakes(deepgram=FakeDeepgram([]), cerebras=FakeLLM(translations=TRANSLATIONS), groq=FakeLLM(),
                  cartesia=FakeCartesia())  # fmt: skip
    buggy: list[BuggyOnceTTS] = []

    def with_a_bug(real: tts.TTS) -> tts.TTS:
        buggy.append(BuggyOnceTTS(real, RuntimeError("cannot say 'Primer punto'")))
        return buggy[-1]

    async with channel_run(fakes, wrap_tts=with_a_bug) as run:
        run.say(SOURCES[0])
        run.say(SOURCES[1])
        await run.finish()
    # the failed utterance's translation is still captioned; only the second is spoken
    assert run.translated() == ["Primer punto.", "Segundo punto."]
    assert [r.outcome for r in run.tracker.completed] == ["failed", "spoken"]
    assert buggy[0].streams >= 2  # the second utterance used the real TTS
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "agent.brain"]
    logged = logging.Formatter().format(record)
    assert "Traceback" in logged and "_interpret" in logged and "RuntimeError" in logged
    assert "Primer" not in logged and "punto" not in logged
