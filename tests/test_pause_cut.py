"""The ears end a segment where the speaker pauses (Deepgram `Finalize`), not after Deepgram's endpointing.

The real Deepgram plugin against the fake Deepgram (`tests/fakes/deepgram.py`), most with a long endpointing
(5 s), so only the ears' Finalize can end a segment early. Where a test waits for a final, the speaker's
audio stops there (after less silence than the endpointing): the fake's endpointing runs on the audio it
received, so a final that arrives then came from the Finalize, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import pytest
from livekit import rtc

from agent.loops.ears.loop import Ears
from agent.loops.ears.pauses import LONG_PAUSE_S, MIN_SPEECH_S, PauseDetector, PausePolicy
from agent.loops.ears.voicing import is_voiced
from agent.loops.models import Utterance
from agent.loops.pipeline import PipelineOptions
from agent.providers.build import build_stt
from agent.run.filemode import Pcm, paced_frames, read_wav
from agent.settings.config import ConfigError, load_settings
from agent.telemetry.latency import LatencyTracker
from tests.conftest import DIALOGUE, ONE_SENTENCE, SPANISH, Fakes, Scenario
from tests.fakes import FakeDeepgram
from tests.fakes.deepgram import numbered_words
from tests.loopback import LoopbackSpeaker, eventually
from tests.test_ears import room_session

RATE = 16000
LONG_ENDPOINTING_MS = "5000"


def stt_env(deepgram_url: str | None = None, **overrides: str) -> dict[str, str]:
    """The settings' environment (only Deepgram is reached here): the defaults but for what is given
    (the long-speech timer off, as in the other tests, unless given)."""
    nowhere = "http://127.0.0.1:9"
    env = {
        "DEEPGRAM_API_KEY": "dg-test-key",
        "DEEPGRAM_BASE_URL": deepgram_url or nowhere,
        "CEREBRAS_API_KEY": "cb-test-key",
        "CEREBRAS_BASE_URL": nowhere,
        "CARTESIA_API_KEY": "ct-test-key",
        "CARTESIA_BASE_URL": nowhere,
        "STT_MAX_SEGMENT_S": "0",
    }
    return env | overrides


def tone(seconds: float, amplitude: float = 0.3, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)


def quiet(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate), np.int16)


class Heard(list[Utterance]):
    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def put_nowait(self, utterance: Utterance) -> None:
        self.append(utterance)
        self.changed.set()

    async def at_least(self, n: int, within_s: float = 10.0) -> None:
        async def wait() -> None:
            while len(self) < n:
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), within_s)
        except TimeoutError:
            raise AssertionError(f"no final for the pause ({len(self)} utterances, {n} expected)") from None


Step = np.ndarray | int  # audio to speak in real time, or: wait until that many utterances were heard


async def speaker(steps: list[Step], heard: Heard) -> AsyncIterator[rtc.AudioFrame]:
    """Speaks each audio step in real time (20 ms frames); an int step stops the audio until that many
    utterances were heard (so the STT's endpointing, on the audio it received, cannot end the segment)."""
    for step in steps:
        if isinstance(step, int):
            await heard.at_least(step)
        else:
            async for frame in paced_frames(Pcm(step, RATE)):
                yield frame


@dataclass
class Run:
    ears: Ears
    heard: Heard
    deepgram: FakeDeepgram

    @property
    def control_messages(self) -> list[str]:
        """What the client sent on its one connection but audio and KeepAlives."""
        [connection] = self.deepgram.connections
        return [kind for kind in connection.control_messages if kind != "KeepAlive"]


async def hear(
    steps: list[Step],
    *,
    pause_cut_ms: str,
    endpointing_ms: str = LONG_ENDPOINTING_MS,
    deepgram: FakeDeepgram | None = None,
    language: str = "en",
    **options: Any,
) -> Run:
    """The ears with the settings' PAUSE_CUT_MS over `steps` (see `speaker`), run to the end."""
    deepgram = deepgram or FakeDeepgram([], transcript_for=numbered_words())
    heard = Heard()
    await deepgram.start()
    try:
        settings = load_settings(
            stt_env(deepgram.base_url, STT_ENDPOINTING_MS=endpointing_ms, PAUSE_CUT_MS=pause_cut_ms),
            require_livekit=False,
        )
        async with aiohttp.ClientSession() as http:
            stt = build_stt(settings, language, http)
            ears = Ears(
                stt=stt, frames=speaker(steps, heard), out=heard, tracker=LatencyTracker(), speaker="ann",
                language=language, pause_cut_s=PipelineOptions.from_settings(settings).pause_cut_s, **options,
            )  # fmt: skip
            try:
                await asyncio.wait_for(ears.run(), 60.0)
            finally:
                await stt.aclose()
    finally:
        await deepgram.aclose()
    return Run(ears, heard, deepgram)


def cut_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "agent.ears" and r.getMessage() == "segment ended at a pause"
    ]


# -- the ears and the real plugin ----------------------------------------------------------------------


async def test_speech_then_a_pause_is_finalized_by_the_ears_once_per_pause(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="agent.ears")
    run = await hear(
        [quiet(0.3), tone(1.5), quiet(0.3), 1, tone(1.2), quiet(0.3), 2, quiet(0.5)], pause_cut_ms="120"
    )

    assert run.ears.pause_cuts == 2 and run.ears.timer_cuts == 0
    # one Finalize per pause, then the end of input's own (Finalize, CloseStream)
    assert run.control_messages == ["Finalize", "Finalize", "Finalize", "CloseStream"]
    assert [f.from_finalize for f in run.deepgram.finals] == [True, True]
    assert [u.audio_end for u in run.heard] == pytest.approx([1.8, 3.3], abs=0.06)
    # the speech was long enough for the short pause: cut 120 ms into it
    assert [r.silence_ms for r in cut_records(caplog)] == [120, 120]  # type: ignore[attr-defined]
    for record in cut_records(caplog):
        assert "ann" not in record.getMessage()


async def test_pause_cut_0_sends_no_finalize_of_its_own():
    run = await hear([quiet(0.3), tone(1.5), quiet(1.0)], pause_cut_ms="0")

    assert run.ears.pause_cuts == 0
    assert run.control_messages == ["Finalize", "CloseStream"]  # the end of input's alone
    assert len(run.heard) == 1


async def test_a_breath_shorter_than_the_pause_does_not_cut(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="agent.ears")
    run = await hear([quiet(0.3), tone(1.5), quiet(0.08), tone(1.0), quiet(0.3), 1], pause_cut_ms="120")

    assert run.ears.pause_cuts == 1  # at the end, not at the breath
    [utterance] = run.heard
    assert (utterance.audio_start, utterance.audio_end) == pytest.approx((0.3, 2.88), abs=0.06)


async def test_a_fragment_is_not_cut_at_a_short_pause_but_at_the_longer_one(caplog: pytest.LogCaptureFixture):
    """'So,' then 140 ms: too little speech for the short pause, so the phrase goes on in one segment; a
    short turn ('Yes.') then silence ends at the longer pause, still well before Deepgram's endpointing."""
    caplog.set_level(logging.DEBUG, logger="agent.ears")
    run = await hear(
        [quiet(0.3), tone(0.5), quiet(0.14), tone(1.5), quiet(0.3), 1, quiet(1.0), tone(0.4), quiet(0.26), 2],
        pause_cut_ms="120",
    )

    assert run.ears.pause_cuts == 2
    first, second = run.heard
    assert (first.audio_start, first.audio_end) == pytest.approx((0.3, 2.44), abs=0.06)  # one phrase
    assert second.audio_end == pytest.approx(4.14, abs=0.06)
    silences = [r.silence_ms for r in cut_records(caplog)]  # type: ignore[attr-defined]
    assert silences == [120, round(LONG_PAUSE_S * 1000)]


async def test_the_timer_still_cuts_speech_with_no_pause():
    # a tone has no gap nor dip between words: cut at the latest, 1.3 s into each segment (HARD_AT)
    run = await hear([quiet(0.3), tone(4.0), quiet(0.3), 4], pause_cut_ms="120", max_segment_s=1.0)

    assert run.ears.timer_cuts >= 2 and run.ears.pause_cuts == 1  # the timer mid-speech, the pause at the end
    assert len(run.heard) >= 3
    assert all(f.from_finalize for f in run.deepgram.finals)
    words = " ".join(u.text for u in run.heard).replace(".", "").split()
    assert len(words) == len(set(words))  # nothing twice


async def test_after_a_timer_cut_the_tail_of_the_phrase_is_not_cut_off_at_a_short_pause():
    """The timer cuts a long phrase; its tail (well under a second) then meets a short pause: too little
    speech since the cut for the short pause, so the tail goes on with the next words."""
    run = await hear(
        [quiet(0.3), tone(2.4), quiet(0.14), tone(0.8), quiet(0.3), 2], pause_cut_ms="120", max_segment_s=1.5
    )

    # two cuts, none at the short pause: the timer's, then the end (by then the segment is long enough for
    # the timer to take its first gap, so the end may be a timer cut too)
    assert run.ears.timer_cuts >= 1 and run.ears.timer_cuts + run.ears.pause_cuts == 2
    first, second = run.heard
    assert first.audio_end < 2.7  # cut by the timer, mid-phrase (a tone has no dip: at HARD_AT)
    assert second.audio_end == pytest.approx(3.64, abs=0.06)
    assert second.audio_start < 2.7 < second.audio_end  # the tail, the short pause and the next words


async def test_the_timer_takes_a_gap_between_words_near_its_end_rather_than_split_a_word(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.DEBUG, logger="agent.ears")
    run = await hear(
        [quiet(0.3), tone(1.2), quiet(0.06), tone(0.6), quiet(0.3), 2], pause_cut_ms="120", max_segment_s=1.5
    )

    assert (run.ears.timer_cuts, run.ears.pause_cuts) == (1, 1)
    first, second = run.heard
    assert second.audio_end == pytest.approx(2.16, abs=0.03)
    assert first.audio_end == pytest.approx(1.5, abs=0.03)  # at the gap, not 1.5 s into the segment
    assert second.audio_start == pytest.approx(1.56, abs=0.03)
    [timer] = [r for r in caplog.records if r.getMessage() == "long speech cut"]
    assert timer.at_word_gap  # type: ignore[attr-defined]


async def test_a_cut_that_finds_no_words_does_not_stop_the_timer_for_the_next_speech():
    """A noise the STT hears as nothing: the pause cut's final is empty (the plugin reports no event for
    it), and Deepgram's endpoint follows. The next long speech is still cut by the timer."""
    deepgram = FakeDeepgram([""], transcript_for=numbered_words())
    run = await hear(
        [quiet(0.3), tone(0.5), quiet(0.6), tone(3.0), quiet(0.3), 3],
        pause_cut_ms="120",
        endpointing_ms="300",
        deepgram=deepgram,
        max_segment_s=1.0,
    )

    assert deepgram.finals[0].transcript == "" and deepgram.finals[0].from_finalize
    assert run.ears.timer_cuts >= 2
    assert len(run.heard) >= 3


@pytest.mark.parametrize("scenario", [DIALOGUE, ONE_SENTENCE, SPANISH], ids=["dialogue", "one", "spanish"])
async def test_espeak_sentences_are_not_chopped_by_the_default(scenario: Scenario):
    """Real (espeak) speech, with its commas and gaps between words, at the default PAUSE_CUT_MS and
    Deepgram's default endpointing: one final per sentence, each ended by the ears at its pause."""
    default = load_settings(stt_env(), require_livekit=False)
    language = "es" if scenario is SPANISH else "en"
    pcm = read_wav(scenario.wav)
    assert pcm.sample_rate == RATE
    run = await hear(
        [pcm.samples],
        pause_cut_ms=str(default.pause_cut_ms),
        endpointing_ms="300",
        deepgram=FakeDeepgram(scenario.transcripts),
        language=language,
    )

    assert [u.text for u in run.heard] == scenario.transcripts
    assert run.ears.pause_cuts == len(scenario.transcripts)  # not Deepgram's endpointing
    assert [f.from_finalize for f in run.deepgram.finals] == [True] * len(scenario.transcripts)


async def test_a_room_speaker_is_cut_at_pauses_with_the_default_settings(one_sentence_fakes: Fakes):
    """The session hands PAUSE_CUT_MS to each speaker's ears (the settings' default here: the other
    tests' settings turn it off)."""
    default = load_settings(stt_env(), require_livekit=False).pause_cut_ms
    speaker = LoopbackSpeaker(read_wav(ONE_SENTENCE.wav))
    try:
        async with room_session(one_sentence_fakes, PAUSE_CUT_MS=str(default)) as (room, session):
            alice = room.join("alice", attributes={"language": "en"})
            room.publish_audio(alice, speaker.track)
            speaker.start()
            await eventually(lambda: len(session.speakers) == 1, 5.0, "the speaker's ears")
            [listened] = session.speakers.values()
            await eventually(lambda: listened.ears.utterances == 1, 10.0, "the sentence")
            assert listened.ears.pause_cuts == 1
            assert one_sentence_fakes.deepgram.finals[0].from_finalize
    finally:
        await speaker.aclose()


# -- settings ------------------------------------------------------------------------------------------


def test_pause_cut_ms_setting():
    env = stt_env()
    assert PipelineOptions.from_settings(load_settings(env, require_livekit=False)).pause_cut_s == 0.12
    off = load_settings({**env, "PAUSE_CUT_MS": "0"}, require_livekit=False)
    assert PipelineOptions.from_settings(off).pause_cut_s == 0
    with pytest.raises(ConfigError, match="PAUSE_CUT_MS"):
        load_settings({**env, "PAUSE_CUT_MS": "-5"}, require_livekit=False)


# -- the pause detector on synthetic frames ------------------------------------------------------------


def frames(audio: np.ndarray, rate: int, frame_ms: int) -> list[rtc.AudioFrame]:
    step = rate * frame_ms // 1000
    return [
        rtc.AudioFrame(audio[i : i + step].tobytes(), rate, 1, step)
        for i in range(0, len(audio) - step + 1, step)
    ]


def due_after(detector: PauseDetector, audio: np.ndarray, rate: int, frame_ms: int) -> list[float]:
    """The audio times (s) at which a cut was due, cutting each time."""
    out = []
    for frame in frames(audio, rate, frame_ms):
        detector.hear(frame)
        if detector.cut_due():
            out.append(round(detector.timeline, 3))
            detector.cut()
    return out


FORMATS = [(16000, 20), (48000, 10), (48000, 20), (16000, 10)]


@pytest.mark.parametrize(("rate", "frame_ms"), FORMATS)
def test_detector_cuts_once_per_pause_after_enough_speech(rate: int, frame_ms: int):
    audio = np.concatenate(
        [quiet(0.2, rate), tone(1.2, rate=rate), quiet(0.5, rate), tone(1.0, rate=rate), quiet(0.5, rate)]
    )
    detector = PauseDetector(PausePolicy(pause_s=0.12))
    # after 1.2 s of speech: 120 ms into the pause; after 1.0 s: likewise; never twice in one pause
    assert due_after(detector, audio, rate, frame_ms) == pytest.approx([1.52, 3.02])


@pytest.mark.parametrize(("rate", "frame_ms"), FORMATS)
def test_detector_waits_for_the_longer_pause_after_little_speech(rate: int, frame_ms: int):
    audio = np.concatenate([tone(0.4, rate=rate), quiet(0.16, rate), tone(0.3, rate=rate), quiet(0.4, rate)])
    detector = PauseDetector(PausePolicy(pause_s=0.12))
    # 0.4 s then 160 ms: no cut; the whole 0.86 s fragment ends at the longer pause (200 ms)
    assert due_after(detector, audio, rate, frame_ms) == pytest.approx([0.86 + LONG_PAUSE_S])


def test_detector_breaths_and_clicks_do_not_cut():
    click = tone(0.02)
    audio = np.concatenate([quiet(0.3), click, quiet(0.5), tone(1.5), quiet(0.1), tone(0.5), quiet(0.1)])
    detector = PauseDetector(PausePolicy(pause_s=0.12))
    assert due_after(detector, audio, RATE, 20) == []  # a lone click is no speech; 100 ms is a breath
    assert detector.speech_s == pytest.approx(1.5 + 0.1 + 0.5)  # the click was forgotten


def test_detector_word_gaps():
    detector = PauseDetector(PausePolicy(pause_s=0.12))
    assert not detector.at_word_gap()
    for frame in frames(np.concatenate([quiet(0.1), tone(0.3), tone(0.02, amplitude=0.1)]), RATE, 20):
        detector.hear(frame)
    assert not detector.at_word_gap()  # 10 dB under the speech's level: a softer sound of the word
    detector.hear(frames(tone(0.02, amplitude=0.03), RATE, 20)[0])
    assert detector.at_word_gap()  # 20 dB under it, voiced still: a dip between words (DIP_DB)
    detector = PauseDetector(PausePolicy(pause_s=0.12))
    for frame in frames(np.concatenate([quiet(0.1), tone(0.3), quiet(0.02)]), RATE, 20):
        detector.hear(frame)
    assert detector.at_word_gap() and not detector.cut_due()  # silence: between words, not a pause
    detector.cut()
    assert not detector.at_word_gap()  # nothing said since the cut


def test_detector_fixed_gate_is_about_minus_40_dbfs():
    """The fixed gate (the cloner's; the pause detector's in a quiet room; in noise: `test_noise.py`)."""
    assert is_voiced(tone(0.02, amplitude=0.05))
    assert not is_voiced(tone(0.02, amplitude=0.01))  # rms 0.007: -43 dBFS
    assert not is_voiced(quiet(0.02))


def test_detector_pause_longer_than_the_long_pause_and_off():
    assert PausePolicy.of(0) is None
    policy = PausePolicy(pause_s=0.3)
    assert policy.any_segment_after_s == 0.3  # the longer pause is never shorter than the short one
    detector = PauseDetector(policy)
    audio = np.concatenate([tone(MIN_SPEECH_S + 0.2), quiet(0.5)])
    assert due_after(detector, audio, RATE, 20) == pytest.approx([MIN_SPEECH_S + 0.2 + 0.3])
