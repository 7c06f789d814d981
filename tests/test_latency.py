import math

import pytest

from agent.telemetry.latency import LatencyTracker, Mark, format_table, percentile


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_percentile_interpolates_like_numpy():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))


def test_stage_spans_and_end_to_end_from_marks():
    clock = FakeClock()
    tracker = LatencyTracker(clock)
    for i in range(10):
        uid = f"u{i}"
        tracker.mark([uid], Mark.SPEECH_END, at=clock.now)
        clock.now += 0.1
        tracker.mark([uid], Mark.TRANSCRIPT_FINAL)
        clock.now += 0.2 + i * 0.01
        tracker.mark([uid], Mark.LLM_FIRST_TOKEN)
        tracker.mark([uid], Mark.LLM_FIRST_TOKEN, at=clock.now + 5)  # later marks do not overwrite
        clock.now += 0.05
        tracker.mark([uid], Mark.FIRST_CLAUSE)
        clock.now += 0.1
        tracker.mark([uid], Mark.TTS_FIRST_AUDIO)
        clock.now += 0.01
        tracker.mark([uid], Mark.FIRST_FRAME)
        tracker.complete([uid], spoken=True)
    s = tracker.summary()
    assert s["stt_finalize"].p50 == pytest.approx(0.1)
    assert s["llm_first_token"].p50 == pytest.approx(0.245)
    assert s["end_to_end"].count == 10
    assert s["end_to_end"].p50 == pytest.approx(0.1 + 0.245 + 0.05 + 0.1 + 0.01)
    assert s["end_to_end"].max == pytest.approx(0.1 + 0.29 + 0.16)
    assert tracker.open_count == 0 and tracker.spoken == 10
    assert "end_to_end" in format_table(tracker.summary_ms())


def test_failed_utterances_are_counted_apart_and_memory_is_bounded():
    clock = FakeClock()
    tracker = LatencyTracker(clock, window=5, keep_records=3)
    for i in range(20):
        tracker.mark([f"u{i}"], Mark.SPEECH_END)
        clock.now += 1
        tracker.mark([f"u{i}"], Mark.FIRST_FRAME)
        tracker.complete([f"u{i}"], spoken=i % 2 == 0)
    assert tracker.spoken == 10 and tracker.failed == 10
    assert tracker.summary()["end_to_end"].count == 5
    assert len(tracker.completed) == 3
    assert [r.outcome for r in tracker.completed] == ["failed", "spoken", "failed"]


def test_abandoned_records_are_closed_as_failed():
    tracker = LatencyTracker()
    for uid in ("a-0-es", "a-1-es", "a-0-fr"):
        tracker.mark([uid], Mark.SPEECH_END, at=0.0)
    assert tracker.abandon("-es") == 2
    assert tracker.open_count == 1 and tracker.failed == 2
