"""A dropout kept from the STT (issue 22): what the voice gate calls a gap, how long one may last for what
is known of the room, the splice that holds a gap's frames back, and the stream times mapped back over it."""

from __future__ import annotations

import numpy as np
import pytest
from livekit import rtc

from agent.loops.ears.dropouts import DropoutSplice
from agent.loops.ears.stt_link import StreamTimes
from agent.loops.ears.voicing import MAX_DROPOUT_S, SHORT_DROPOUT_S, VoiceGate, Voicing
from agent.run.filemode import read_wav
from tests.noise import HUM, RATE

FRAME_S = 0.02


def hum(seconds: float) -> np.ndarray:
    """A quiet room: the hall's hum at about -55 dBFS."""
    samples = read_wav(HUM).samples
    return (np.resize(samples, round(seconds * RATE)) * 0.05).astype(np.int16)


def voice(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.2 * 32767 * np.sin(2 * np.pi * 200 * t)).astype(np.int16)


def zeros(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.int16)


def verdicts(gate: VoiceGate, samples: np.ndarray) -> list[Voicing]:
    step = round(FRAME_S * RATE)
    return [gate.hear(samples[i : i + step], FRAME_S) for i in range(0, len(samples) - step + 1, step)]


def runs(seq: list[Voicing]) -> list[tuple[Voicing, int]]:
    out: list[tuple[Voicing, int]] = []
    for v in seq:
        if out and out[-1][0] is v:
            out[-1] = (v, out[-1][1] + 1)
        else:
            out.append((v, 1))
    return out


def test_in_a_room_heard_between_words_a_gap_lasts_up_to_a_dropout_then_is_silence():
    gate = VoiceGate()
    verdicts(gate, np.concatenate([hum(1.0), voice(1.0), hum(0.5), voice(0.5)]))
    assert gate.room is True
    heard = verdicts(gate, np.concatenate([zeros(0.2), voice(0.2)]))
    assert runs(heard)[0] == (Voicing.GAP, 10)  # 200 ms of a dropout, then the voice again
    heard = verdicts(gate, zeros(MAX_DROPOUT_S + 0.2))
    gaps = round(MAX_DROPOUT_S / FRAME_S) - 1
    assert runs(heard) == [(Voicing.GAP, gaps), (Voicing.SILENCE, 1), (Voicing.QUIET, 10)]
    assert gate.room is False  # it falls silent: from now on zeros are its quiet, not a gap
    assert set(verdicts(gate, np.concatenate([voice(0.5), zeros(0.1)]))) == {Voicing.VOICED, Voicing.QUIET}


def test_a_room_heard_silent_between_words_has_no_gaps():
    gate = VoiceGate()
    heard = verdicts(gate, np.concatenate([zeros(0.5), voice(3.5), zeros(0.3), voice(1.0)]))
    assert gate.room is False and Voicing.GAP not in heard


def test_before_the_room_is_heard_a_steady_voices_floor_allows_only_a_short_gap():
    """Speech from the first frame, three seconds with no pause: its floor is high (capped at -28 dBFS) but
    says little of the room, so digital silence after it is a gap only as long as a lost burst."""
    gate = VoiceGate()
    verdicts(gate, voice(3.0))
    assert gate.room is None
    heard = verdicts(gate, zeros(0.5))
    assert runs(heard)[:2] == [(Voicing.GAP, round(SHORT_DROPOUT_S / FRAME_S) - 1), (Voicing.SILENCE, 1)]


def frame(seconds: float = FRAME_S) -> rtc.AudioFrame:
    n = round(seconds * RATE)
    return rtc.AudioFrame(bytes(2 * n), RATE, 1, n)


def test_the_splice_holds_a_gap_and_drops_it_when_sound_comes_back():
    splice, spoken, lost = DropoutSplice(), frame(), frame()
    assert splice.hear(spoken, Voicing.VOICED).frames == [spoken]
    assert [splice.hear(lost, Voicing.GAP).frames for _ in range(3)] == [[], [], []]
    back = splice.hear(spoken, Voicing.VOICED)
    assert back.frames == [spoken] and back.skipped_s == pytest.approx(3 * FRAME_S)
    assert (splice.spliced, splice.spliced_s) == (1, pytest.approx(0.06))


def test_the_splice_sends_a_gap_that_turned_out_to_be_silence():
    splice, lost, end = DropoutSplice(), frame(), frame()
    for _ in range(3):
        splice.hear(lost, Voicing.GAP)
    passed = splice.hear(end, Voicing.SILENCE)
    assert passed.frames == [lost, lost, lost, end] and passed.skipped_s == 0
    assert splice.spliced == 0


def test_stream_times_after_a_splice_fall_where_the_speech_came_back():
    times = StreamTimes(origin=10.0)
    for _ in range(50):
        times.sent(frame())  # 1 s heard
    times.skipped(0.7)  # a dropout spliced out here
    for _ in range(50):
        times.sent(frame())
    times.skipped(0.3)
    assert times.to_timeline(0.5) == pytest.approx(10.5)
    assert times.to_timeline(1.0) == pytest.approx(11.7)  # the word after the splice starts after the gap
    assert times.to_timeline(1.5) == pytest.approx(12.2)
    assert times.to_timeline(2.5) == pytest.approx(13.5)
