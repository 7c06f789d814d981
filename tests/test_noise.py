"""Pauses found in steady noise, and a dropout not read as a pause (issue 22).

The committed speech fixtures with a hall's hum or a room's babble under them (`tests/noise.py`, 20 and 10 dB
below the speech's level), through the pause detector the ears cut with (`PauseDetector`, the default
PAUSE_CUT_MS): the pauses of the clean speech are still found, and no cut splits a word. A dropout inside a
word (packets lost: digital silence, a concealment fading out, or frames that never arrive) does not end the
segment. The figures (cuts, lateness, CPU per frame) are `python -m bench noise`'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from agent.loops.ears.pauses import PauseDetector, PausePolicy
from agent.loops.ears.voicing import MAX_DROPOUT_S, VoiceGate, Voicing
from agent.run.filemode import read_wav
from agent.settings.config import load_settings
from bench import noise as noise_bench
from tests.conftest import DIALOGUE, MONOLOGUE
from tests.fakes import FakeDeepgram
from tests.fakes.deepgram import numbered_words
from tests.noise import BABBLE, HUM, clean_pauses, cut_times, frames, judge, mid_word, mix, with_dropouts
from tests.test_pause_cut import hear, stt_env

NOISES = {"hum": HUM, "babble": BABBLE}


def speech(wav: Path) -> np.ndarray:
    return read_wav(wav).samples


def test_the_noise_fixtures_are_small_and_steady():
    for path in NOISES.values():
        pcm = read_wav(path)
        assert (pcm.sample_rate, pcm.duration) == (16000, 4.0)
        quarters = np.array_split(pcm.samples.astype(np.float64), 4)
        levels = [10 * np.log10(np.mean(np.square(q))) for q in quarters]
        assert max(levels) - min(levels) < 3.0  # steady: the same level all along


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("snr_db", [20, 10])
def test_the_mix_is_at_the_snr_asked(noise: str, snr_db: int):
    clean = speech(DIALOGUE.wav)
    mixed = mix(clean, read_wav(NOISES[noise]).samples, snr_db)
    lead = slice(0, 8000)  # the dialogue's first 0.5 s is silence: the noise alone
    noise_db = 10 * np.log10(np.mean(np.square(mixed[lead] / 32768.0)))
    speech_db = 10 * np.log10(np.mean(np.square(clean[1000 * 16 : 1800 * 16] / 32768.0)))
    assert speech_db - noise_db == pytest.approx(snr_db, abs=3.0)


def test_in_a_quiet_room_the_cuts_are_as_before():
    """Digital silence between sentences: the gate is the fixed one, the cuts where they always were."""
    assert cut_times(speech(DIALOGUE.wav)) == pytest.approx([2.08, 5.1, 7.64])
    assert cut_times(speech(MONOLOGUE.wav)) == pytest.approx(
        [1.94, 4.04, 6.04, 8.42, 10.22, 12.04, 14.36, 16.32]
    )


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("snr_db", [20, 10])
def test_pauses_between_sentences_are_found_in_steady_noise_and_no_cut_splits_a_word(noise: str, snr_db: int):
    clean = speech(DIALOGUE.wav)
    cuts = cut_times(mix(clean, read_wav(NOISES[noise]).samples, snr_db))
    found, expected, split = judge(clean, cuts)
    assert (found, expected) == (3, 3), cuts  # a cut in each pause between the sentences, and at the end
    assert split == 0, cuts
    for start, _ in clean_pauses(clean):  # the first cut in each pause comes before Deepgram's endpointing
        assert min(c for c in cuts if c >= start) - start < 0.35, cuts


@pytest.mark.parametrize("noise", NOISES)
def test_a_longer_talk_in_noise_20_db_below_is_cut_at_each_of_its_pauses(noise: str):
    clean = speech(MONOLOGUE.wav)
    cuts = cut_times(mix(clean, read_wav(NOISES[noise]).samples, 20))
    assert judge(clean, cuts) == (8, 8, 0), cuts


# -- dropouts --------------------------------------------------------------------------------------------

# inside words of the dialogue, each after more than a second of the sentence's speech (so the short pause
# would cut): (start s, length s)
DROPOUTS = [(1.62, 0.08), (4.02, 0.12), (4.52, 0.2), (7.1, 0.16)]


def test_the_dropouts_fall_inside_words():
    clean = speech(DIALOGUE.wav)
    for start, length in DROPOUTS:
        assert mid_word(clean, start) and mid_word(clean, start + length)


@pytest.mark.parametrize("snr_db", [20, 40], ids=["hum-20dB", "hum-40dB"])
@pytest.mark.parametrize("level", [0, 2], ids=["digital-silence", "concealment"])
def test_a_dropout_inside_a_word_is_not_a_pause(snr_db: int, level: int):
    """The room has a floor (hum 20 dB below the speech, or 40 dB: about -60 dBFS, a quiet room): 80-200 ms
    of zeros (or of +-2, a concealment faded out) inside a word do not end the segment."""
    clean = speech(DIALOGUE.wav)
    mixed = mix(clean, read_wav(HUM).samples, snr_db)
    cuts = cut_times(with_dropouts(mixed, DROPOUTS, level))
    for start, length in DROPOUTS:
        assert not [c for c in cuts if start < c <= start + length + 0.2], (start, cuts)
    assert cuts == cut_times(mixed)  # the cuts of the same speech with nothing lost


@pytest.mark.parametrize("length", [0.5, 0.7])
def test_a_wifi_dropout_of_half_a_second_and_more_is_not_a_pause(length: float):
    clean = speech(DIALOGUE.wav)
    mixed = mix(clean, read_wav(HUM).samples, 20)
    cuts = cut_times(with_dropouts(mixed, [(4.02, length)]))
    assert not [c for c in cuts if 4.02 < c <= 4.02 + length + 0.2], cuts


def test_a_dropout_longer_than_any_is_a_pause():
    """Longer than `MAX_DROPOUT_S`: the speaker's connection is gone, or it was a pause after all."""
    clean = speech(DIALOGUE.wav)
    mixed = mix(clean, read_wav(HUM).samples, 20)
    cuts = cut_times(with_dropouts(mixed, [(4.02, MAX_DROPOUT_S + 0.3)]))
    assert [c for c in cuts if 4.02 < c < 4.02 + MAX_DROPOUT_S + 0.3] == [
        pytest.approx(4.02 + MAX_DROPOUT_S, abs=0.021)
    ]


def test_frames_that_never_arrive_are_not_a_pause():
    """Frames lost outright: the timeline is the audio heard, so a gap in it is no silence."""
    clean = speech(DIALOGUE.wav)
    mixed = mix(clean, read_wav(HUM).samples, 20)
    missing = {
        i for start, length in DROPOUTS for i in range(round(start / 0.02), round((start + length) / 0.02))
    }
    lost_before = [sum(n for start, n in DROPOUTS if start < c) for c in cut_times(mixed)]
    shifted = [c - lost for c, lost in zip(cut_times(mixed), lost_before, strict=True)]
    assert cut_times(mixed, skip=missing) == pytest.approx(shifted, abs=0.021)


def test_in_a_room_with_no_noise_at_all_a_long_dropout_reads_as_a_pause():
    """Synthetic speech with digital silence between its words: nothing tells a dropout from a pause there
    (what a real microphone never gives); 120 ms after a second of speech still ends the segment."""
    clean = speech(DIALOGUE.wav)
    cuts = cut_times(with_dropouts(clean, [(4.52, 0.12)]))
    assert [c for c in cuts if 4.52 < c <= 4.7] == [pytest.approx(4.64, abs=0.021)]


def test_steady_noise_becomes_the_floor_but_a_voice_held_long_does_not():
    """Hum alone is speech to the fixed gate at first, then the floor; a loud held tone stays speech."""
    hum = mix(speech(DIALOGUE.wav), read_wav(HUM).samples, 10)[:8000]  # the first 0.5 s: the hum alone
    held = (0.3 * np.sin(2 * np.pi * 220 * np.arange(5 * 16000) / 16000) * 32767).astype(np.int16)
    for audio, voiced_at_end in ((np.tile(hum, 10), False), (held, True)):
        gate = VoiceGate()
        verdicts = [gate.hear(f, 0.02) for f in audio[: len(audio) // 320 * 320].reshape(-1, 320)]
        assert verdicts[0] is Voicing.VOICED  # the fixed gate: louder than -40 dBFS
        assert {v is Voicing.VOICED for v in verdicts[-100:]} == {voiced_at_end}


def test_the_bench_prints_the_table(capsys: pytest.CaptureFixture[str]):
    noise_bench.main(["--repeat", "1"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:] if line.startswith("| ")]
    assert len(rows) == 2 * 5 * 2  # two speeches, five conditions, two gates
    adaptive = [r for r in rows if r[2] == "adaptive"]
    assert all(r[3] in ("3/3", "8/8") for r in adaptive)  # every pause found, in every condition


def test_the_long_speech_timer_does_not_take_a_dropout_for_a_gap_between_words():
    clean = speech(DIALOGUE.wav)
    mixed = with_dropouts(mix(clean, read_wav(HUM).samples, 20), [(4.02, 0.12)])
    detector = PauseDetector(PausePolicy(pause_s=0.12))
    gaps = []
    for i, frame in enumerate(frames(mixed)):
        detector.hear(frame)
        if 201 <= i < 207:  # the dropout's frames (4.02-4.14 s)
            gaps.append(detector.at_word_gap())
    assert gaps == [False] * 6


@pytest.mark.parametrize("snr_db", [20, 10])
async def test_the_ears_end_each_sentence_in_hum_at_its_pause(snr_db: int):
    """The real Deepgram plugin against the fake, the dialogue under hum: the fake's own VAD hears the hum
    as speech and never endpoints, so every final before the end comes from the ears' Finalize at a pause."""
    clean = speech(DIALOGUE.wav)
    run = await hear(
        [mix(clean, read_wav(HUM).samples, snr_db)],
        pause_cut_ms=str(load_settings(stt_env(), require_livekit=False).pause_cut_ms),
        endpointing_ms="300",
        deepgram=FakeDeepgram([], transcript_for=numbered_words()),
    )
    assert run.ears.pause_cuts >= 3  # each sentence's end, maybe the comma of "Good morning, everyone"
    ends = [u.audio_end for u in run.heard]
    assert all(not mid_word(clean, end) for end in ends), ends
    for start, _ in clean_pauses(clean):
        assert any(start <= end <= start + 0.4 for end in ends), (start, ends)


@pytest.mark.parametrize("length", [0.2])
async def test_the_stt_never_hears_a_dropout_inside_a_sentence_and_its_times_stay_true(length: float):
    """The real Deepgram plugin against the fake, the dialogue under hum 20 dB below (a microphone's room),
    `length` of its second sentence lost on the way (digital silence from 4.02 s, shorter than
    MAX_DROPOUT_S). The ears keep the dropout from the STT: the sentence is one final, and its words' times
    still fall where it was said on the speaker's timeline (the STT heard `length` less audio: unmapped,
    its end would be 200 ms early)."""
    clean = speech(DIALOGUE.wav)
    lossy = with_dropouts(mix(clean, read_wav(HUM).samples, 20), [(4.02, length)])
    spliced_before = REGISTRY.get_sample_value("interpreter_dropouts_spliced_total") or 0.0
    run = await hear(
        [lossy],
        pause_cut_ms=str(load_settings(stt_env(), require_livekit=False).pause_cut_ms),
        endpointing_ms="300",
        deepgram=FakeDeepgram([], transcript_for=numbered_words()),
    )
    spans = [(round(u.audio_start, 2), round(u.audio_end, 2)) for u in run.heard]
    second = [(a, b) for a, b in spans if a < 4.02 < b]
    assert len(second) == 1, spans  # one final across the dropout, none ending in it
    start, end = second[0]
    assert 2.9 <= start <= 3.1 and 4.9 <= end <= 5.3, spans  # where the sentence is (2.96-4.97 s)
    assert run.ears.dropouts_spliced == 1
    assert REGISTRY.get_sample_value("interpreter_dropouts_spliced_total") == spliced_before + 1


@pytest.mark.parametrize("noise", ["hum", "babble"])
async def test_the_long_speech_timer_cuts_between_words_in_noise_20_db_below(noise: str):
    """The monologue (long sentences: the timer cuts them, STT_MAX_SEGMENT_S 1.0) through the ears and the
    real Deepgram plugin against the fake: its timer cuts fall where a word ends (a gap, or a dip in the
    speech's level where the noise fills the gap), not inside one. At most 2 of the 14 or so land inside a
    word (energy on both sides of the cut, in the clean speech: a fast
    pair of words has no gap at all); `python -m bench hall` counts them over the whole run."""
    clean = speech(MONOLOGUE.wav)
    run = await hear(
        [mix(clean, read_wav(NOISES[noise]).samples, 20)],
        pause_cut_ms=str(load_settings(stt_env(), require_livekit=False).pause_cut_ms),
        endpointing_ms="300",
        deepgram=FakeDeepgram([], transcript_for=numbered_words()),
        max_segment_s=1.0,
    )
    cuts = [f.finalized_at for f in run.deepgram.finals if f.finalized_at is not None]
    assert run.ears.timer_cuts >= 6, cuts
    inside = [round(c, 2) for c in cuts if mid_word(clean, c)]
    assert len(inside) <= 2, (inside, cuts)
