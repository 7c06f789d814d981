"""The fake Deepgram Flux (`/v2/listen`, tests/fakes/flux.py), driven by the real `deepgram.STTv2` plugin."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
from livekit import rtc
from livekit.agents import NOT_GIVEN, APIConnectOptions, APIStatusError, NotGivenOr, stt
from livekit.plugins import deepgram

from tests.fakes import Delay, FakeDeepgram, FluxTiming, numbered_words

SR = 16000
NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.1, timeout=2.0)
# no jitter: the end of turn 0.26 s after the speech, the eager one 0.2 s sooner (0.06 s after the speech)
STEADY = FluxTiming(eot_delay=Delay(0.26), eager_lead=Delay(0.2))
Kind = stt.SpeechEventType


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def speech(*parts: tuple[str, float]) -> np.ndarray:
    """Concatenated ("tone" | "silence", seconds) parts; the tone is 300 Hz at 0.3 full scale."""
    chunks = []
    for kind, seconds in parts:
        t = np.arange(round(seconds * SR)) / SR
        chunks.append(0.3 * np.sin(2 * np.pi * 300 * t) if kind == "tone" else np.zeros_like(t))
    return (np.concatenate(chunks) * 32767).astype(np.int16)


def flux(
    fake: FakeDeepgram,
    session: aiohttp.ClientSession,
    *,
    model: str = "flux-general-en",
    eager_eot_threshold: NotGivenOr[float] = NOT_GIVEN,
    eot_threshold: NotGivenOr[float] = NOT_GIVEN,
    eot_timeout_ms: NotGivenOr[int] = NOT_GIVEN,
) -> deepgram.STTv2:
    return deepgram.STTv2(
        base_url=fake.flux_url,
        api_key="k",
        model=model,
        sample_rate=SR,
        http_session=session,
        eager_eot_threshold=eager_eot_threshold,
        eot_threshold=eot_threshold,
        eot_timeout_ms=eot_timeout_ms,
    )


async def recognize(
    fake: FakeDeepgram, engine: stt.STT, pcm: np.ndarray, conn_options: APIConnectOptions = NO_RETRY
) -> list[stt.SpeechEvent]:
    """Push 20 ms frames (faster than real time: the fake's clock is the audio), end the input, and collect
    every event until the fake closed the connection after CloseStream."""
    stream = engine.stream(conn_options=conn_options)
    events: list[stt.SpeechEvent] = []

    async def collect() -> None:
        async for event in stream:
            if event.type != Kind.RECOGNITION_USAGE:
                events.append(event)

    collector = asyncio.create_task(collect())
    closed = asyncio.create_task(fake.wait_close_stream_handled())
    try:
        for a, b in itertools.pairwise([*range(0, len(pcm), SR // 50), len(pcm)]):
            stream.push_frame(rtc.AudioFrame(pcm[a:b].tobytes(), SR, 1, b - a))
            await asyncio.sleep(0.004)
        stream.end_input()
        await asyncio.wait({collector, closed}, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
        await stream.aclose()
        await collector
    return events


def texts(events: list[stt.SpeechEvent], kind: stt.SpeechEventType) -> list[str]:
    return [e.alternatives[0].text for e in events if e.type == kind]


async def test_flux_turn_starts_updates_and_ends_with_the_scripted_transcript(
    http_session: aiohttp.ClientSession,
) -> None:
    pcm = speech(("tone", 1.0), ("silence", 0.6), ("tone", 0.6), ("silence", 0.6))
    async with FakeDeepgram(["Hello there, my friend.", "Bye."], flux_timing=STEADY) as fake:
        events = await recognize(fake, flux(fake, http_session), pcm)

    kinds = [e.type for e in events]
    assert kinds[0] == Kind.START_OF_SPEECH and kinds[-1] == Kind.END_OF_SPEECH
    assert texts(events, Kind.FINAL_TRANSCRIPT) == ["Hello there, my friend.", "Bye."]
    assert kinds.count(Kind.START_OF_SPEECH) == kinds.count(Kind.END_OF_SPEECH) == 2
    assert Kind.PREFLIGHT_TRANSCRIPT not in kinds  # eager is off
    interims = texts(events, Kind.INTERIM_TRANSCRIPT)
    assert interims[:4] == ["Hello", "Hello there,", "Hello there, my", "Hello there, my friend."]
    first, second = fake.flux_turns
    assert first.kinds[0] == "StartOfTurn" and first.kinds[-1] == "EndOfTurn" and first.trigger == "model"
    assert first.end == pytest.approx(1.0, abs=0.01)
    assert first.at("EndOfTurn") == pytest.approx(1.26, abs=0.011)  # 0.26 s of audio after the speech
    assert (second.turn_index, second.start) == (1, pytest.approx(1.6, abs=0.01))
    assert fake.flux_end_of_turn_sent == 2 and fake.flux_eager_sent == 0
    (connection,) = fake.connections
    assert connection.query["model"] == "flux-general-en" and connection.close_stream_handled


async def test_flux_eager_end_of_turn_comes_first_with_the_same_transcript(
    http_session: aiohttp.ClientSession,
) -> None:
    pcm = speech(("tone", 0.8), ("silence", 0.6))
    async with FakeDeepgram(["Good morning."], flux_timing=STEADY) as fake:
        engine = flux(fake, http_session, eager_eot_threshold=0.4, eot_threshold=0.8)
        events = await recognize(fake, engine, pcm)

    kinds = [e.type for e in events]
    assert kinds.index(Kind.PREFLIGHT_TRANSCRIPT) < kinds.index(Kind.FINAL_TRANSCRIPT)
    assert texts(events, Kind.PREFLIGHT_TRANSCRIPT) == ["Good morning."]
    assert texts(events, Kind.FINAL_TRANSCRIPT) == ["Good morning."]
    (turn,) = fake.flux_turns
    assert turn.kinds[-2:] == ["EagerEndOfTurn", "EndOfTurn"]
    eager_at, end_at = turn.at("EagerEndOfTurn"), turn.at("EndOfTurn")
    assert eager_at is not None and end_at is not None
    assert end_at - eager_at == pytest.approx(0.2, abs=0.011)
    assert fake.connections[0].query["eager_eot_threshold"] == "0.4"


async def test_flux_pause_shorter_than_the_end_of_turn_delay_keeps_the_turn(
    http_session: aiohttp.ClientSession,
) -> None:
    pcm = speech(("tone", 0.5), ("silence", 0.15), ("tone", 0.5), ("silence", 0.6))
    async with FakeDeepgram(["one two three four"], flux_timing=STEADY) as fake:
        events = await recognize(fake, flux(fake, http_session), pcm)

    assert texts(events, Kind.FINAL_TRANSCRIPT) == ["one two three four"]
    assert [e.type for e in events].count(Kind.END_OF_SPEECH) == 1
    (turn,) = fake.flux_turns
    assert "TurnResumed" not in turn.kinds and turn.end == pytest.approx(1.15, abs=0.01)

    # an eot_timeout_ms shorter than the model's delay ends the turn sooner (trigger "timeout"): the pause
    # of 0.15 s now ends it
    async with FakeDeepgram(["one two", "three four"], flux_timing=STEADY) as fake:
        events = await recognize(fake, flux(fake, http_session, eot_timeout_ms=100), pcm)
    assert texts(events, Kind.FINAL_TRANSCRIPT) == ["one two", "three four"]
    first, _ = fake.flux_turns
    assert first.trigger == "timeout" and first.at("EndOfTurn") == pytest.approx(0.6, abs=0.011)


async def test_flux_speech_resumed_after_an_eager_end_of_turn_is_one_turn(
    http_session: aiohttp.ClientSession,
) -> None:
    """A pause long enough for the eager end of turn (0.06 s) but not the end of turn (0.26 s)."""
    pcm = speech(("tone", 0.6), ("silence", 0.15), ("tone", 0.8), ("silence", 0.6))
    async with FakeDeepgram(transcript_for=numbered_words(rate_wps=5), flux_timing=STEADY) as fake:
        events = await recognize(fake, flux(fake, http_session, eager_eot_threshold=0.5), pcm)

    kinds = [e.type for e in events]
    preflight = kinds.index(Kind.PREFLIGHT_TRANSCRIPT)
    assert kinds[preflight + 1] == Kind.INTERIM_TRANSCRIPT  # TurnResumed: the preflight is off
    assert kinds.count(Kind.FINAL_TRANSCRIPT) == kinds.count(Kind.END_OF_SPEECH) == 1
    # 0.6 s of speech at 5 words/s, then the whole turn of 1.55 s (a second eager end of turn first)
    assert texts(events, Kind.PREFLIGHT_TRANSCRIPT) == ["w1 w2 w3.", "w1 w2 w3 w4 w5 w6 w7 w8."]
    assert texts(events, Kind.FINAL_TRANSCRIPT) == ["w1 w2 w3 w4 w5 w6 w7 w8."]
    (turn,) = fake.flux_turns
    assert turn.kinds.count("EagerEndOfTurn") == 2 and turn.kinds.count("TurnResumed") == 1
    assert (fake.flux_eager_sent, fake.flux_resumed_sent, fake.flux_end_of_turn_sent) == (2, 1, 1)

    # a scripted turn: the eager end of turn already carries the whole scripted transcript
    async with FakeDeepgram(["Well, yes."], flux_timing=STEADY) as fake:
        events = await recognize(fake, flux(fake, http_session, eager_eot_threshold=0.5), pcm)
    assert texts(events, Kind.FINAL_TRANSCRIPT) == ["Well, yes."]
    assert set(texts(events, Kind.PREFLIGHT_TRANSCRIPT)) == {"Well, yes."}


@pytest.mark.parametrize(
    ("gap_s", "comma_pause_s", "final", "paused"),
    [
        # the pause starts at 1.0 s: after w2 (ends at 0.8 s at 2.5 words/s)
        (0.1, 0.06, "w1 w2, w3 w4 w5.", ["w1 w2,", "w1 w2, w3 w4 w5,"]),
        (0.03, 0.06, "w1 w2 w3 w4 w5.", ["w1 w2 w3 w4 w5,"]),  # too brief for a comma
        (0.1, None, "w1 w2 w3 w4 w5.", []),  # off by default
    ],
)
async def test_flux_punctuates_a_pause_inside_a_turn_with_a_comma(
    http_session: aiohttp.ClientSession,
    gap_s: float,
    comma_pause_s: float | None,
    final: str,
    paused: list[str],
) -> None:
    pcm = speech(("tone", 1.0), ("silence", gap_s), ("tone", 1.0), ("silence", 0.6))
    # Updates 0.08 s into the pause (at 1.08 s) and 0.06 s after the speech (2.16 s), each before the eager
    # end of turn (0.16 s into a pause)
    timing = FluxTiming(update_every_s=0.27, eot_delay=Delay(0.26), eager_lead=Delay(0.1))
    async with FakeDeepgram(
        transcript_for=numbered_words(2.5), flux_timing=timing, comma_pause_s=comma_pause_s
    ) as fake:
        events = await recognize(fake, flux(fake, http_session, eager_eot_threshold=0.5), pcm)

    assert texts(events, Kind.FINAL_TRANSCRIPT) == [final]
    assert texts(events, Kind.PREFLIGHT_TRANSCRIPT)[-1] == final
    # an Update sent in a pause tells the speech so far, ending with the comma of the pause going on
    (turn,) = fake.flux_turns
    updates = [e.transcript for e in turn.events if e.event == "Update"]
    assert [u for u in updates if u.endswith(",")] == paused


async def test_flux_multi_reports_the_language(http_session: aiohttp.ClientSession) -> None:
    pcm = speech(("tone", 0.5), ("silence", 0.6))
    async with FakeDeepgram(["Hola a todos."], languages={"Hola a todos.": "es"}, flux_timing=STEADY) as fake:
        events = await recognize(fake, flux(fake, http_session, model="flux-general-multi"), pcm)

    (final,) = [e for e in events if e.type == Kind.FINAL_TRANSCRIPT]
    assert final.alternatives[0].text == "Hola a todos." and final.alternatives[0].language == "es"


async def test_flux_refuses_bad_settings_with_400_and_the_plugin_does_not_retry(
    http_session: aiohttp.ClientSession,
) -> None:
    async with FakeDeepgram(["never"]) as fake:
        with pytest.raises(APIStatusError) as refused:
            engine = flux(fake, http_session, eot_threshold=0.4)  # below 0.5
            await recognize(fake, engine, speech(("tone", 0.2)), APIConnectOptions(max_retry=2))
        assert refused.value.status_code == 400 and not refused.value.retryable
        assert fake.refusals == [400] and fake.connections == []

        base = f"{fake.flux_url}?encoding=linear16&sample_rate=16000".replace("http", "ws", 1)
        for query in ("&model=nova-3", "&model=flux-general-en&eager_eot_threshold=0.95&eot_threshold=1.0"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                await http_session.ws_connect(base + query)
            assert handshake.value.status == 400
        async with http_session.ws_connect(base + "&model=flux-general-en") as ws:
            connected = await ws.receive_json()
            await ws.send_json({"type": "Configure", "thresholds": {"eager_eot_threshold": 0.5}})
            configured = await ws.receive_json()
            await ws.send_json({"type": "Configure", "thresholds": {"eot_threshold": 0.2}})
            failed = await ws.receive_json()
            await ws.send_json({"type": "CloseStream"})
    assert connected["type"] == "Connected" and connected["sequence_id"] == 0
    assert configured["type"] == "ConfigureSuccess" and configured["thresholds"]["eager_eot_threshold"] == 0.5
    assert failed["type"] == "ConfigureFailure" and failed["sequence_id"] == 2


async def test_flux_error_message_ends_the_stream_with_an_api_status_error(
    http_session: aiohttp.ClientSession,
) -> None:
    async with FakeDeepgram(["first"], flux_timing=STEADY) as fake:
        fake.flux_error_after_audio_s(0.5)
        with pytest.raises(APIStatusError) as failed:
            await recognize(fake, flux(fake, http_session), speech(("tone", 1.0), ("silence", 0.5)))
    assert failed.value.status_code == 1011
    (connection,) = fake.connections
    assert connection.close_code == 1011 and not connection.close_stream_handled

    async with FakeDeepgram(["first", "second"], flux_timing=STEADY) as fake:  # the v1 faults work on v2
        fake.drop_after_audio_s(1.0)
        pcm = speech(("tone", 0.6), ("silence", 0.8), ("tone", 0.5), ("silence", 0.8))
        events = await recognize(fake, flux(fake, http_session), pcm, APIConnectOptions(max_retry=2))
    assert texts(events, Kind.FINAL_TRANSCRIPT) == ["first", "second"]
    assert [c.dropped for c in fake.connections] == [True, False]
