"""The DTX measure (`tests/dtx.py`, `python -m bench dtx`) on audio made here, no browser: the microphone's
own audio as if received, at any point of its loop; what it makes of a dropout in a pause; its command line.
And what the ears' gate makes of a browser's pauses when it starts hearing mid-sentence (strict xfail)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.loops.ears.voicing import MAX_DROPOUT_S, SHORT_DROPOUT_S
from bench.dtx import main
from tests.dtx import MID_SPEECH, clean_speech, judge_received, loop_offset, microphone, received_pauses
from tests.noise import RATE


def received(floor: str, seconds: float = 20.0, start_s: float = 3.3) -> np.ndarray:
    """`floor`'s microphone looped, as a subscriber would get it from `start_s` into the loop."""
    looped = np.tile(microphone(floor), 4)
    start = round(start_s * RATE)
    return looped[start : start + round(seconds * RATE)]


@pytest.mark.parametrize("start_s", [0.0, 3.3, 7.9])
def test_the_microphones_own_audio_has_every_pause_found_and_quiet(start_s: float) -> None:
    heard = judge_received("hum-30", True, received("hum-30", start_s=start_s))
    figures = heard.figures()
    assert heard.pauses >= 4 and heard.pauses_found == heard.pauses, figures
    assert heard.voicing["quiet"] == len(heard.energies) > 150 and heard.mid_word == 0, figures
    assert -57 < figures["db_median"] < -45, figures  # the hum, 30 dB under the speech's level


def test_a_dropout_in_a_pause_is_counted_as_gap() -> None:
    audio = received("hum-30").copy()
    start, _, _ = received_pauses(audio, clean_speech(), loop_offset(audio, clean_speech()))[-2]
    audio[round((start + 0.2) * RATE) : round((start + 1.5) * RATE)] = 0  # 1.3 s of digital zeros
    heard = judge_received("hum-30", True, audio)
    # a gap until it outlasts a dropout (MAX_DROPOUT_S: the room was heard to have a floor), then silence
    assert heard.voicing["gap"] == round(MAX_DROPOUT_S / 0.02) - 1, heard.figures()


def test_ears_that_start_hearing_mid_sentence_hear_a_browsers_pauses_as_quiet() -> None:
    """A browser that suppresses noise (the page's capture) gives pauses of -75 to -110 dBFS (measured,
    `python -m bench dtx`): digital silence stands for them here. Started mid-sentence, the gate's first
    floor is speech (above -62 dBFS); it used to call every later pause frame GAP (260 of them). Now a gap
    before the room was heard between words lasts at most SHORT_DROPOUT_S, then the room is a silent one."""
    heard = judge_received("digital", True, received("digital"), MID_SPEECH)
    assert heard.voicing["gap"] <= round(SHORT_DROPOUT_S / 0.02), heard.figures()  # the first pause's start
    assert heard.pauses_found == heard.pauses, heard.figures()


def test_digital_silence_is_quiet_not_gap() -> None:
    heard = judge_received("digital", True, received("digital"))
    assert heard.voicing["gap"] == 0 and heard.figures()["db_max"] < -90, heard.figures()


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--floors", "pink-60"], "--floors: unknown floor 'pink-60'"),
        (["--dtx", "maybe"], "--dtx: on, off or on,off"),
        (["--seconds", "5"], "--seconds: at least 12"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert error in capsys.readouterr().err
