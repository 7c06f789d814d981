"""`python -m bench relay`'s audio measures (`bench/relay.py`) on hand-made signals, and its command line."""

from __future__ import annotations

import numpy as np
import pytest

from bench.relay import inner_gaps, main, windows

RATE = 16000


def audio(*parts: tuple[str, float]) -> np.ndarray:
    """("tone" or "silence", seconds)… as int16."""
    out = []
    for kind, seconds in parts:
        t = np.arange(int(RATE * seconds)) / RATE
        out.append(np.sin(2 * np.pi * 440 * t) * 8000 if kind == "tone" else np.zeros(len(t)))
    return np.concatenate(out).astype(np.int16)


def test_a_gap_is_a_silent_run_of_60_ms_or_more_inside_the_speech() -> None:
    speech = windows(audio(("silence", 0.5), ("tone", 0.2), ("silence", 0.07), ("tone", 0.2)), RATE)
    assert speech.sum() == 40 and inner_gaps(speech) == 1  # the leading silence is not a gap
    short = windows(audio(("tone", 0.2), ("silence", 0.05), ("tone", 0.2), ("silence", 1.0)), RATE)
    assert inner_gaps(short) == 0  # 50 ms: a codec's smear, not a dropout; the trailing silence neither
    assert inner_gaps(windows(audio(("silence", 0.3)), RATE)) == 0


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--options", "red,fec"], "unknown options ['fec']"),
        (["--loss", "5%"], "--loss: percentages separated by commas"),
        (["--loss", "5,100"], "--loss: each from 0 to under 100"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert error in capsys.readouterr().err
