"""No dead air inside a translation (TRIM_SILENCE): the real Cartesia plugin against the fake with silence
at the start and end of each context's audio, and the real mouth into a recording output.

Between two clauses of one translation no silence longer than the kept gap is played, every voiced
sample still is (none twice, none lost), a pause inside a clause is kept, and `off` plays it all."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc
from prometheus_client import REGISTRY

from agent.loops.models import Speech, Utterance
from agent.loops.mouth.loop import Mouth
from agent.loops.mouth.trim import TrimOptions, voiced_span
from agent.loops.pipeline import PipelineOptions
from agent.settings.config import ConfigError, load_settings
from agent.telemetry.latency import LatencyTracker, Mark
from tests.channel import ChannelRun, CollectingOutput, channel_run
from tests.conftest import Fakes
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.loopback import eventually, tone_sequence
from tests.test_config import FULL
from tests.test_faults import SOURCES, TRANSLATIONS, tone_for

RATE = 24000
KEPT_GAP_S = 0.1  # the silence TRIM_SILENCE keeps at a clause boundary (docs/architecture.md)
WINDOW_S = 0.01  # a cut falls on the trim's 10 ms window edge: up to one window more
QUIET = 100  # |sample| below this is silence (about -50 dBFS, as the trim judges it)


def voiced_samples(samples: np.ndarray) -> int:
    return int(np.count_nonzero(np.abs(samples.astype(np.int32)) >= QUIET))


def silent_runs(samples: np.ndarray) -> list[float]:
    """Seconds of each silent run of 5 ms or more between two voiced samples (leading and trailing
    silence left out; a tone's zero crossings are a sample or two)."""
    voiced = np.flatnonzero(np.abs(samples.astype(np.int32)) >= QUIET)
    gaps = np.diff(voiced) - 1
    return [g / RATE for g in gaps if g >= 0.005 * RATE]


def leading_silence(samples: np.ndarray) -> float:
    voiced = np.flatnonzero(np.abs(samples.astype(np.int32)) >= QUIET)
    return float(voiced[0]) / RATE if voiced.size else 0.0


def synthesized_voiced(cartesia: FakeCartesia) -> int:
    """Voiced samples in what the fake synthesized for the contexts that completed (a dropped or
    errored attempt is synthesized again in full)."""
    failed = set(cartesia.dropped_contexts) | set(cartesia.errored_contexts)
    pcm = [
        np.frombuffer(cartesia.synthesize_pcm(t, RATE), np.int16)
        for c, transcripts in cartesia.contexts.items()
        if c not in failed
        for t in transcripts
        if t.strip()
    ]
    return voiced_samples(np.concatenate(pcm)) if pcm else 0


def assert_all_voice_played_once(audio: np.ndarray, cartesia: FakeCartesia, joins: int) -> None:
    """Every voiced sample synthesized was played, none twice. The mouth's 5 ms fade-in where audio
    starts on voice (an utterance's first frame, or a frame right after a skip) quiets the first 1-3
    samples of a tone below the threshold: up to 5 per join; a lost 10 ms window would be ~230."""
    lost = synthesized_voiced(cartesia) - voiced_samples(audio)
    assert 0 <= lost <= 5 * joins, f"{lost} voiced samples not played (< 0: played twice)"


def fakes_with(tail_s: float, lead_s: float) -> Fakes:
    return Fakes(
        deepgram=FakeDeepgram([]),
        cerebras=FakeLLM(translations=TRANSLATIONS),
        groq=FakeLLM(translations=TRANSLATIONS),
        cartesia=FakeCartesia(freq_for=tone_for, tail_s=tail_s, lead_s=lead_s),
    )


def trim_run(fakes: Fakes, **env: str) -> contextlib.AbstractAsyncContextManager[ChannelRun]:
    """One Spanish channel with the pipeline options the worker builds from `env` (MAX_SPEED=1.0: the
    speaking rate stays 1.0, so the fake's audio is exactly what `synthesize_pcm` makes)."""
    env.setdefault("MAX_SPEED", "1.0")
    return channel_run(fakes, None, PipelineOptions.from_settings, **env)


@pytest.mark.parametrize(
    ("tail_s", "lead_s"),
    [(0.4, 0.05), (0.02, 0.3)],
    ids=["trailing-silence", "leading-silence"],
)
async def test_trim_on_plays_no_silence_beyond_the_gap_between_clauses_and_every_voiced_sample(
    tail_s: float, lead_s: float
):
    fakes = fakes_with(tail_s, lead_s)
    async with trim_run(fakes, TRIM_SILENCE="on") as run:
        run.say(SOURCES[0])  # two clauses, two contexts, one translation
        run.say(SOURCES[1])
        await run.finish()

    audio = run.output.audio()
    assert len(fakes.cartesia.contexts) == 3  # one context per clause, each with its silence
    assert tone_sequence(audio, RATE) == [400, 500, 800]
    assert_all_voice_played_once(audio, fakes.cartesia, joins=2)
    # the boundary inside the first translation, and the one between the two translations
    assert len(silent_runs(audio)) == 2
    assert max(silent_runs(audio)) <= KEPT_GAP_S + WINDOW_S + 0.002
    assert leading_silence(audio) <= KEPT_GAP_S + 0.002  # the first clause's lead, cut to the gap too
    assert run.output.seconds < sum(fakes.cartesia.audio_s.values())  # silence really was left out
    assert run.tracker.spoken == 2


async def test_trim_off_plays_the_silence_as_today():
    tail_s, lead_s = 0.4, 0.05
    fakes = fakes_with(tail_s, lead_s)
    async with trim_run(fakes, TRIM_SILENCE="off") as run:
        run.say(SOURCES[0])
        await run.finish()

    audio = run.output.audio()
    assert tone_sequence(audio, RATE) == [400, 500]
    assert_all_voice_played_once(audio, fakes.cartesia, joins=1)
    # every sample the TTS made is played: the boundary carries the first tail and the next lead
    assert run.output.seconds == pytest.approx(sum(fakes.cartesia.audio_s.values()), abs=0.002)
    [gap] = silent_runs(audio)
    assert gap >= tail_s + lead_s - 0.002
    assert leading_silence(audio) >= lead_s - 0.002


@pytest.mark.parametrize("drop_after_chunks", [10, 30], ids=["mid-voice", "in-the-trailing-silence"])
async def test_a_clause_synthesized_again_midway_still_plays_nothing_twice(drop_after_chunks: int):
    """The first clause's socket drops after some of its audio (its lead and speech are 27 chunks of
    40 ms, then 10 of silence): the clause is synthesized again and what was already decided is skipped."""
    fakes = fakes_with(tail_s=0.4, lead_s=0.05)
    retries = REGISTRY.get_sample_value("interpreter_tts_clause_retries_total") or 0.0
    async with trim_run(fakes, TRIM_SILENCE="on") as run:
        fakes.cartesia.drop_next_context_after(drop_after_chunks)
        run.say(SOURCES[0])
        await run.finish()

    audio = run.output.audio()
    assert len(fakes.cartesia.dropped_contexts) == 1
    # synthesized again by the brain, skipping what was decided (not the framework's retry from scratch)
    assert REGISTRY.get_sample_value("interpreter_tts_clause_retries_total") == retries + 1
    assert tone_sequence(audio, RATE) == [400, 500]
    assert_all_voice_played_once(audio, fakes.cartesia, joins=2)  # the first frame, the one after the skip
    assert max(silent_runs(audio)) <= KEPT_GAP_S + WINDOW_S + 0.002
    assert run.tracker.spoken == 1


def tone(seconds: float, freq: float = 440.0, amplitude: float = 0.3) -> rtc.AudioFrame:
    t = np.arange(round(seconds * RATE)) / RATE
    pcm = (amplitude * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    return rtc.AudioFrame(pcm.tobytes(), RATE, 1, len(pcm))


def silence(seconds: float, level: float = 0.0) -> rtc.AudioFrame:
    """Silence, or a faint noise floor at `level` (RMS, full scale 1.0)."""
    noise = np.random.default_rng(1).normal(0, level * 32767, round(seconds * RATE))
    pcm = noise.astype(np.int16)
    return rtc.AudioFrame(pcm.tobytes(), RATE, 1, len(pcm))


def new_speech(uid: str, now: float) -> Speech:
    utterance = Utterance(
        id=uid, speaker="ann", text="x", language="en",
        audio_start=0.0, audio_end=1.0, speech_end_at=now, final_at=now,
    )  # fmt: skip
    return Speech(utterance, "es")


async def test_a_pause_inside_a_clause_is_kept_and_voice_is_never_held_back():
    """The real mouth, fed as a TTS stream would: voiced audio plays as soon as it arrives; a silent frame
    waits until the clause goes on (then it is played: a pause in the clause) or ends (then it is cut)."""
    speech = new_speech("ann-0", LatencyTracker().clock())
    output = CollectingOutput()
    inbox: asyncio.Queue[Speech | None] = asyncio.Queue()
    mouth = Mouth(output=output, inbox=inbox, tracker=LatencyTracker(), trim=TrimOptions())
    inbox.put_nowait(speech)
    inbox.put_nowait(None)
    task = asyncio.create_task(mouth.run())
    try:
        part = speech.add_clause("uno, dos")
        speech.push(part, tone(0.2))
        await eventually(lambda: output.seconds == pytest.approx(0.2), what="the voice, at once")
        speech.push(part, silence(0.3, level=0.0005))  # a pause (a faint noise floor, -66 dBFS)
        await eventually(lambda: part.cursor == len(part.frames), what="the mouth to take the pause")
        assert output.seconds == pytest.approx(0.2)  # held: not known yet to be a pause or a tail
        speech.push(part, tone(0.2, 600))
        await eventually(lambda: output.seconds == pytest.approx(0.7), what="the pause and the voice")
        speech.push(part, silence(0.5, level=0.0005))  # the clause's trailing silence
        speech.finish(part)
        last = speech.add_clause("tres")
        speech.push(last, tone(0.2, 800), final=True)
        speech.end_input()
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    audio = output.audio()
    assert tone_sequence(audio, RATE) == [400, 600, 800]
    pause, boundary = silent_runs(audio)
    assert pause >= 0.3 - 0.002  # kept whole
    assert boundary <= KEPT_GAP_S + WINDOW_S + 0.002
    assert speech.trimmed_s == pytest.approx(0.5 - KEPT_GAP_S, abs=WINDOW_S)  # the path taken


async def test_trim_off_in_the_mouth_plays_every_frame_as_it_comes():
    speech = new_speech("ann-0", LatencyTracker().clock())
    part = speech.add_clause("uno")
    for frame in (tone(0.2), silence(0.5)):
        speech.push(part, frame)
    speech.finish(part)
    speech.push(speech.add_clause("dos"), tone(0.2, 800), final=True)
    speech.end_input()
    output = CollectingOutput()
    inbox: asyncio.Queue[Speech | None] = asyncio.Queue()
    for item in (speech, None):
        inbox.put_nowait(item)
    await asyncio.wait_for(Mouth(output=output, inbox=inbox, tracker=LatencyTracker()).run(), 10)
    assert output.seconds == pytest.approx(0.9)
    assert speech.trimmed_s == 0


def test_trim_silence_is_on_by_default_off_on_request_and_documented():
    assert load_settings(FULL).trim_silence is True
    assert PipelineOptions.from_settings(load_settings(FULL)).trim == TrimOptions()
    off = load_settings({**FULL, "TRIM_SILENCE": "off"})
    assert off.trim_silence is False and PipelineOptions.from_settings(off).trim is None
    with pytest.raises(ConfigError, match="TRIM_SILENCE="):
        load_settings({**FULL, "TRIM_SILENCE": "maybe"})
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    assert re.search(r"^#? ?TRIM_SILENCE=", example, re.M)


def test_quiet_speech_is_voice_and_a_faint_noise_floor_is_silence():
    options = TrimOptions()
    quiet = tone(0.2, amplitude=0.014)  # RMS 0.01, -40 dBFS: quiet speech
    assert voiced_span(quiet, options) == (0, quiet.samples_per_channel)
    assert voiced_span(silence(0.2, level=0.0005), options) is None  # -66 dBFS
    assert voiced_span(silence(0.2), options) is None
    # a frame ending in silence: the voice is cut at the 10 ms window after its last voiced sample
    frame = rtc.combine_audio_frames([tone(0.105), silence(0.1)])
    assert voiced_span(frame, options) == (0, round(0.11 * RATE))


async def test_an_utterance_whose_audio_is_all_silence_still_counts_as_spoken():
    """Silence the TTS made for a whole utterance (e.g. a clause of punctuation) right after another
    utterance: cut to almost nothing, but played, so the utterance is not taken for a failure."""
    tracker = LatencyTracker()
    speeches = []
    for i, frames in enumerate([[tone(0.2), silence(0.3)], [silence(0.4)]]):
        speech = new_speech(f"ann-{i}", tracker.clock())
        part = speech.add_clause("x")
        for frame in frames:
            speech.push(part, frame)
        speech.finish(part)
        speech.end_input()
        tracker.mark(speech.utterance.record_ids, Mark.SPEECH_END)
        speeches.append(speech)
    output = CollectingOutput()
    inbox: asyncio.Queue[Speech | None] = asyncio.Queue()
    for item in (*speeches, None):
        inbox.put_nowait(item)
    mouth = Mouth(output=output, inbox=inbox, tracker=tracker, trim=TrimOptions())
    await asyncio.wait_for(mouth.run(), 10)
    assert list(mouth.played) == ["ann-0", "ann-1"]
    assert tracker.spoken == 2 and tracker.failed == 0
    assert speeches[1].trimmed_s > 0.3  # its silence was still cut
