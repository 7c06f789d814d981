"""Per-utterance latency records and percentiles of every stage and of the whole trip.

Each utterance gets a record of when it reached each `Mark`; when it completes, the spans between
marks feed bounded windows of samples from which p50/p90/p95/p99 are computed. The clock is passed
in, so the tracker is testable without waiting on real time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

logger = logging.getLogger("agent.latency")

Clock = Callable[[], float]
"""Monotonic seconds. `time.perf_counter` in production; anything in tests."""


def default_clock() -> float:
    return time.perf_counter()


class Mark(StrEnum):
    SPEECH_END = "speech_end"  # the speaker's last word ended (STT word end mapped to the clock)
    TRANSCRIPT_FINAL = "transcript_final"  # the final transcript arrived
    LLM_FIRST_TOKEN = "llm_first_token"  # first translated token
    FIRST_CLAUSE = "first_clause"  # first clause cut and sent to TTS
    TTS_FIRST_AUDIO = "tts_first_audio"  # first synthesized audio
    FIRST_FRAME = "first_frame"  # first frame handed to the AudioSource
    PLAYOUT_START = "playout_start"  # the first frame is heard (after what was queued ahead of it)
    PLAYOUT_END = "playout_end"  # the last frame of the utterance has played


# (name, from mark, to mark): the stages reported. The last is the whole trip.
STAGES: tuple[tuple[str, Mark, Mark], ...] = (
    ("stt_finalize", Mark.SPEECH_END, Mark.TRANSCRIPT_FINAL),
    ("llm_first_token", Mark.TRANSCRIPT_FINAL, Mark.LLM_FIRST_TOKEN),
    ("first_clause", Mark.LLM_FIRST_TOKEN, Mark.FIRST_CLAUSE),
    ("tts_first_audio", Mark.FIRST_CLAUSE, Mark.TTS_FIRST_AUDIO),
    ("to_playout", Mark.TTS_FIRST_AUDIO, Mark.FIRST_FRAME),
    ("after_final", Mark.TRANSCRIPT_FINAL, Mark.FIRST_FRAME),  # everything after the STT's part
    ("end_to_end", Mark.SPEECH_END, Mark.FIRST_FRAME),
    # the speaker's last word → its translation fully heard: the ear-voice lag at the utterance's end
    ("ear_voice", Mark.SPEECH_END, Mark.PLAYOUT_END),
)
END_TO_END = "end_to_end"


@dataclass(slots=True)
class UtteranceRecord:
    utterance_id: str
    marks: dict[Mark, float] = field(default_factory=dict)
    outcome: str = "open"  # open | spoken | failed | captioned (too late to speak)

    def span(self, start: Mark, end: Mark) -> float | None:
        if start in self.marks and end in self.marks:
            return self.marks[end] - self.marks[start]
        return None


@dataclass(frozen=True, slots=True)
class StageStats:
    count: int
    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    max: float

    def as_ms(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            **{k: round(getattr(self, k) * 1000, 1) for k in ("p50", "p90", "p95", "p99", "mean", "max")},
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on pre-sorted values."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def stats_of(values: Iterable[float]) -> StageStats | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return StageStats(
        count=len(ordered),
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        mean=sum(ordered) / len(ordered),
        max=ordered[-1],
    )


class LatencyTracker:
    """Collects marks per utterance; keeps bounded sample windows per stage.

    Memory stays flat in long sessions: open records are dropped when they complete, and at most
    `window` samples per stage and `keep_records` completed records are kept.
    """

    def __init__(
        self,
        clock: Clock = default_clock,
        *,
        window: int = 10_000,
        keep_records: int = 1000,
        on_complete: Callable[[UtteranceRecord], None] | None = None,
    ):
        self.clock = clock
        self._on_complete = on_complete  # e.g. the Prometheus histograms
        self._open: dict[str, UtteranceRecord] = {}
        self._samples: dict[str, deque[float]] = {name: deque(maxlen=window) for name, _, _ in STAGES}
        self.completed: deque[UtteranceRecord] = deque(maxlen=keep_records)
        self.spoken = 0
        self.failed = 0
        self.captioned = 0

    def mark(self, utterance_ids: Iterable[str], mark: Mark, at: float | None = None) -> None:
        """Note that these utterances reached `mark` (the first time only)."""
        now = self.clock() if at is None else at
        for uid in utterance_ids:
            record = self._open.get(uid)
            if record is None:
                record = self._open[uid] = UtteranceRecord(uid)
            record.marks.setdefault(mark, now)

    def complete(self, utterance_ids: Iterable[str], *, spoken: bool, outcome: str | None = None) -> None:
        """Close the records: their spans enter the percentiles (the others are counted apart, as
        `failed` unless another `outcome` is given, e.g. `captioned`)."""
        for uid in utterance_ids:
            record = self._open.pop(uid, None)
            if record is None:
                continue
            record.outcome = "spoken" if spoken else (outcome or "failed")
            self.completed.append(record)
            if self._on_complete is not None:
                self._on_complete(record)
            if record.outcome == "captioned":
                self.captioned += 1
                continue
            if not spoken:
                self.failed += 1
                continue
            self.spoken += 1
            for name, start, end in STAGES:
                value = record.span(start, end)
                if value is not None:
                    self._samples[name].append(value)

    def abandon(self, suffix: str) -> int:
        """Close, as failed, every open record whose id ends with `suffix` (a channel cut off while
        utterances were still queued or in flight), so none stays open for the rest of the job."""
        ids = [uid for uid in self._open if uid.endswith(suffix)]
        self.complete(ids, spoken=False)
        return len(ids)

    @property
    def open_count(self) -> int:
        return len(self._open)

    def summary(self) -> dict[str, StageStats]:
        out: dict[str, StageStats] = {}
        for name, samples in self._samples.items():
            s = stats_of(samples)
            if s is not None:
                out[name] = s
        return out

    def summary_ms(self) -> dict[str, dict[str, float | int]]:
        return {name: s.as_ms() for name, s in self.summary().items()}

    def log_summary(self, reason: str) -> None:
        summary = self.summary_ms()
        e2e = summary.get(END_TO_END)
        if e2e is None:
            logger.info("latency (%s): no utterance spoken yet", reason, extra={"failed": self.failed})
            return
        logger.info(
            "latency (%s): end_to_end p50=%sms p90=%sms p95=%sms p99=%sms over %d utterances",
            reason,
            e2e["p50"],
            e2e["p90"],
            e2e["p95"],
            e2e["p99"],
            e2e["count"],
            extra={
                "latency_ms": summary,
                "spoken": self.spoken,
                "failed": self.failed,
                "captioned": self.captioned,
            },
        )

    async def log_periodically(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.log_summary("periodic")


def format_table(summary: dict[str, dict[str, float | int]]) -> str:
    """A plain-text table of stage percentiles in milliseconds."""
    header = f"{'stage':<16}{'n':>6}{'p50':>9}{'p90':>9}{'p95':>9}{'p99':>9}{'max':>9}"
    lines = [header, "-" * len(header)]
    for name, _, _ in STAGES:
        s = summary.get(name)
        if s is None:
            continue
        lines.append(
            f"{name:<16}{s['count']:>6}{s['p50']:>9}{s['p90']:>9}{s['p95']:>9}{s['p99']:>9}{s['max']:>9}"
        )
    return "\n".join(lines)
