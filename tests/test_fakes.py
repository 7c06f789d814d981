"""The fake provider servers, exercised by the real LiveKit plugins and the real Cerebras SDK."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
from collections.abc import AsyncIterator, Sequence

import aiohttp
import numpy as np
import pytest
from cerebras.cloud.sdk import APIStatusError as CerebrasStatusError
from cerebras.cloud.sdk import AsyncCerebras, AsyncStream, InternalServerError
from cerebras.cloud.sdk.types.chat.chat_completion import ChatChunkResponse, ChatCompletionResponse
from livekit import rtc
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    llm,
    stt,
)
from livekit.plugins import cartesia, deepgram
from livekit.plugins import openai as lk_openai

from tests.fakes import Delay, FakeCartesia, FakeDeepgram, FakeLLM, numbered_words
from tests.fakes.deepgram import CLOSE_NO_AUDIO, CLOSE_UNDECODABLE

SR = 16000
FAST_RETRY = APIConnectOptions(max_retry=3, retry_interval=0.1, timeout=2.0)


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# Deepgram


def speech(*parts: tuple[str, float], sr: int = SR) -> np.ndarray:
    """Concatenated ("tone" | "silence", seconds) parts; the tone is 300 Hz at 0.3 full scale."""
    chunks = []
    for kind, seconds in parts:
        t = np.arange(round(seconds * sr)) / sr
        chunks.append(0.3 * np.sin(2 * np.pi * 300 * t) if kind == "tone" else np.zeros_like(t))
    return (np.concatenate(chunks) * 32767).astype(np.int16)


TWO_UTTERANCES = speech(("tone", 0.6), ("silence", 0.8), ("tone", 0.5), ("silence", 0.8))


def frames_20ms(pcm: np.ndarray, sr: int = SR, cuts: Sequence[int] = ()) -> list[rtc.AudioFrame]:
    """20 ms frames; a frame spanning one of the sample indices `cuts` is split there."""
    bounds = sorted({*range(0, len(pcm), sr // 50), *(c for c in cuts if 0 < c < len(pcm)), len(pcm)})
    return [rtc.AudioFrame(pcm[a:b].tobytes(), sr, 1, b - a) for a, b in itertools.pairwise(bounds)]


def make_deepgram(fake: FakeDeepgram, session: aiohttp.ClientSession) -> deepgram.STT:
    return deepgram.STT(
        base_url=fake.base_url,
        api_key="k",
        model="nova-3",
        language="en",
        interim_results=True,
        endpointing_ms=300,
        sample_rate=SR,
        http_session=session,
    )


async def recognize(
    fake: FakeDeepgram,
    engine: stt.STT,
    pcm: np.ndarray,
    *,
    conn_options: APIConnectOptions = FAST_RETRY,
    pace_s: float = 0.004,
    flush_at_s: Sequence[float] = (),
) -> list[stt.SpeechEvent]:
    """Push 20 ms frames (faster than real time), end input, and collect every event until the fake
    closed the connection after CloseStream (the plugin's own stream lingers up to 5 s longer).
    `flush_at_s`: audio times at which to flush the stream (the plugin sends a Finalize)."""
    stream = engine.stream(conn_options=conn_options)
    events: list[stt.SpeechEvent] = []

    async def collect() -> None:
        async for event in stream:
            events.append(event)

    collector = asyncio.create_task(collect())
    closed = asyncio.create_task(fake.wait_close_stream_handled())
    try:
        flushes = sorted(round(t * SR) for t in flush_at_s)
        pushed = 0
        for frame in frames_20ms(pcm, cuts=flushes):
            stream.push_frame(frame)
            pushed += frame.samples_per_channel
            if flushes and pushed == flushes[0]:
                flushes.pop(0)
                stream.flush()
            await asyncio.sleep(pace_s)
        stream.end_input()
        await asyncio.wait({collector, closed}, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
        await stream.aclose()
        await collector
    return events


def of_type(events: list[stt.SpeechEvent], kind: stt.SpeechEventType) -> list[stt.SpeechEvent]:
    return [e for e in events if e.type == kind]


async def test_deepgram_finals_follow_the_script_with_audio_timeline(
    http_session: aiohttp.ClientSession,
) -> None:
    async with FakeDeepgram(["Hola, mundo.", "¿Cómo estás hoy?"]) as fake:
        events = await recognize(fake, make_deepgram(fake, http_session), TWO_UTTERANCES)

    finals = of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)
    assert [f.alternatives[0].text for f in finals] == ["Hola, mundo.", "¿Cómo estás hoy?"]
    first, second = finals[0].alternatives[0], finals[1].alternatives[0]
    assert first.start_time == pytest.approx(0.0, abs=0.1)
    assert first.end_time == pytest.approx(0.6, abs=0.1)
    assert second.start_time == pytest.approx(1.4, abs=0.1)
    assert second.end_time == pytest.approx(1.9, abs=0.1)
    assert first.words is not None
    assert [str(w) for w in first.words] == ["Hola,", "mundo."]
    assert first.words[0].end_time == pytest.approx(0.3, abs=0.05)
    assert len(of_type(events, stt.SpeechEventType.START_OF_SPEECH)) == 2
    assert len(of_type(events, stt.SpeechEventType.END_OF_SPEECH)) == 2
    interims = of_type(events, stt.SpeechEventType.INTERIM_TRANSCRIPT)
    assert [i.alternatives[0].text for i in interims] == ["Hola,", "¿Cómo"]

    (conn,) = fake.connections
    assert conn.authorization == "Token k"
    assert conn.query["sample_rate"] == "16000"
    assert conn.query["endpointing"] == "300"
    assert conn.audio_s == pytest.approx(2.7, abs=0.01)
    assert conn.control_messages[-2:] == ["Finalize", "CloseStream"]
    assert [(f.transcript, f.connection, f.from_finalize) for f in fake.finals] == [
        ("Hola, mundo.", 0, False),
        ("¿Cómo estás hoy?", 0, False),
    ]
    assert fake.finals[1].end == pytest.approx(1.9, abs=0.02)


async def test_deepgram_finalize_flushes_and_exhausted_script_is_ignored(
    http_session: aiohttp.ClientSession,
) -> None:
    # the last tone has no trailing silence: only the Finalize sent by end_input() closes it
    pcm = speech(("tone", 0.4), ("silence", 0.5), ("tone", 0.4), ("silence", 0.5), ("tone", 0.3))
    async with FakeDeepgram(["one", "two"]) as fake:
        events = await recognize(fake, make_deepgram(fake, http_session), pcm)

    finals = of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)
    assert [f.alternatives[0].text for f in finals] == ["one", "two"]
    assert [f.from_finalize for f in fake.finals] == [False, False]
    (ignored,) = fake.ignored_segments
    assert ignored.start == pytest.approx(1.8, abs=0.02)
    assert ignored.end == pytest.approx(2.1, abs=0.02)
    assert fake.remaining_transcripts == []


async def test_deepgram_finalize_sends_a_final_without_speech_final(
    http_session: aiohttp.ClientSession,
) -> None:
    async with FakeDeepgram(["cut short"]) as fake:
        events = await recognize(fake, make_deepgram(fake, http_session), speech(("tone", 0.3)))

    (final,) = of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)
    assert final.alternatives[0].text == "cut short"
    assert final.alternatives[0].end_time == pytest.approx(0.3, abs=0.05)
    assert fake.finals[0].from_finalize
    # Deepgram's forced flush is not an endpoint, so the plugin reports no END_OF_SPEECH
    assert of_type(events, stt.SpeechEventType.END_OF_SPEECH) == []


async def test_deepgram_finalize_delay_holds_the_final_back(http_session: aiohttp.ClientSession) -> None:
    async with FakeDeepgram(["late"], finalize_delay_s=0.3) as fake:
        loop = asyncio.get_running_loop()
        start = loop.time()
        pcm = speech(("tone", 0.2), ("silence", 0.4))
        events = await recognize(fake, make_deepgram(fake, http_session), pcm)
        elapsed = loop.time() - start
    assert [f.alternatives[0].text for f in of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)] == ["late"]
    assert elapsed >= 0.3


async def test_deepgram_plugin_reconnects_after_a_drop(http_session: aiohttp.ClientSession) -> None:
    async with FakeDeepgram(["first", "second"]) as fake:
        fake.drop_after_audio_s(1.0)
        events = await recognize(fake, make_deepgram(fake, http_session), TWO_UTTERANCES)

    finals = of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)
    assert [f.alternatives[0].text for f in finals] == ["first", "second"]
    assert len(fake.connections) == 2
    assert fake.connections[0].dropped
    assert fake.connections[0].audio_s == pytest.approx(1.0, abs=0.06)
    assert [f.connection for f in fake.finals] == [0, 1]
    # the new connection's timeline restarted at 0: the second tone began 1.4 s into the audio
    assert fake.finals[1].start < 1.0


async def test_deepgram_plugin_retries_refused_handshakes(http_session: aiohttp.ClientSession) -> None:
    async with FakeDeepgram(["after refusal"]) as fake:
        fake.refuse_next(1)
        events = await recognize(
            fake, make_deepgram(fake, http_session), speech(("tone", 0.5), ("silence", 0.5))
        )
    assert fake.refused == 1
    assert len(fake.connections) == 1
    finals = of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)
    assert [f.alternatives[0].text for f in finals] == ["after refusal"]


async def test_deepgram_plugin_gives_up_when_every_handshake_is_refused(
    http_session: aiohttp.ClientSession,
) -> None:
    async with FakeDeepgram(["never"]) as fake:
        fake.refuse_next(5, status=503)
        with pytest.raises(APIConnectionError):
            await recognize(
                fake,
                make_deepgram(fake, http_session),
                speech(("tone", 0.2)),
                conn_options=APIConnectOptions(max_retry=1, retry_interval=0.05),
            )
    assert fake.refused == 2
    assert fake.connections == []


def ws_url(fake: FakeDeepgram, **query: str) -> str:
    """The fake's websocket URL with what the plugin always sends (`query` overrides it; "" leaves it out)."""
    params = {"model": "nova-3", "language": "en", "encoding": "linear16", "sample_rate": "16000", **query}
    listed = "&".join(f"{k}={v}" for k, v in params.items() if v)
    return f"{fake.base_url}?{listed}".replace("http", "ws", 1)


async def test_deepgram_refuses_a_handshake_missing_what_it_needs_to_hear(
    http_session: aiohttp.ClientSession,
) -> None:
    async with FakeDeepgram(["never"]) as fake:
        for name in ("model", "language", "encoding", "sample_rate"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http_session.ws_connect(ws_url(fake, **{name: ""}))
            assert refused.value.status == 400
            headers = refused.value.headers
            assert headers is not None and name in headers.get("dg-error", "")
        async with http_session.get(ws_url(fake, language="").replace("ws", "http", 1)) as response:
            body = await response.json()
        assert response.status == 400 and body["err_code"] == "Bad Request" and body["request_id"]
        async with http_session.ws_connect(ws_url(fake)) as ws:  # all four there: let in
            await ws.send_json({"type": "CloseStream"})
    assert fake.refusals == [400] * 5 and len(fake.connections) == 1


async def test_deepgram_refuses_another_key_as_deepgram_does_and_the_plugin_does_not_retry(
    http_session: aiohttp.ClientSession,
) -> None:
    async with FakeDeepgram(["never"], api_key="the-right-key") as fake:
        with pytest.raises(APIStatusError) as refused:
            await recognize(fake, make_deepgram(fake, http_session), speech(("tone", 0.2)))
    assert refused.value.status_code == 401 and not refused.value.retryable
    assert fake.refusals == [401]  # FAST_RETRY allows 3 retries: a refusal is not retried
    assert fake.connections == []


async def test_deepgram_closes_with_an_error_code_and_the_plugin_reports_it(
    http_session: aiohttp.ClientSession,
) -> None:
    async with FakeDeepgram(["first", "second"]) as fake:
        fake.close_after_audio_s(1.0, CLOSE_NO_AUDIO)
        with pytest.raises(APIStatusError) as closed:
            await recognize(
                fake,
                make_deepgram(fake, http_session),
                TWO_UTTERANCES,
                conn_options=APIConnectOptions(max_retry=0),
            )
    assert closed.value.status_code == 1011 and closed.value.retryable  # a close code, not an HTTP status
    assert CLOSE_NO_AUDIO[1] in str(closed.value.body)  # the reason Deepgram gave reaches the plugin
    (connection,) = fake.connections
    assert connection.close_code == 1011 and not connection.dropped

    async with FakeDeepgram(["first", "second"]) as fake:
        fake.close_after_audio_s(1.0, CLOSE_UNDECODABLE)
        events = await recognize(fake, make_deepgram(fake, http_session), TWO_UTTERANCES)
    finals = of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)
    assert [f.alternatives[0].text for f in finals] == ["first", "second"]  # the plugin reconnected
    assert [c.close_code for c in fake.connections] == [1008, None]


async def test_deepgram_sends_an_endpoint_only_result_after_a_finalize(
    http_session: aiohttp.ClientSession,
) -> None:
    """Speech finalized by a Finalize, then silence: Deepgram's endpoint comes as a Results with an empty
    transcript and speech_final true; the plugin reports the end of speech and no transcript."""
    pcm = speech(("tone", 0.6), ("silence", 0.6))
    async with FakeDeepgram(["cut"]) as fake:
        events = await recognize(fake, make_deepgram(fake, http_session), pcm, flush_at_s=[0.6])

    assert [e.type for e in events if e.type != stt.SpeechEventType.RECOGNITION_USAGE] == [
        stt.SpeechEventType.START_OF_SPEECH,
        stt.SpeechEventType.INTERIM_TRANSCRIPT,
        stt.SpeechEventType.FINAL_TRANSCRIPT,
        stt.SpeechEventType.END_OF_SPEECH,
    ]
    assert fake.endpoints_only_sent == 1
    assert [(f.transcript, f.from_finalize) for f in fake.finals] == [("cut", True)]


async def test_deepgram_revises_interims_and_can_hear_nothing_in_the_end(
    http_session: aiohttp.ClientSession,
) -> None:
    pcm = speech(("tone", 1.1), ("silence", 0.8), ("tone", 0.6), ("silence", 0.8))
    revisions = {"Good morning.": ["Good mourning", "Good morning"], "": ["the"]}
    async with FakeDeepgram(["Good morning.", ""], interims=revisions) as fake:
        events = await recognize(fake, make_deepgram(fake, http_session), pcm)

    interims = [e.alternatives[0].text for e in of_type(events, stt.SpeechEventType.INTERIM_TRANSCRIPT)]
    assert interims == ["Good mourning", "Good morning", "the"]  # the first is not a prefix of the final
    finals = [e.alternatives[0].text for e in of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)]
    assert finals == ["Good morning."]  # the noise taken for "the" was, in the end, nothing
    assert [f.transcript for f in fake.finals] == ["Good morning.", ""]
    assert len(of_type(events, stt.SpeechEventType.END_OF_SPEECH)) == 2


# LLM (Groq through the livekit openai plugin, Cerebras through its SDK)


def chat_context(text: str) -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="system", content="Translate from English to Spanish.")
    ctx.add_message(role="user", content=text)
    return ctx


async def collect_reply(model: llm.LLM, text: str, conn_options: APIConnectOptions = FAST_RETRY) -> str:
    reply = ""
    async with model.chat(chat_ctx=chat_context(text), conn_options=conn_options) as stream:
        async for chunk in stream:
            if chunk.delta and chunk.delta.content:
                reply += chunk.delta.content
    return reply


def groq(fake: FakeLLM) -> lk_openai.LLM:
    return lk_openai.LLM(model="openai/gpt-oss-120b", api_key="k", base_url=fake.openai_base_url)


async def test_openai_plugin_streams_the_scripted_reply() -> None:
    async with FakeLLM(translations={"Good morning": "Buenos días, amigos."}) as fake:
        model = groq(fake)
        try:
            assert await collect_reply(model, "Good morning, friends.") == "Buenos días, amigos."
            assert await collect_reply(model, "Unscripted") == "[translated] Unscripted"
        finally:
            await model.aclose()

    first = fake.requests[0]
    assert first.path == "/openai/v1/chat/completions"
    assert first.model == "openai/gpt-oss-120b"
    assert first.stream
    assert first.authorization == "Bearer k"
    assert [m["role"] for m in first.messages] == ["system", "user"]
    assert first.messages[-1]["content"] == "Good morning, friends."


async def test_cerebras_sdk_streams_full_chunks_with_reasoning() -> None:
    async with FakeLLM(
        translations={"Hello": "Hola"}, reasoning="Short greeting.", tokens_per_s=2000
    ) as fake:
        client = AsyncCerebras(api_key="k", base_url=fake.base_url, warm_tcp_connection=False, max_retries=0)
        content, reasoning, usage_chunks = "", "", 0
        try:
            stream = await client.chat.completions.create(
                model="gpt-oss-120b",
                messages=[{"role": "user", "content": "Hello there"}],
                stream=True,
                reasoning_effort="low",
            )
            assert isinstance(stream, AsyncStream)
            async for chunk in stream:
                assert isinstance(chunk, ChatChunkResponse)
                usage_chunks += chunk.usage is not None
                for choice in chunk.choices or []:
                    if choice.delta is not None:
                        content += choice.delta.content or ""
                        reasoning += choice.delta.reasoning or ""
        finally:
            await client.close()

    assert content == "Hola"
    assert reasoning == "Short greeting."
    assert usage_chunks == 1
    (request,) = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.reasoning_effort == "low"
    assert request.authorization == "Bearer k"


async def test_cerebras_sdk_non_streaming_and_failure() -> None:
    async with FakeLLM(translations={"Hello": "Hola"}) as fake:
        client = AsyncCerebras(api_key="k", base_url=fake.base_url, warm_tcp_connection=False, max_retries=0)
        try:
            response = await client.chat.completions.create(
                model="gpt-oss-120b", messages=[{"role": "user", "content": "Hello"}], stream=False
            )
            assert isinstance(response, ChatCompletionResponse)
            assert response.choices[0].message.content == "Hola"

            fake.fail_next(500)
            with pytest.raises(InternalServerError):
                await client.chat.completions.create(
                    model="gpt-oss-120b", messages=[{"role": "user", "content": "Hello"}], stream=True
                )
        finally:
            await client.close()
    assert [(r.stream, r.fault) for r in fake.requests] == [(False, None), (True, "fail")]


async def test_openai_plugin_retries_a_failed_request_then_gives_up() -> None:
    async with FakeLLM(translations={"Hi": "Hola"}) as fake:
        model = groq(fake)
        try:
            fake.fail_next(503)
            assert await collect_reply(model, "Hi") == "Hola"
            fake.fail_next(503, n=2)
            with pytest.raises(APIConnectionError) as failure:
                await collect_reply(model, "Hi", APIConnectOptions(max_retry=1, retry_interval=0.05))
        finally:
            await model.aclose()
    assert isinstance(failure.value.__cause__, APIStatusError)
    assert failure.value.__cause__.status_code == 503
    assert [r.fault for r in fake.requests] == ["fail", None, "fail", "fail"]


@pytest.mark.parametrize("send_headers", [False, True])
async def test_openai_plugin_times_out_on_a_hung_request(send_headers: bool) -> None:
    async with FakeLLM() as fake:
        model = groq(fake)
        try:
            fake.hang_next(send_headers=send_headers)
            with pytest.raises(APITimeoutError):
                await collect_reply(model, "Hi", APIConnectOptions(max_retry=0, timeout=0.3))
        finally:
            await model.aclose()
    assert fake.requests[0].fault == "hang"


async def test_llm_fake_paces_first_token_and_rate() -> None:
    async with FakeLLM(translations={"Hi": "Hola, ¿qué tal?"}, ttft_s=0.15, tokens_per_s=50) as fake:
        client = AsyncCerebras(api_key="k", base_url=fake.base_url, warm_tcp_connection=False, max_retries=0)
        arrivals: list[float] = []
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            stream = await client.chat.completions.create(
                model="gpt-oss-120b", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            assert isinstance(stream, AsyncStream)
            async for chunk in stream:
                if isinstance(chunk, ChatChunkResponse) and any(
                    c.delta and c.delta.content for c in chunk.choices or []
                ):
                    arrivals.append(loop.time() - start)
        finally:
            await client.close()
    assert len(arrivals) == 4  # "Hola", ",", " ¿qué", " tal?"
    assert arrivals[0] == pytest.approx(0.15, abs=0.08)
    assert arrivals[-1] - arrivals[0] == pytest.approx(3 / 50, abs=0.04)


async def test_openai_plugin_sees_a_dropped_stream_after_partial_content() -> None:
    async with FakeLLM(translations={"Hi": "Hola a todos"}) as fake:
        model = groq(fake)
        reply = ""
        try:
            fake.drop_next_after(2)
            with pytest.raises(APIConnectionError):
                async with model.chat(chat_ctx=chat_context("Hi"), conn_options=FAST_RETRY) as stream:
                    async for chunk in stream:
                        if chunk.delta and chunk.delta.content:
                            reply += chunk.delta.content
        finally:
            await model.aclose()
    assert reply == "Hola a"  # two chunks, and no retry once content was emitted
    assert len(fake.requests) == 1


async def test_llm_fake_answers_models_and_tcp_warming(http_session: aiohttp.ClientSession) -> None:
    async with FakeLLM() as fake:
        async with http_session.get(f"{fake.openai_base_url}/models") as resp:
            assert resp.status == 200
            assert (await resp.json())["object"] == "list"
        async with http_session.get(f"{fake.base_url}/v1/tcp_warming") as resp:
            assert resp.status == 200
    assert fake.requests == []


# Cartesia


def dominant_hz(frames: list[rtc.AudioFrame]) -> float:
    pcm = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.argmax(spectrum) * frames[0].sample_rate / len(pcm))


def seconds(frames: list[rtc.AudioFrame]) -> float:
    return sum(f.samples_per_channel for f in frames) / 24000


def make_cartesia(fake: FakeCartesia, session: aiohttp.ClientSession) -> cartesia.TTS:
    return cartesia.TTS(api_key="k", base_url=fake.base_url, sample_rate=24000, http_session=session)


async def speak(
    engine: cartesia.TTS, text: str, conn_options: APIConnectOptions = FAST_RETRY
) -> list[rtc.AudioFrame]:
    stream = engine.stream(conn_options=conn_options)
    try:
        stream.push_text(text)
        stream.end_input()
        return [event.frame async for event in stream]
    finally:
        await stream.aclose()


async def test_cartesia_stream_speaks_a_tone_per_transcript(http_session: aiohttp.ClientSession) -> None:
    async with FakeCartesia(freq_for=lambda text: 330.0 if "Hola" in text else 550.0) as fake:
        engine = make_cartesia(fake, http_session)
        try:
            frames = await speak(engine, "Hola mundo. ")
        finally:
            await engine.aclose()

    assert seconds(frames) == pytest.approx(fake.duration_for("Hola mundo."), abs=0.03)
    assert dominant_hz(frames) == pytest.approx(330.0, abs=5)
    (context_id,) = fake.context_order
    assert fake.contexts[context_id] == ["Hola mundo. ", " "]
    assert fake.audio_s[context_id] == pytest.approx(0.55, abs=0.01)
    assert fake.connections == 1
    assert fake.api_keys == ["k"]
    assert fake.cartesia_versions[0]


async def test_cartesia_paces_audio_and_interleaves_contexts(http_session: aiohttp.ClientSession) -> None:
    async with FakeCartesia(
        ttfb_s=0.1, rtf=1.0, freq_for=lambda text: 300.0 if "uno" in text else 600.0
    ) as fake:
        engine = make_cartesia(fake, http_session)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            first, second = await asyncio.gather(speak(engine, "uno dos. "), speak(engine, "tres. "))
            elapsed = loop.time() - start
        finally:
            await engine.aclose()

    assert dominant_hz(first) == pytest.approx(300.0, abs=5)
    assert dominant_hz(second) == pytest.approx(600.0, abs=5)
    assert seconds(first) == pytest.approx(0.4, abs=0.03)
    # both contexts were served at once (the pool opened a socket per stream), each at real time
    assert fake.connections == 2
    assert elapsed >= 0.45  # paced at real time after the first-audio delay (a lower bound only)
    assert sorted(fake.contexts.values()) == [["tres. ", " "], ["uno dos. ", " "]]


async def test_cartesia_synthesize_uses_tts_bytes(http_session: aiohttp.ClientSession) -> None:
    async with FakeCartesia(seconds_per_char=0.02) as fake:
        engine = make_cartesia(fake, http_session)
        try:
            frames = [event.frame async for event in engine.synthesize("Buenos días.")]
        finally:
            await engine.aclose()

    assert seconds(frames) == pytest.approx(0.24, abs=0.03)
    assert dominant_hz(frames) == pytest.approx(440.0, abs=5)
    (body,) = fake.bytes_requests
    assert body["transcript"] == "Buenos días."
    assert body["output_format"]["sample_rate"] == 24000
    assert fake.context_order == []


async def test_cartesia_plugin_retries_a_context_dropped_before_audio(
    http_session: aiohttp.ClientSession,
) -> None:
    async with FakeCartesia() as fake:
        engine = make_cartesia(fake, http_session)
        try:
            fake.drop_next_context_after(0)
            frames = await speak(engine, "Hola. ")
        finally:
            await engine.aclose()

    assert seconds(frames) == pytest.approx(0.25, abs=0.03)
    assert fake.connections == 2
    assert len(fake.context_order) == 2
    assert fake.dropped_contexts == fake.context_order[:1]


async def test_cartesia_error_context_yields_no_audio(http_session: aiohttp.ClientSession) -> None:
    async with FakeCartesia() as fake:
        engine = make_cartesia(fake, http_session)
        try:
            fake.error_next()
            with pytest.raises(APIError):
                await speak(engine, "Hola. ", APIConnectOptions(max_retry=0))
        finally:
            await engine.aclose()
    assert fake.errored_contexts == fake.context_order
    assert sum(fake.audio_s.values()) == 0.0


async def test_cartesia_interleaves_contexts_on_one_socket(http_session: aiohttp.ClientSession) -> None:
    def message(context_id: str, transcript: str, more: bool) -> dict[str, object]:
        return {
            "context_id": context_id,
            "transcript": transcript,
            "continue": more,
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
        }

    async with FakeCartesia(rtf=0.5) as fake:
        url = f"{fake.base_url}/tts/websocket?cartesia_version=2025-04-16"
        async with http_session.ws_connect(url, headers={"X-API-Key": "k"}) as ws:
            for msg in (message("a", "uno dos tres. ", True), message("b", "cuatro. ", False)):
                await ws.send_json(msg)
            await ws.send_json(message("a", " ", False))
            received: list[tuple[str, str]] = []
            while len([r for r in received if r[1] == "done"]) < 2:
                data = await ws.receive_json(timeout=2.0)
                received.append((data["context_id"], data["type"]))

    chunk_owners = [context_id for context_id, kind in received if kind == "chunk"]
    assert chunk_owners.index("b") < len(chunk_owners) - 1 - chunk_owners[::-1].index("a")  # interleaved
    assert [r for r in received if r[1] == "done"] == [("b", "done"), ("a", "done")]
    assert fake.contexts == {"a": ["uno dos tres. ", " "], "b": ["cuatro. "]}
    assert fake.context_order == ["a", "b"]
    assert fake.audio_s["a"] == pytest.approx(0.65, abs=0.02)


# Latency model and what a monologue benchmark needs


def test_delay_samples_a_seeded_lognormal_with_the_asked_mean_and_jitter() -> None:
    delay = Delay(0.3, 0.1)
    rng = random.Random(7)
    samples = [delay.sample(rng) for _ in range(20000)]
    assert statistics.fmean(samples) == pytest.approx(0.3, rel=0.02)
    assert statistics.stdev(samples) == pytest.approx(0.1, rel=0.05)
    assert min(samples) > 0
    assert statistics.median(samples) < 0.3  # skewed right, as provider latencies are
    again = random.Random(7)
    assert [delay.sample(again) for _ in range(100)] == samples[:100]
    assert Delay(0.25).sample(rng) == 0.25
    assert Delay().sample(rng) == 0.0
    for bad in ((-0.1, 0.0), (0.1, -0.1), (0.0, 0.1)):
        with pytest.raises(ValueError):
            Delay(*bad)


def test_numbered_words_are_unique_and_sized_by_duration() -> None:
    words = numbered_words(2.0)
    assert words(1.0) == "w1 w2."
    assert words.preview(0.1) == "w3."  # at least one word; a preview uses no numbers up
    assert words(0.1) == "w3."
    assert words(2.6) == "w4 w5 w6 w7 w8."


async def test_deepgram_max_segment_splits_continuous_speech(http_session: aiohttp.ClientSession) -> None:
    transcripts = ["one two three", "four five six", "seven eight"]
    pcm = speech(("tone", 3.0), ("silence", 0.5))
    async with FakeDeepgram(transcripts, max_segment_s=1.2, finalize_delay=Delay(0.05, 0.02), seed=3) as fake:
        events = await recognize(fake, make_deepgram(fake, http_session), pcm, pace_s=0.002)

    finals = [f.alternatives[0] for f in of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)]
    assert [f.text for f in finals] == transcripts
    spans = [(f.start_time, f.end_time) for f in finals]
    assert spans == [pytest.approx(s, abs=0.011) for s in [(0.0, 1.2), (1.2, 2.4), (2.4, 3.0)]]
    first, second = finals[0].words, finals[1].words
    assert first is not None and second is not None
    assert [(w.start_time, w.end_time) for w in first] == [
        pytest.approx(s, abs=0.011) for s in [(0.0, 0.4), (0.4, 0.8), (0.8, 1.2)]
    ]
    assert second[0].start_time == pytest.approx(1.2, abs=0.011)
    # one speech, cut twice: a single start and a single end of speech, at the endpoint
    assert len(of_type(events, stt.SpeechEventType.START_OF_SPEECH)) == 1
    assert len(of_type(events, stt.SpeechEventType.END_OF_SPEECH)) == 1
    assert [f.from_finalize for f in fake.finals] == [False, False, False]
    # the delay each final was held back is the seeded model's sample
    rng = random.Random(3)
    assert [f.delay_s for f in fake.finals] == [Delay(0.05, 0.02).sample(rng) for _ in range(3)]


async def test_deepgram_finalize_mid_speech_splits_at_the_finalize_point(
    http_session: aiohttp.ClientSession,
) -> None:
    pcm = speech(("tone", 1.4), ("silence", 0.5))
    async with FakeDeepgram(
        ["first part"], transcript_for=lambda s: f"second part of {s:.2f} s", finalize_delay=Delay(0.03)
    ) as fake:
        events = await recognize(fake, make_deepgram(fake, http_session), pcm, flush_at_s=[0.74])

    finals = [f.alternatives[0] for f in of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)]
    assert [f.text for f in finals] == ["first part", "second part of 0.66 s"]
    # a transcript_for that cannot preview: the interim carries a placeholder (with the right times)
    interims = [i.alternatives[0] for i in of_type(events, stt.SpeechEventType.INTERIM_TRANSCRIPT)]
    assert [i.text for i in interims] == ["first", "…"]
    assert (interims[1].start_time, interims[1].end_time) == pytest.approx((0.74, 1.24), abs=0.011)
    assert (finals[0].start_time, finals[0].end_time) == pytest.approx((0.0, 0.74), abs=0.011)
    assert (finals[1].start_time, finals[1].end_time) == pytest.approx((0.74, 1.4), abs=0.011)
    assert finals[1].words is not None
    assert finals[1].words[0].start_time == pytest.approx(0.74, abs=0.011)
    assert [(f.from_finalize, f.delay_s) for f in fake.finals] == [(True, 0.03), (False, 0.03)]
    assert len(of_type(events, stt.SpeechEventType.END_OF_SPEECH)) == 1
    sent = [m for m in fake.connections[0].control_messages if m != "KeepAlive"]
    assert sent == ["Finalize", "Finalize", "CloseStream"]  # the cut, then end_input's


async def test_deepgram_finalize_hears_audio_short_of_a_whole_vad_window(
    http_session: aiohttp.ClientSession,
) -> None:
    async with FakeDeepgram(["short"]) as fake:
        url = f"{ws_url(fake)}&endpointing=300"
        async with http_session.ws_connect(url) as ws:
            await ws.send_bytes(speech(("tone", 0.305)).tobytes())  # 30.5 VAD windows
            await ws.send_json({"type": "Finalize"})
            result = await ws.receive_json(timeout=2.0)
            await ws.send_json({"type": "CloseStream"})
    assert (result["is_final"], result["from_finalize"], result["speech_final"]) == (True, True, False)
    assert result["channel"]["alternatives"][0]["words"][-1]["end"] == pytest.approx(0.305, abs=0.001)


async def test_deepgram_transcript_for_makes_transcripts_once_the_script_is_out(
    http_session: aiohttp.ClientSession,
) -> None:
    pcm = speech(("tone", 0.6), ("silence", 0.8), ("tone", 1.2), ("silence", 0.8))
    async with FakeDeepgram(["scripted"], transcript_for=numbered_words(2.5)) as fake:
        events = await recognize(fake, make_deepgram(fake, http_session), pcm)

    finals = of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)
    assert [f.alternatives[0].text for f in finals] == ["scripted", "w1 w2 w3."]
    assert fake.ignored_segments == []
    interims = [i.alternatives[0].text for i in of_type(events, stt.SpeechEventType.INTERIM_TRANSCRIPT)]
    assert interims == ["scripted", "w1.", "w1 w2."]  # previews of the transcript to come
    assert fake.finals[1].start == pytest.approx(1.4, abs=0.011)


@pytest.mark.parametrize(
    ("gap_s", "comma_pause_s", "final"),
    [
        (0.1, 0.06, "w1 w2, w3 w4 w5."),  # the pause starts at 1.0 s: after w2 (ends at 0.8 s at 2.5 words/s)
        (0.03, 0.06, "w1 w2 w3 w4 w5."),  # too brief for a comma
        (0.1, None, "w1 w2 w3 w4 w5."),  # off by default
    ],
)
async def test_deepgram_punctuates_a_pause_inside_a_segment_with_a_comma(
    http_session: aiohttp.ClientSession, gap_s: float, comma_pause_s: float | None, final: str
) -> None:
    pcm = speech(("tone", 1.0), ("silence", gap_s), ("tone", 1.0), ("silence", 0.8))
    async with FakeDeepgram(transcript_for=numbered_words(2.5), comma_pause_s=comma_pause_s) as fake:
        events = await recognize(fake, make_deepgram(fake, http_session), pcm)

    finals = [f.alternatives[0].text for f in of_type(events, stt.SpeechEventType.FINAL_TRANSCRIPT)]
    assert finals == [final]
    interims = [i.alternatives[0].text for i in of_type(events, stt.SpeechEventType.INTERIM_TRANSCRIPT)]
    # an interim after the pause carries its comma too; those before it none
    assert [i.count(",") for i in interims] == [0, 0, *[final.count(",")] * (len(interims) - 2)]


def test_numbered_words_put_one_comma_after_the_word_before_each_pause() -> None:
    words = numbered_words(2.5)  # word k ends at (k + 1) / 2.5 s
    assert words.with_pauses(2.0, [0.1, 0.3], preview=True) == "w1, w2 w3 w4 w5."  # one mark a word
    assert words.with_pauses(2.1, [0.85, 2.05], preview=True) == "w1 w2, w3 w4 w5."  # not on the last
    assert words.with_pauses(1.0, [1.0], preview=True) == "w1 w2,"  # pausing now: a comma, not the period
    assert words.with_pauses(2.0, [0.8]) == "w1 w2, w3 w4 w5."
    assert words(0.8) == "w6 w7."  # numbers used up by the call, not by the previews


async def test_llm_fake_samples_and_records_ttft_and_reply() -> None:
    async with FakeLLM(translations={"Hi": "Hola a todos"}, ttft=Delay(0.05, 0.02), seed=11) as fake:
        model = groq(fake)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            assert await collect_reply(model, "Hi") == "Hola a todos"
            elapsed = loop.time() - start
            assert await collect_reply(model, "Hi again") == "Hola a todos"
            fake.drop_next_after(2)
            with pytest.raises(APIConnectionError):
                await collect_reply(model, "Hi", APIConnectOptions(max_retry=0))
        finally:
            await model.aclose()

    rng = random.Random(11)
    assert [r.ttft_s for r in fake.requests] == [Delay(0.05, 0.02).sample(rng) for _ in range(3)]
    assert elapsed >= fake.requests[0].ttft_s
    assert [r.reply for r in fake.requests] == ["Hola a todos", "Hola a todos", "Hola a"]

    async with FakeLLM(ttft_s=0.01) as fixed:
        model = groq(fixed)
        try:
            assert await collect_reply(model, "Hey") == "[translated] Hey"
        finally:
            await model.aclose()
    assert [(r.ttft_s, r.reply) for r in fixed.requests] == [(0.01, "[translated] Hey")]


async def test_cartesia_honours_speed_and_records_ttfb(http_session: aiohttp.ClientSession) -> None:
    text = "Hola mundo. "
    async with FakeCartesia(ttfb=Delay(0.04, 0.01), seed=5) as fake:
        fast = cartesia.TTS(
            api_key="k", base_url=fake.base_url, model="sonic-3", speed=1.25, http_session=http_session
        )
        plain = make_cartesia(fake, http_session)
        legacy = cartesia.TTS(
            api_key="k",
            base_url=fake.base_url,
            model="sonic-3",
            speed=0.5,
            api_version="2024-11-13",
            http_session=http_session,
        )
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            fast_frames = await speak(fast, text)
            elapsed = loop.time() - start
            plain_frames = await speak(plain, text)
            plain.update_options(speed=2.0)  # streams opened from now on
            updated_frames = await speak(plain, text)
            legacy_frames = await speak(legacy, text)
        finally:
            for engine in (fast, plain, legacy):
                await engine.aclose()

    base = fake.duration_for(text)
    assert seconds(plain_frames) == pytest.approx(base, abs=0.03)
    assert seconds(fast_frames) == pytest.approx(base / 1.25, abs=0.03)
    assert seconds(updated_frames) == pytest.approx(base / 2.0, abs=0.03)
    assert seconds(legacy_frames) == pytest.approx(base / 0.5, abs=0.03)
    fast_id, plain_id, updated_id, legacy_id = fake.context_order
    assert [fake.speed_by_context[c] for c in fake.context_order] == [1.25, 1.0, 2.0, 0.5]
    # sonic-3 on the current API version: generation_config.speed; the 2024-11-13 version: voice controls
    first = {c: next(m for m in fake.messages if m["context_id"] == c) for c in fake.context_order}
    assert first[fast_id]["generation_config"] == {"speed": 1.25}
    assert "__experimental_controls" not in first[fast_id]["voice"]
    assert "generation_config" not in first[plain_id]
    assert first[updated_id]["generation_config"] == {"speed": 2.0}
    assert first[legacy_id]["voice"]["__experimental_controls"] == {"speed": 0.5}
    assert "generation_config" not in first[legacy_id]
    rng = random.Random(5)
    assert [fake.ttfb_by_context[c] for c in fake.context_order] == [
        Delay(0.04, 0.01).sample(rng) for _ in range(4)
    ]
    assert elapsed >= fake.ttfb_by_context[fast_id]


async def test_llm_fake_error_inside_the_stream_is_raised_by_both_sdks() -> None:
    """An error object inside an open stream: both SDKs raise on it, after the content before it."""
    async with FakeLLM(translations={"Hello": "Hola a todos"}) as fake:
        client = AsyncCerebras(api_key="k", base_url=fake.base_url, warm_tcp_connection=False, max_retries=0)
        model = groq(fake)
        try:
            fake.error_next_after(2)
            received: list[str] = []
            with pytest.raises(CerebrasStatusError) as cerebras_error:
                stream = await client.chat.completions.create(
                    model="gpt-oss-120b", messages=[{"role": "user", "content": "Hello"}], stream=True
                )
                assert isinstance(stream, AsyncStream)
                async for chunk in stream:
                    assert isinstance(chunk, ChatChunkResponse)
                    received += [(c.delta.content if c.delta else None) or "" for c in chunk.choices or []]
            assert "".join(received) == "Hola a"
            assert cerebras_error.value.status_code == 200  # the stream's own status

            fake.error_next_after(0)
            with pytest.raises(APIConnectionError):  # before any content: worth another try
                await collect_reply(model, "Hello", APIConnectOptions(max_retry=0))
        finally:
            await client.close()
            await model.aclose()
    assert [(r.fault, r.reply) for r in fake.requests] == [("error", "Hola a"), ("error", "")]


async def test_llm_fake_cuts_a_reply_at_the_requested_max_completion_tokens() -> None:
    async with FakeLLM(translations={"Hello": "Hola a todos y bienvenidos"}) as fake:
        client = AsyncCerebras(api_key="k", base_url=fake.base_url, warm_tcp_connection=False, max_retries=0)
        try:
            stream = await client.chat.completions.create(
                model="gpt-oss-120b",
                messages=[{"role": "user", "content": "Hello"}],
                stream=True,
                max_completion_tokens=3,
                stream_options={"include_usage": True},
            )
            assert isinstance(stream, AsyncStream)
            text, finish, usage = "", None, None
            async for chunk in stream:
                assert isinstance(chunk, ChatChunkResponse)
                for c in chunk.choices or []:
                    text += (c.delta.content if c.delta else None) or ""
                    finish = c.finish_reason or finish
                usage = getattr(chunk, "usage", None) or usage
        finally:
            await client.close()
    assert (text, finish) == ("Hola a todo", "length")  # three pieces of at most 4 characters
    assert usage is not None and usage.completion_tokens == 3  # all the tokens asked for
    assert fake.requests[0].finish_reason == "length"


async def test_cartesia_fake_errors_in_the_documented_shapes(http_session: aiohttp.ClientSession) -> None:
    async with FakeCartesia() as fake:
        url = f"{fake.base_url.replace('http', 'ws')}/tts/websocket?cartesia_version=2026-03-01"
        fake.error_next_context_after(1)
        async with http_session.ws_connect(url, headers={"X-API-Key": "k"}) as ws:
            await ws.send_json({"context_id": "c1", "transcript": "Hola a todos. ", "continue": False})
            chunk, error = await ws.receive_json(), await ws.receive_json()
        assert chunk["type"] == "chunk" and chunk["data"]
        assert error == {
            "type": "error",
            "done": True,
            "status_code": 500,
            "error_code": "internal_error",
            "title": "Internal Server Error",
            "message": "An internal error occurred.",
            "request_id": error["request_id"],
            "context_id": "c1",
        }
        for status in (401, 429):
            fake.refuse_handshakes(status)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http_session.ws_connect(url, headers={"X-API-Key": "k"})
            assert refused.value.status == status
    assert fake.errored_contexts == ["c1"] and fake.refused_handshakes == [401, 429]
