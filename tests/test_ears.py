"""The ears keep what was said when the STT link dies: reconnect with backoff, replay, nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from livekit import rtc
from livekit.agents import stt as lk_stt

from agent.loops.captions import Caption, CaptionLog, CaptionSink
from agent.loops.ears.loop import Ears
from agent.loops.ears.transcripts import SENTENCE_PAUSE_S
from agent.loops.models import Utterance
from agent.loops.pipeline import PipelineOptions
from agent.providers.build import build_llm, build_stt, build_tts
from agent.room.session import RoomSession
from agent.run.filemode import Pcm, paced_frames, read_wav
from agent.telemetry.latency import LatencyTracker, Mark
from tests.buggy_plugins import BuggySTT
from tests.conftest import DIALOGUE, ONE_SENTENCE, Fakes
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.fakes.deepgram import CLOSE_NO_RESPONSE, NumberedWords, numbered_words
from tests.fakes.room import FakeRoom
from tests.harness import run_interpreter
from tests.livekit_server import free_port
from tests.loopback import LoopbackSpeaker, eventually, tone_sequence


class Heard(list[Utterance]):
    def put_nowait(self, utterance: Utterance) -> None:
        self.append(utterance)


async def live_track(pcm: Pcm | None = None) -> AsyncIterator[rtc.AudioFrame]:
    """A live track: the speech (if any) in real time, then silence for as long as it is listened to."""
    if pcm is not None:
        async for frame in paced_frames(pcm):
            yield frame
    silence = rtc.AudioFrame(data=bytes(640), sample_rate=16000, num_channels=1, samples_per_channel=320)
    while True:
        await asyncio.sleep(0.02)
        yield silence


@contextlib.asynccontextmanager
async def ears_for(
    fakes: Fakes,
    frames: AsyncIterator[rtc.AudioFrame],
    *,
    captions: CaptionSink | None = None,
    deepgram_url: str | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Ears, Heard]]:
    async with aiohttp.ClientSession() as http:
        overrides = {} if deepgram_url is None else {"DEEPGRAM_BASE_URL": deepgram_url}
        stt = build_stt(fakes.settings(**overrides), "en", http)
        heard = Heard()
        ears = Ears(
            stt=stt, frames=frames, out=heard, tracker=LatencyTracker(), speaker="ann", language="en",
            captions=captions, **options,
        )  # fmt: skip
        try:
            yield ears, heard
        finally:
            await stt.aclose()


async def test_stt_drop_mid_utterance_loses_nothing_and_repeats_nothing(dialogue_fakes: Fakes):
    fakes = dialogue_fakes
    fakes.deepgram.drop_after_audio_s(3.6)  # in the middle of the second sentence (2.96 s - 4.97 s)
    fakes.deepgram.refuse_next(2)  # and the first two reconnects are refused: backoff, then back
    tracker, captions = LatencyTracker(), CaptionLog()
    interpreter, listener = await run_interpreter(fakes, DIALOGUE.wav, tracker, captions, exact_timeline=True)

    assert fakes.deepgram.connections[0].dropped
    assert fakes.deepgram.refused == 2
    assert interpreter.ears.reconnects == 3  # the drop, then two refusals
    # every sentence transcribed exactly once, the interrupted one from the replayed audio
    assert [f.transcript for f in fakes.deepgram.finals] == DIALOGUE.transcripts
    assert [c.text for c in captions.finals(translated=False)] == DIALOGUE.transcripts
    # the new connection's word times start from its own zero, yet the ears keep the speaker's
    # timeline: each utterance ends where its speech ends in the WAV
    assert fakes.deepgram.finals[1].end < DIALOGUE.speech_ends[1] - 1.0
    ends = [c.end_s for c in captions.finals(translated=False)]
    assert ends == pytest.approx(DIALOGUE.speech_ends, abs=0.1)
    heard = interpreter.ears
    assert heard.utterances == 3 and heard.dropped_audio_s == 0
    assert tone_sequence(listener.audio(), listener.sample_rate) == [400, 600, 800]
    assert tracker.spoken == 3


async def test_stt_refusing_for_a_while_is_a_clear_error_and_a_fault_then_nothing_is_lost(
    dialogue_fakes: Fakes, caplog: pytest.LogCaptureFixture
):
    fakes = dialogue_fakes
    fakes.deepgram.refuse_next(6)  # ~3 s of refused connections from the start: backoff 0.1 s → 1.6 s
    faults: list[tuple[str, bool]] = []
    tracker, captions = LatencyTracker(), CaptionLog()
    interpreter, listener = await run_interpreter(
        fakes, DIALOGUE.wav, tracker, captions, on_fault=lambda kind, down: faults.append((kind, down))
    )

    assert fakes.deepgram.refused == 6 and interpreter.ears.reconnects == 6
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "reconnecting" in r.getMessage()]
    assert len(errors) == 2  # the 5th and 6th failures in a row: a clear error, and it kept trying
    assert faults == [("stt", True), ("stt", False)]  # shown while down, cleared once it hears again
    # the speech during the outage was buffered and transcribed once the link was back
    assert [c.text for c in captions.finals(translated=False)] == DIALOGUE.transcripts
    assert tone_sequence(listener.audio(), listener.sample_rate) == [400, 600, 800]
    assert tracker.spoken == 3


def reconnect_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "agent.ears" and "reconnecting" in r.getMessage()]


async def test_stt_closing_with_an_error_code_mid_utterance_is_reconnected_and_loses_nothing(
    dialogue_fakes: Fakes, caplog: pytest.LogCaptureFixture
):
    """Deepgram closes the websocket with 1011 (its NET-0000) in the middle of the second sentence: the
    ears reconnect, replay, and every sentence is heard once; the log line says why (the close code)."""
    fakes = dialogue_fakes
    fakes.deepgram.close_after_audio_s(3.6, CLOSE_NO_RESPONSE)
    tracker, captions = LatencyTracker(), CaptionLog()
    interpreter, listener = await run_interpreter(fakes, DIALOGUE.wav, tracker, captions, exact_timeline=True)

    assert fakes.deepgram.connections[0].close_code == 1011
    assert interpreter.ears.reconnects == 1 and interpreter.ears.failure is None
    assert [f.transcript for f in fakes.deepgram.finals] == DIALOGUE.transcripts
    assert [c.text for c in captions.finals(translated=False)] == DIALOGUE.transcripts
    assert tone_sequence(listener.audio(), listener.sample_rate) == [400, 600, 800]
    [record] = reconnect_records(caplog)
    assert (record.provider, record.status, record.error) == ("deepgram", 1011, "APIStatusError")  # type: ignore[attr-defined]
    assert "deepgram 1011" in record.getMessage()


async def test_stt_refusing_our_key_is_not_retried_and_is_one_clear_error_and_a_fault(
    one_sentence_fakes: Fakes, caplog: pytest.LogCaptureFixture
):
    """A 401 at the handshake (a wrong or revoked key) cannot get better by asking again: the ears stop
    trying for this speaker at once, show the stt fault, and say so once, naming provider and status."""
    fakes = one_sentence_fakes
    fakes.deepgram.api_key = "another-key"
    faults: list[bool] = []
    async with ears_for(fakes, live_track(read_wav(ONE_SENTENCE.wav)), on_fault=faults.append) as (
        ears,
        heard,
    ):
        await asyncio.wait_for(ears.run(), 20.0)  # before the fix: retried forever, with backoff

    assert fakes.deepgram.refusals == [401] and ears.reconnects == 0
    assert ears.failure is not None and (ears.failure.status, ears.failure.refused) == (401, True)
    assert faults == [True] and ears.fault.down and heard == []
    [record] = [r for r in caplog.records if r.name == "agent.ears" and r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert "refused" in record.getMessage() and "deepgram 401" in record.getMessage()
    assert (record.provider, record.status) == ("deepgram", 401)  # type: ignore[attr-defined]
    key = fakes.env()["DEEPGRAM_API_KEY"]
    for logged in caplog.records:  # the key we sent is in no record, message or extra
        assert key not in logging.Formatter().format(logged) and key not in str(vars(logged))


@pytest.mark.parametrize("status", [403, 402, 400])
async def test_stt_refusals_other_than_a_wrong_key_are_not_retried_either(
    one_sentence_fakes: Fakes, status: int
):
    """Forbidden (a key without the scope), payment required (no credit left), a request Deepgram does not
    accept: each a status the framework marks not retryable; 429 and 5xx stay outages (tests above)."""
    fakes = one_sentence_fakes
    fakes.deepgram.refuse_next(10, status=status)
    async with ears_for(fakes, live_track(read_wav(ONE_SENTENCE.wav))) as (ears, _):
        await asyncio.wait_for(ears.run(), 20.0)
    assert fakes.deepgram.refusals == [status] and ears.reconnects == 0
    assert ears.failure is not None and ears.failure.cause == f"deepgram {status}" and ears.failure.refused


async def test_stt_unreachable_is_given_up_after_the_bound_when_one_is_set(
    one_sentence_fakes: Fakes, caplog: pytest.LogCaptureFixture
):
    """Nothing listening where Deepgram should be (connection refused) while the speaker goes on: with
    `give_up_after_s` (the file mode's) the ears give up once the link has been down that long."""
    unreachable = f"http://127.0.0.1:{free_port()}/v1/listen"
    async with ears_for(one_sentence_fakes, live_track(), deepgram_url=unreachable, give_up_after_s=1.0) as (
        ears,
        _,
    ):
        await asyncio.wait_for(ears.run(), 30.0)  # the speaker never stops: only giving up ends this

    assert ears.failure is not None and not ears.failure.refused and ears.failure.status is None
    assert ears.failure.error == "ClientConnectorError"
    assert ears.reconnects >= 2 and ears.fault.down
    retries = reconnect_records(caplog)
    assert retries and all(r.error == "ClientConnectorError" for r in retries)  # type: ignore[attr-defined]
    [gave_up] = [r for r in caplog.records if r.name == "agent.ears" and "given up" in r.getMessage()]
    assert gave_up.levelno == logging.ERROR and "deepgram unreachable" in gave_up.getMessage()


async def test_an_interim_taken_back_leaves_no_stale_caption(one_sentence_fakes: Fakes):
    """Deepgram revises interims: what it first heard as words may end as nothing (an empty final). The
    interim caption already shown must not stay on screen: its segment is closed with an empty final,
    and no utterance comes of it. A revised interim of a real sentence is replaced by its final."""
    transcript = ONE_SENTENCE.transcripts[0]
    fakes = Fakes(
        FakeDeepgram(
            ["", transcript], interims={"": ["the"], transcript: ["Please turn on", "Please tern on your"]}
        ),
        one_sentence_fakes.cerebras,
        one_sentence_fakes.groq,
        one_sentence_fakes.cartesia,
    )
    await fakes.deepgram.start()
    captions = CaptionLog()
    pcm = read_wav(ONE_SENTENCE.wav)
    noise_then_sentence = Pcm(np.concatenate([pcm.samples, pcm.samples]), pcm.sample_rate)
    try:
        async with ears_for(fakes, paced_frames(noise_then_sentence), captions=captions) as (ears, heard):
            await asyncio.wait_for(ears.run(), 20.0)
    finally:
        await fakes.deepgram.aclose()

    assert [f.transcript for f in fakes.deepgram.finals] == ["", transcript]
    assert [u.text for u in heard] == [transcript] and ears.utterances == 1
    last: dict[str, Caption] = {}
    for caption in captions.captions:
        last[caption.segment_id] = caption
    assert [(c.text, c.final) for c in last.values()] == [("", True), (transcript, True)]
    assert heard[0].id == list(last)[1]  # the utterance keeps the id its captions had
    shown = [c.text for c in captions.captions]
    assert "the" in shown and "Please tern on your" in shown  # the interims were shown, then replaced


async def test_an_endpoint_only_result_ends_the_speech_and_makes_no_utterance(one_sentence_fakes: Fakes):
    """Deepgram cuts 2 s of speech in two (its own segment limit), the second cut right where the speech
    ends; the endpoint then comes alone: a Results with an empty transcript and speech_final true. It
    ends the speech (the next words start a new segment) and is no utterance, no caption, no error."""
    rate = 16000
    t = np.arange(2 * rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    silence = np.zeros(rate // 2, np.int16)
    pcm = Pcm(np.concatenate([silence, tone, silence, silence]), rate)
    fakes = Fakes(
        FakeDeepgram(["One two.", "Three four."], max_segment_s=1.0),
        one_sentence_fakes.cerebras,
        one_sentence_fakes.groq,
        one_sentence_fakes.cartesia,
    )
    await fakes.deepgram.start()
    captions = CaptionLog()
    try:
        async with ears_for(fakes, paced_frames(pcm), captions=captions) as (ears, heard):
            await asyncio.wait_for(ears.run(), 20.0)
    finally:
        await fakes.deepgram.aclose()

    assert fakes.deepgram.endpoints_only_sent == 1
    assert [u.text for u in heard] == ["One two.", "Three four."] and ears.reconnects == 0
    assert [(c.text, c.final) for c in captions.captions if c.final] == [
        ("One two.", True),
        ("Three four.", True),
    ]


async def test_long_continuous_speech_is_cut_into_segments_translated_while_it_goes_on():
    """No pause for 4 s: the ears force a final every `max_segment_s` (Deepgram's Finalize), so the
    first translation starts long before the speaker stops, and the pieces join up with no gap."""
    rate = 16000
    t = np.arange(int(4.0 * rate)) / rate
    voice = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    pcm = Pcm(np.concatenate([np.zeros(rate // 2, np.int16), voice, np.zeros(rate, np.int16)]), rate)
    fakes = Fakes(FakeDeepgram([], transcript_for=numbered_words()), FakeLLM(), FakeLLM(), FakeCartesia())
    for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await server.start()
    tracker, captions = LatencyTracker(), CaptionLog()
    try:
        options = PipelineOptions(max_segment_s=1.0)
        await run_interpreter(fakes, pcm, tracker, captions, speaker_name="ann", options=options)
    finally:
        for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
            await server.aclose()

    finals = captions.finals(translated=False)
    assert len(finals) >= 4  # 4 s of speech in pieces of about a second
    spans = [(c.start_s or 0.0, c.end_s or 0.0) for c in finals]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.02  # no word twice...
        assert start - end < 0.5  # ...and no gap: the pieces join up
    assert spans[0][1] - spans[0][0] < 1.3
    words = " ".join(c.text for c in finals).replace(".", "").split()
    assert len(words) == len(set(words))  # every word once
    first_heard = tracker.completed[0].marks
    assert first_heard[Mark.PLAYOUT_START] < tracker.completed[-1].marks[Mark.SPEECH_END]  # heard mid-speech
    assert tracker.spoken == len(finals)


class SentencePieces(NumberedWords):
    """Numbered words whose third piece ends a sentence ("w7 w8."); the others end none ("w1 w2")."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces = 0

    def preview(self, duration_s: float) -> str:
        text = super().preview(duration_s)
        return text if self.pieces == 2 else text.rstrip(".")

    def __call__(self, duration_s: float) -> str:
        text = self.preview(duration_s)
        self.next_number += self.count(duration_s)
        self.pieces += 1
        return text


def expected_sentences(pieces: list[Caption]) -> list[list[str]]:
    """The source pieces' segment ids grouped into sentences as the rule says: a piece ending with a
    sentence mark closes its sentence; so does more than SENTENCE_PAUSE_S of silence after a piece."""
    groups: list[list[str]] = []
    closed, last_end = True, 0.0
    for piece in pieces:
        start = piece.start_s or 0.0
        if closed or start - last_end > SENTENCE_PAUSE_S:
            groups.append([])
        groups[-1].append(piece.segment_id)
        closed, last_end = piece.text.endswith("."), piece.end_s or 0.0
    return groups


async def test_the_pieces_of_one_sentence_and_their_translations_carry_one_sentence_id():
    """A long sentence cut into pieces (`max_segment_s`): every caption of its pieces, interim and final,
    source and translated, carries one sentence id; the piece ending with a full stop closes it, and the
    piece after more than SENTENCE_PAUSE_S of silence starts another though the one before ended none."""
    rate = 16000
    t = np.arange(int(4.5 * rate)) / rate
    voice = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    silence = np.zeros(rate // 2, np.int16)
    gap = np.zeros(int((SENTENCE_PAUSE_S + 0.6) * rate), np.int16)
    pcm = Pcm(np.concatenate([silence, voice, gap, voice[: int(1.5 * rate)], silence, silence]), rate)
    fakes = Fakes(FakeDeepgram([], transcript_for=SentencePieces()), FakeLLM(), FakeLLM(), FakeCartesia())
    for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await server.start()
    tracker, captions = LatencyTracker(), CaptionLog()
    try:
        options = PipelineOptions(max_segment_s=1.0)
        await run_interpreter(fakes, pcm, tracker, captions, speaker_name="ann", options=options)
    finally:
        for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
            await server.aclose()

    pieces = [c for c in captions.finals(translated=False) if c.text]
    groups = expected_sentences(pieces)
    assert len(groups) >= 3 and len(groups[0]) == 3, [(p.text, p.start_s, p.end_s) for p in pieces]
    sentence_of = {segment: f"ann-s{k}" for k, group in enumerate(groups) for segment in group}
    for caption in captions.captions:  # interims, finals and translations alike
        source_segment = caption.segment_id.removesuffix("-es") if caption.translated else caption.segment_id
        assert caption.sentence == sentence_of[source_segment], caption
    assert {c.sentence for c in captions.captions if c.translated} == set(sentence_of.values())
    assert any(not c.final for c in captions.captions if c.sentence == "ann-s0")


# -- stopping ------------------------------------------------------------------------------------------


async def test_ears_stopped_before_they_start_end_at_once_without_connecting(one_sentence_fakes: Fakes):
    """Stopped (a track unpublished right behind its subscribe) before their task has first run."""
    async with ears_for(one_sentence_fakes, live_track()) as (ears, heard):
        task = asyncio.create_task(ears.run())
        ears.stop()
        await asyncio.wait_for(task, 5.0)  # the track never ends by itself: before the fix, neither did this
    assert heard == [] and one_sentence_fakes.deepgram.connections == []


async def test_ears_stopped_as_their_task_starts_still_end_promptly(one_sentence_fakes: Fakes):
    """Stopped after `run` began but before the audio intake first ran (a task cancelled before its
    first step never runs its `finally`): the input still ends, and so do the ears."""
    async with ears_for(one_sentence_fakes, live_track()) as (ears, heard):
        task = asyncio.create_task(ears.run())
        await asyncio.sleep(0)  # run has started the intake task, which has not run yet
        ears.stop()
        await asyncio.wait_for(task, 5.0)
    assert heard == []


async def test_ears_stopped_mid_track_finalize_what_was_heard(one_sentence_fakes: Fakes):
    async with ears_for(one_sentence_fakes, live_track(read_wav(ONE_SENTENCE.wav))) as (ears, heard):
        task = asyncio.create_task(ears.run())
        await asyncio.sleep(1.9)  # the sentence ends at 1.83 s: heard, not yet finalized (endpointing)
        ears.stop()
        await asyncio.wait_for(task, 8.0)
    assert [u.text for u in heard] == ONE_SENTENCE.transcripts


@contextlib.asynccontextmanager
async def room_session(
    fakes: Fakes, stt: lk_stt.STT | None = None, **overrides: str
) -> AsyncIterator[tuple[FakeRoom, RoomSession]]:
    settings = fakes.settings(**overrides)
    room = FakeRoom()
    async with aiohttp.ClientSession() as http:
        llm, stt = build_llm(settings), stt or build_stt(settings, "en", http)
        session = RoomSession(
            room=room, settings=settings, stt=stt, llm=llm, tracker=LatencyTracker(),
            tts_factory=lambda language, voice: build_tts(settings, language, http, voice),
        )  # fmt: skip
        await session.start()
        try:
            yield room, session
        finally:
            await session.aclose()
            await llm.aclose()
            await stt.aclose()


async def test_an_unpublish_right_behind_a_subscribe_does_not_hold_up_the_room(one_sentence_fakes: Fakes):
    """The session starts the ears and stops them in one go, before their task has run (a mute right
    behind a subscribe is caught earlier: the publication already reads muted when the ears would start)."""
    speaker = LoopbackSpeaker(read_wav(ONE_SENTENCE.wav))
    try:
        async with room_session(one_sentence_fakes) as (room, session):
            alice = room.join("alice", attributes={"language": "en"})
            publication = room.publish_audio(alice, speaker.track)
            room.unpublish(alice, publication)  # handled right behind the subscribe, nothing awaited between
            await asyncio.wait_for(session.settled(), 5.0)  # before the fix: the 10 s stop timeout
            assert session.speakers == {}
    finally:
        await speaker.aclose()


# -- errors --------------------------------------------------------------------------------------------


class BrokenCaptions:
    """A caption sink with a bug whose message quotes what was said (it runs in the ears' event handling)."""

    def publish(self, caption: Caption) -> None:
        raise ValueError(f"cannot show {caption.text!r}")


async def test_a_bug_in_the_ears_is_logged_with_its_traceback_and_ends_them_not_an_outage(
    one_sentence_fakes: Fakes, caplog: pytest.LogCaptureFixture
):
    """Only provider errors are an STT outage (reconnect with backoff); a bug in the ears' own event
    handling is not retried: it is logged with its traceback (never the words) and ends the ears."""
    frames = paced_frames(read_wav(ONE_SENTENCE.wav))
    async with ears_for(one_sentence_fakes, frames, captions=BrokenCaptions()) as (ears, _):
        with pytest.raises(ValueError):
            await asyncio.wait_for(ears.run(), 10.0)
    assert ears.reconnects == 0 and not ears.fault.down and ears.failure is None
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "agent.ears"]
    logged = logging.Formatter().format(record)
    assert "Traceback" in logged and "_on_event" in logged and "ValueError" in logged
    for word in ("Please", "camera"):
        assert word not in logged


async def test_ears_failing_in_a_room_show_an_stt_fault_and_are_logged_once(
    one_sentence_fakes: Fakes, caplog: pytest.LogCaptureFixture
):
    """An STT plugin with a bug (an error that is not a provider's): the speaker's ears end with the
    traceback logged once (its message withheld), the room shows the `stt` fault, nothing retries it."""
    buggy = BuggySTT(ValueError("a bug that quotes 'Please mute your camera'"))
    speaker = LoopbackSpeaker(read_wav(ONE_SENTENCE.wav))
    try:
        async with room_session(one_sentence_fakes, stt=buggy) as (room, session):
            alice = room.join("alice", attributes={"language": "en"})
            publication = room.publish_audio(alice, speaker.track)
            speaker.start()
            await eventually(lambda: session.status.faults == ["stt"], within_s=10, what="the stt fault")
            room.unpublish(alice, publication)
            await asyncio.wait_for(session.settled(), 5.0)
            assert session.status.faults == [] and session.speakers == {}
    finally:
        await speaker.aclose()
    assert buggy.streams == 1  # a bug is not an outage: never reconnected
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in tracebacks] == ["the ears failed; no longer listening to this speaker"]
    logged = logging.Formatter().format(tracebacks[0])
    assert "ValueError" in logged and "Traceback" in logged and "Please" not in logged


async def test_a_speaker_whose_stt_is_refused_shows_the_fault_until_they_stop(
    one_sentence_fakes: Fakes, caplog: pytest.LogCaptureFixture
):
    """In a room, a refused STT (401) stops that speaker's retries: `interpreter.faults` shows `stt` while
    they speak, one error line says why, and stopping (mute, unpublish, leave) clears it."""
    one_sentence_fakes.deepgram.api_key = "another-key"
    speaker = LoopbackSpeaker(read_wav(ONE_SENTENCE.wav))
    try:
        async with room_session(one_sentence_fakes) as (room, session):
            alice = room.join("alice", attributes={"language": "en"})
            publication = room.publish_audio(alice, speaker.track)
            speaker.start()
            await eventually(lambda: session.status.faults == ["stt"], within_s=10, what="the stt fault")
            [listening] = session.speakers.values()
            await eventually(listening.task.done, within_s=10, what="the ears giving up")
            assert listening.task.exception() is None  # not a bug: nothing to log with a traceback
            assert one_sentence_fakes.deepgram.refusals == [401] and session.status.faults == ["stt"]
            room.unpublish(alice, publication)
            await asyncio.wait_for(session.settled(), 5.0)
            assert session.status.faults == [] and session.speakers == {}
    finally:
        await speaker.aclose()
    errors = [r for r in caplog.records if r.name == "agent.ears" and r.levelno >= logging.ERROR]
    assert [(r.status, r.exc_info) for r in errors] == [(401, None)]  # type: ignore[attr-defined]
