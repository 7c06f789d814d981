"""The benchmark's per-sentence lag math (`bench/lag/lags.py`) on hand-made inputs, the synthetic speech's
sentence boundaries (`bench/harness/speech.py`), the goals (`bench/lag/goals.py`) and the `today`
profile."""

from __future__ import annotations

import itertools
import random

import pytest

from agent.settings.config import load_settings
from agent.telemetry.latency import Mark, UtteranceRecord
from bench.harness.speech import (
    dialogue,
    dialogue_timeline,
    monologue,
    monologue_timeline,
    short_turns_timeline,
)
from bench.lag.goals import TODAY, evaluate_goals, profile_env
from bench.lag.lags import (
    Heard,
    Sentence,
    first_audio,
    growth,
    heard_at,
    order_breaks,
    overlaps,
    sentence_lags,
    translations,
)

T0 = 100.0  # the clock time at which the speaker's audio timeline starts


def record(rid: str, outcome: str = "spoken", **marks: float) -> UtteranceRecord:
    r = UtteranceRecord(rid, {Mark(name): at for name, at in marks.items()})
    r.outcome = outcome
    return r


def played(rid: str, start: float, end: float) -> UtteranceRecord:
    return record(rid, playout_start=start, playout_end=end)


# -- translations: records + source captions -> what was heard, and what was not ------------------


def test_translations_pair_each_record_with_its_source_caption() -> None:
    spans = {"s-0": (0.5, 1.5), "s-1": (3.0, 4.0)}
    out = translations([played("s-0-es", 102.0, 103.0), played("s-1-es", 105.0, 106.5)], spans)
    assert out.heard == [
        Heard(("s-0-es",), 0.5, 1.5, 102.0, 103.0),
        Heard(("s-1-es",), 3.0, 4.0, 105.0, 106.5),
    ]
    assert out.unheard == [] and out.merged == 0


def test_folded_utterances_are_one_translation_over_their_joint_span_and_counted_merged() -> None:
    # the queue folded s-2 and s-3 into s-1: the mouth marks all three with the same playout times
    spans = {"s-1": (1.0, 2.0), "s-2": (2.5, 3.0), "s-3": (3.2, 4.0)}
    records = [played("s-1-es", 110.0, 114.0), played("s-2-es", 110.0, 114.0), played("s-3-es", 110.0, 114.0)]
    out = translations(records, spans)
    assert out.heard == [Heard(("s-1-es", "s-2-es", "s-3-es"), 1.0, 4.0, 110.0, 114.0)]
    assert out.merged == 2


def test_failed_captioned_open_and_uncaptioned_records_are_counted_never_skipped() -> None:
    spans = {"s-0": (0.0, 1.0), "s-1": (2.0, 3.0), "s-2": (4.0, 5.0)}
    records = [
        record("s-0-es", "failed"),
        record("s-1-es", "captioned"),
        played("s-2-es", 106.0, 107.0),
        played("s-9-es", 108.0, 109.0),  # no source caption with a span: cannot be placed
    ]
    out = translations(records, spans, open_records=2)
    assert [(u.record_id, u.reason) for u in out.unheard] == [
        ("s-0-es", "failed"),
        ("s-1-es", "captioned"),
        ("s-9-es", "no_caption"),
    ]
    assert out.open == 2
    assert [h.record_ids for h in out.heard] == [("s-2-es",)]


def test_a_spoken_record_without_playout_marks_is_unheard() -> None:
    out = translations([record("s-0-es", first_frame=101.0)], {"s-0": (0.0, 1.0)})
    assert [(u.record_id, u.reason) for u in out.unheard] == [("s-0-es", "no_playout")]


# -- heard(t): interpolation inside the translation holding t ------------------------------------------


def test_heard_at_maps_the_source_span_linearly_onto_the_heard_span() -> None:
    heard = [Heard(("a",), 1.0, 3.0, 104.0, 106.5)]  # 2 s of speech heard as 2.5 s
    assert heard_at(1.0, heard, end=False) == pytest.approx(104.0)
    assert heard_at(2.0, heard, end=False) == pytest.approx(105.25)
    assert heard_at(3.0, heard, end=True) == pytest.approx(106.5)


def test_heard_at_takes_the_translation_holding_the_point_at_a_cut() -> None:
    # a cut at 2.0 s: the sentence starting there is in the second, one ending there in the first
    heard = [Heard(("a",), 1.0, 2.0, 104.0, 105.0), Heard(("b",), 2.0, 3.0, 105.0, 106.0)]
    assert heard_at(2.0, heard, end=False) == pytest.approx(105.0)  # b's start
    assert heard_at(2.0, heard, end=True) == pytest.approx(105.0)  # a's end
    heard = [Heard(("a",), 1.0, 2.0, 104.0, 105.0), Heard(("b",), 2.0, 3.0, 106.0, 107.0)]
    assert heard_at(2.0, heard, end=False) == pytest.approx(106.0)
    assert heard_at(2.0, heard, end=True) == pytest.approx(105.0)


def test_heard_at_clamps_a_point_just_outside_a_span_within_the_tolerance() -> None:
    heard = [Heard(("a",), 1.01, 2.0, 104.0, 105.0)]  # the STT's span starts a VAD window late
    assert heard_at(1.0, heard, end=False, tolerance=0.05) == pytest.approx(104.0)
    assert heard_at(2.03, heard, end=True, tolerance=0.05) == pytest.approx(105.0)
    assert heard_at(0.9, heard, end=False, tolerance=0.05) is None  # nothing holds it: unheard
    assert heard_at(2.5, heard, end=True, tolerance=0.05) is None


def test_heard_at_a_zero_length_span_is_its_start_for_a_start_and_its_end_for_an_end() -> None:
    heard = [Heard(("a",), 2.0, 2.0, 104.0, 104.6)]
    assert heard_at(2.0, heard, end=False) == pytest.approx(104.0)
    assert heard_at(2.0, heard, end=True) == pytest.approx(104.6)


# -- sentence lags ------------------------------------------------------------------------------------


def test_sentence_lags_one_utterance_per_sentence() -> None:
    # a 2 s sentence at 1..3 s on the audio timeline, spoken at clock 101..103, heard 103.8..106.0
    heard = [Heard(("a",), 1.0, 3.0, 103.8, 106.0)]
    (lag,) = sentence_lags([Sentence(1.0, 3.0)], heard, audio_t0=T0)
    assert lag.start_lag == pytest.approx(2.8)
    assert lag.end_lag == pytest.approx(3.0)


def test_an_utterance_holding_one_sentences_end_and_the_next_ones_start() -> None:
    # one utterance 0..4 s holds sentence A (0..2.5) end and sentence B (2.6..6) start;
    # a second utterance 4..6 s holds B's end
    heard = [Heard(("u1",), 0.0, 4.0, 105.0, 109.0), Heard(("u2",), 4.0, 6.0, 109.5, 111.5)]
    a, b = sentence_lags([Sentence(0.0, 2.5), Sentence(2.6, 6.0)], heard, audio_t0=T0)
    assert a.start_lag == pytest.approx(5.0)  # heard at 105.0, said at 100.0
    assert a.end_lag == pytest.approx(107.5 - 102.5)
    assert b.start_lag == pytest.approx(107.6 - 102.6)
    assert b.end_lag == pytest.approx(111.5 - 106.0)


def test_a_sentence_whose_words_were_not_heard_has_no_lag_and_is_counted() -> None:
    heard = [Heard(("a",), 1.0, 2.0, 103.0, 104.0)]  # the utterance at 4..5 s failed
    lags = sentence_lags([Sentence(1.0, 2.0), Sentence(4.0, 5.0)], heard, audio_t0=T0)
    assert lags[1].start_lag is None and lags[1].end_lag is None
    assert not lags[1].heard and lags[0].heard


def test_first_audio_is_the_turns_speech_end_to_its_earliest_translated_audio() -> None:
    # turn 1 cut in two (1.0..2.0, 2.0..2.6), heard from 102.3; turn 2 heard from 106.5; turn 3 never
    heard = [
        Heard(("a",), 1.0, 2.0, 102.3, 103.0),
        Heard(("b",), 2.0, 2.6, 103.0, 103.5),
        Heard(("c",), 5.0, 6.0, 106.5, 107.5),
    ]
    turns = [Sentence(1.0, 2.6), Sentence(5.0, 6.0), Sentence(9.0, 9.5)]
    assert first_audio(turns, heard, audio_t0=T0) == [pytest.approx(-0.3), pytest.approx(0.5), None]


# -- overlap, order, growth ---------------------------------------------------------------------------


def test_overlaps_finds_a_translation_heard_before_the_previous_one_ended() -> None:
    heard = [
        Heard(("a",), 0.0, 1.0, 102.0, 103.0),
        Heard(("b",), 2.0, 3.0, 103.0, 104.0),  # back to back: fine
        Heard(("c",), 4.0, 5.0, 103.8, 105.0),  # 0.2 s over b
    ]
    assert overlaps(heard) == [pytest.approx(0.2)]
    assert overlaps(heard[:2]) == []
    assert overlaps([heard[0], Heard(("b",), 2.0, 3.0, 102.998, 104.0)], tolerance=0.005) == []


def test_order_breaks_counts_translations_heard_out_of_the_speakers_order() -> None:
    in_order = [Heard(("a",), 0.0, 1.0, 102.0, 103.0), Heard(("b",), 2.0, 3.0, 103.0, 104.0)]
    assert order_breaks(in_order) == 0
    swapped = [Heard(("a",), 0.0, 1.0, 104.0, 105.0), Heard(("b",), 2.0, 3.0, 102.0, 103.0)]
    assert order_breaks(swapped) == 1


def test_growth_is_the_slope_per_minute_and_first_against_last_minute() -> None:
    # one sentence every 10 s for 5 minutes; the start lag grows by 0.1 s a minute, the end lag stays
    sentences = [Sentence(t, t + 5.0) for t in range(0, 300, 10)]
    lags = sentence_lags(
        sentences,
        [
            Heard((f"{s.start}",), s.start, s.end, T0 + s.start + 1.0 + s.start / 600, T0 + s.end + 1.5)
            for s in sentences
        ],
        audio_t0=T0,
    )
    g = growth(lags, minutes=5.0)
    assert g.start_slope_s_per_min == pytest.approx(0.1)
    assert g.end_slope_s_per_min == pytest.approx(0.0, abs=1e-9)
    assert g.first_minute["start_p50_s"] == pytest.approx(1.0 + 25 / 600)
    assert g.last_minute["start_p50_s"] == pytest.approx(1.0 + 265 / 600)
    assert g.first_minute["end_p50_s"] == g.last_minute["end_p50_s"] == pytest.approx(1.5)


# -- the goals ----------------------------------------------------------------------------------------


def clean(**figures: float | None) -> dict[str, object]:
    base: dict[str, object] = {"unheard_sentences": 0, "failed": 0, "captioned": 0, "open": 0}
    return base | {"overlaps": 0, "order_breaks": 0} | figures


def test_goals_dialogue_end_lag() -> None:
    met = evaluate_goals("dialogue", clean(end_p50_s=0.8, end_p95_s=1.2))
    assert all(ok for _, ok in met.items())
    missed = evaluate_goals("dialogue", clean(end_p50_s=0.8, end_p95_s=1.31))
    assert [name for name, ok in missed.items() if not ok] == ["end p95 ≤ 1.3 s"]


def test_goals_fail_when_anything_was_dropped_overlapped_or_reordered() -> None:
    for fault in ("unheard_sentences", "failed", "captioned", "open", "overlaps", "order_breaks"):
        figures = clean(first_p95_s=0.3) | {fault: 1}
        assert not all(evaluate_goals("short", figures).values()), fault


def test_goals_growth_needs_a_flat_lag() -> None:
    flat = clean(start_p95_s=1.5, end_p95_s=1.8, start_slope_s_per_min=0.01, end_slope_s_per_min=-0.02)
    assert all(evaluate_goals("growth", flat).values())
    growing = flat | {"end_slope_s_per_min": 0.2}
    assert [n for n, ok in evaluate_goals("growth", growing).items() if not ok] == [
        "end lag growth ≤ 0.05 s/min"
    ]


def test_goals_with_a_missing_figure_are_not_met() -> None:
    assert not all(evaluate_goals("monologue", clean(start_p95_s=1.0, end_p95_s=None)).values())


# -- the synthetic speech keeps its sentences ---------------------------------------------------------


def test_dialogue_turns_are_sentences_and_the_old_generator_is_unchanged() -> None:
    timeline = dialogue_timeline(12, random.Random(7))
    pcm, segments = dialogue(12, random.Random(7))
    assert [(s, s + d) for s, d in segments] == [(s.start, s.end) for s in timeline.sentences]
    assert timeline.turns == timeline.sentences
    assert pcm.duration == pytest.approx(timeline.total_s + 1.0)  # render pads one second


def test_monologue_sentences_are_phrases_joined_by_breaths_ended_by_a_longer_pause() -> None:
    timeline = monologue_timeline(2.0, random.Random(7))
    _pcm, segments = monologue(2.0, random.Random(7))
    assert [(s, d) for s, d in segments] == timeline.voiced  # the old generator's speech, unchanged
    assert len(timeline.sentences) == -(-len(timeline.voiced) // 3)
    for sentence, following in zip(timeline.sentences, timeline.sentences[1:], strict=False):
        assert following.start - sentence.end == pytest.approx(0.45)  # the sentence pause
    starts = {s for s, _ in timeline.voiced}
    ends = {round(s + d, 9) for s, d in timeline.voiced}
    for sentence in timeline.sentences:
        assert sentence.start in starts and round(sentence.end, 9) in ends
        inside = [(s, d) for s, d in timeline.voiced if sentence.start <= s < sentence.end]
        gaps = [b[0] - (a[0] + a[1]) for a, b in itertools.pairwise(inside)]
        assert all(0.08 <= g <= 0.2 for g in gaps)  # breaths, shorter than the STT's endpointing


def test_short_turns_are_a_few_words_then_silence() -> None:
    timeline = short_turns_timeline(30, random.Random(7))
    assert len(timeline.turns) == 30 and timeline.turns == timeline.sentences
    for turn, following in zip(timeline.turns, timeline.turns[1:], strict=False):
        assert 0.4 <= turn.end - turn.start <= 1.2
        assert 1.5 <= following.start - turn.end <= 2.5


# -- the `today` profile works on any branch ------------------------------------------------------------


def test_the_today_profile_loads_and_sets_todays_segment_cut() -> None:
    keys = {k: "k" for k in ("DEEPGRAM_API_KEY", "CEREBRAS_API_KEY", "GROQ_API_KEY", "CARTESIA_API_KEY")}
    env = profile_env("today", {"STT_ENDPOINTING_MS": "300"})
    assert env == {"STT_ENDPOINTING_MS": "300", **TODAY}
    settings = load_settings(keys | env, require_livekit=False)  # unknown variables are ignored
    assert settings.max_segment_s == 1.0
    # `new` is the defaults; a --set applies to both, but never overrides today's behaviour
    assert profile_env("new", {"STT_MAX_SEGMENT_S": "2.0"}) == {"STT_MAX_SEGMENT_S": "2.0"}
    assert profile_env("today", {"STT_MAX_SEGMENT_S": "2.0"})["STT_MAX_SEGMENT_S"] == "1.0"


# -- one session's figures, from the tracker and the captions as a run leaves them ----------------------


def test_measure_joins_captions_and_records_and_counts_what_was_not_heard() -> None:
    from agent.loops.captions import Caption, CaptionLog
    from agent.telemetry.latency import LatencyTracker
    from bench.harness.session import SessionRun
    from bench.harness.speech import Timeline
    from bench.lag.workload import Workload, measure

    now = [0.0]
    tracker = LatencyTracker(clock=lambda: now[0])
    captions = CaptionLog()
    for n, (start, end) in enumerate([(0.5, 1.5), (3.0, 4.0), (6.0, 7.0)]):
        captions.publish(Caption(f"d-{n}", "d", "en", "0001 word.", True, False, start, end))
    # turn 0 heard 0.8 s after it ended; turn 1 failed (no translation); turn 2 still in flight at the end
    tracker.mark(["d-0-es"], Mark.SPEECH_END, at=T0 + 1.5)
    tracker.mark(["d-0-es"], Mark.PLAYOUT_START, at=T0 + 2.3)
    tracker.mark(["d-0-es"], Mark.PLAYOUT_END, at=T0 + 3.4)
    tracker.complete(["d-0-es"], spoken=True)
    tracker.mark(["d-1-es"], Mark.SPEECH_END, at=T0 + 4.0)
    tracker.complete(["d-1-es"], spoken=False)
    tracker.mark(["d-2-es"], Mark.SPEECH_END, at=T0 + 7.0)
    turns = [Sentence(0.5, 1.5), Sentence(3.0, 4.0), Sentence(6.0, 7.0)]
    voiced = [(0.5, 1.0), (3.0, 1.0), (6.0, 1.0)]
    workload = Workload("short", "short", Timeline(voiced, turns, turns, 9.0), 1.1, ("new",), True)

    f = measure(workload, SessionRun(tracker, captions, T0, audio_t0=T0))

    assert f["first_p50_s"] == pytest.approx(0.8)
    assert f["start_p50_s"] == pytest.approx(1.8) and f["end_p50_s"] == pytest.approx(1.9)
    assert (f["sentences"], f["unheard_sentences"], f["turns_without_audio"]) == (3, 2, 2)
    assert (f["failed"], f["open"], f["utterances"], f["translations_heard"]) == (1, 1, 3, 1)
    assert f["speech_end_offset_s"]["max"] == pytest.approx(0.0)
    assert f["goals"]["nothing dropped"] is False
    # the cuts, from the captions' spans against the script: one piece a turn, each ending with its phrase
    assert (f["cuts"], f["mid_clause_cuts"], f["mid_clause_share"]) == (3, 0, 0.0)
    assert f["pieces_per_sentence_p50"] == 1 and f["words_per_piece_p50"] == pytest.approx(2.5)
