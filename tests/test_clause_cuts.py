"""Clause cuts (CLAUSE_CUTS): long speech is cut where a clause ends (the freshest transcript's clause mark,
the speaker silent since its last word; or a pause) before the timer takes any gap between words. The
segment cutter on 20 ms frames, told what the STT heard as the ears tell it."""

from __future__ import annotations

import numpy as np
import pytest
from livekit import rtc

from agent.language.text import ends_clause
from agent.loops.ears.segment_cutter import SegmentCutter

RATE = 16000
FRAME = 320  # 20 ms


def frame(voiced: bool) -> rtc.AudioFrame:
    t = np.arange(FRAME) / RATE
    samples = 0.3 * np.sin(2 * np.pi * 220 * t) if voiced else np.zeros(FRAME)
    data = (samples * 32767).astype(np.int16)
    return rtc.AudioFrame(data.tobytes(), RATE, 1, FRAME)


class Cuts:
    """A cutter with a 2 s timer, fed frames; counts the cuts it asks for."""

    def __init__(self, *, clause_cuts: bool, turn_based: bool = False) -> None:
        pause_cut_s = 0.0 if turn_based else 0.12
        self.cutter = SegmentCutter(
            speaker="ann",
            max_segment_s=2.0,
            pause_cut_s=pause_cut_s,
            clause_cuts=clause_cuts,
            turn_based=turn_based,
        )
        self.timeline = 0.0
        self.cuts: list[float] = []
        self.cutter.speech_started(0.2)

    def speak(self, seconds: float, voiced: bool = True) -> None:
        for _ in range(round(seconds / 0.02)):
            self.cutter.hear(frame(voiced))
            self.timeline += 0.02
            self.cutter.check(self.timeline, lambda: self.cuts.append(round(self.timeline, 2)))


def test_what_ends_a_clause() -> None:
    assert ends_clause("I would like to thank Maria,") and ends_clause("Done.") and ends_clause("日本語、")
    assert not ends_clause("I would like to") and not ends_clause("Mr.")


def test_a_clause_mark_then_silence_is_cut_before_the_timer_would() -> None:
    on, off = Cuts(clause_cuts=True), Cuts(clause_cuts=False)
    for cuts in (on, off):
        cuts.speak(1.2)
        cuts.cutter.words(0.0, 1.18, "I would like to thank Maria,")
        cuts.speak(0.08, voiced=False)  # a short gap: shorter than the 120 ms pause cut
    assert on.cuts == [1.26], "cut 60 ms into the gap after the comma"
    assert off.cuts == [], "without clause cuts, not before 0.7 of the timer's span at a word gap"


def test_no_clause_cut_without_a_mark_or_once_the_speaker_went_on() -> None:
    plain, went_on = Cuts(clause_cuts=True), Cuts(clause_cuts=True)
    plain.speak(1.2)
    plain.cutter.words(0.0, 1.18, "I would like to thank Maria")
    plain.speak(0.08, voiced=False)
    went_on.speak(1.2)
    went_on.cutter.words(0.0, 0.9, "I would like to thank,")  # the comma came 0.3 s ago: words since
    went_on.speak(0.08, voiced=False)
    assert plain.cuts == [] and went_on.cuts == []


@pytest.mark.parametrize("clause_cuts", [True, False])
def test_the_timer_still_cuts_speech_with_no_clause_end(clause_cuts: bool) -> None:
    cuts = Cuts(clause_cuts=clause_cuts)
    cuts.speak(4.0)
    # no gap at all: the hard cut, 1.3 of the span (+ the clause wait with clause cuts)
    assert cuts.cuts and cuts.cuts[0] == pytest.approx((1.8 if clause_cuts else 1.3) * 2.0, abs=0.03)


def test_a_turn_based_piece_is_cut_at_the_freshest_clause_mark_without_waiting_for_silence() -> None:
    cuts = Cuts(clause_cuts=True, turn_based=True)
    cuts.speak(1.2)
    cuts.cutter.words(0.2, 1.1, "I would like to thank Maria,")  # an update's words: the piece's
    cuts.speak(0.02)
    assert cuts.cuts == [1.22]


def test_a_turn_based_timer_waits_for_the_end_of_turn_once_the_speaker_stopped() -> None:
    """Flux: a timer cut in the pause before its end of turn would only move the turn's last words out of
    the end of turn (and throw away the draft begun on its eager one): the timer holds off in silence, but
    not in speech, and a clause mark is still cut at."""
    stopped, speaking, marked = (Cuts(clause_cuts=True, turn_based=True) for _ in range(3))
    stopped.speak(1.8)
    stopped.speak(1.5, voiced=False)  # the timer (2.0 s + the clause wait: 3.0 s) falls in the pause
    speaking.speak(3.1)
    marked.speak(1.8)
    marked.speak(0.2, voiced=False)
    marked.cutter.words(0.2, 1.8, "I would like to thank Maria,")  # an update in the pause
    marked.speak(0.02, voiced=False)
    assert stopped.cuts == [] and speaking.cuts == [3.0] and marked.cuts == [2.02]
