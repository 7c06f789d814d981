"""Per-sentence lags: when a listener hears each sentence's translation start, and when it has heard it end.

Pure functions on plain inputs (unit-tested in tests/test_bench_lags.py):

- **sentences** lie on the speaker's audio timeline (seconds since their audio began,
  `bench/harness/speech.py`): a sentence's first word starts at `start`, its last word ends at `end`;
- each **translation heard** (`Heard`) pairs its source span (the source captions' `start_s`..`end_s`, same
  timeline) with its heard span on the clock (the tracker's `PLAYOUT_START`..`PLAYOUT_END`). Utterances the
  queue folded together are one translation over their joint span;
- the audio timeline maps onto the clock by `audio_t0`, the clock time the speaker's audio began (sample
  `t` is spoken at `audio_t0 + t`);
- `heard(t)` maps `t` linearly from the source span of the translation holding it onto its heard span. A
  sentence's **start lag** is `heard(start) - (audio_t0 + start)`, its **end lag** `heard(end) - (audio_t0 +
  end)`. One translation may hold the end of one sentence and the start of the next; at a cut, a start
  belongs to the translation that begins there, an end to the one that ends there;
- a turn's **first audio** is its speech end → the earliest translated audio of any translation whose source
  overlaps the turn (negative when a cut let the translation start before the speaker finished).

Nothing is skipped silently: records that failed, were only captioned, are still open or cannot be placed
are returned as `Unheard`, a sentence no heard translation holds has no lag (`heard` False), and translations
heard over one another (`overlaps`) or out of the speaker's order (`order_breaks`) are counted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.telemetry.latency import Mark, UtteranceRecord
from bench.harness.speech import Sentence
from bench.harness.stats import quantile, slope

# How far a sentence's edge may lie outside a caption's span and still count as held by it: the fake STT's
# VAD finds speech in 10 ms windows and the captions round to 1 ms, so a span may start or end a window off.
TOLERANCE_S = 0.1
# Back-to-back translations: the next one's first frame is heard when the previous one's last has played; the
# two marks are read at different moments, so allow them a quarter of a 20 ms frame.
OVERLAP_TOLERANCE_S = 0.005


@dataclass(frozen=True, slots=True)
class Heard:
    """One translation heard: several utterances' when the queue folded them together."""

    record_ids: tuple[str, ...]
    source_start: float  # audio timeline (s)
    source_end: float
    heard_start: float  # clock (s)
    heard_end: float

    def at(self, t: float, *, end: bool) -> float:
        """When the source's point `t` (clamped into this span) is heard."""
        span = self.source_end - self.source_start
        fraction = (1.0 if end else 0.0) if span <= 0 else min(1.0, max(0.0, (t - self.source_start) / span))
        return self.heard_start + fraction * (self.heard_end - self.heard_start)


@dataclass(frozen=True, slots=True)
class Unheard:
    record_id: str
    reason: str  # failed | captioned (too late to speak) | no_playout | no_caption (no source span)


@dataclass(slots=True)
class Translations:
    heard: list[Heard] = field(default_factory=list)  # in the order they were heard
    unheard: list[Unheard] = field(default_factory=list)
    merged: int = 0  # utterances heard inside another's translation (folded by the queue)
    open: int = 0  # records never completed (still in flight when the session ended)


def segment_of(record_id: str) -> str:
    """The source caption's segment id of a channel's record id (`<speaker>-<n>-<language>`)."""
    return record_id.rsplit("-", 1)[0]


def translations(
    records: Iterable[UtteranceRecord],
    source_spans: Mapping[str, tuple[float, float]],
    *,
    open_records: int = 0,
) -> Translations:
    """What was heard, from the tracker's completed records and the source captions' spans (by segment id).

    Records the mouth played together (same `PLAYOUT_START` and `PLAYOUT_END`: the queue folded them into
    one utterance) are one translation over their joint source span."""
    out = Translations(open=open_records)
    groups: dict[tuple[float, float], list[tuple[str, tuple[float, float]]]] = {}
    for r in records:
        if r.outcome != "spoken":
            out.unheard.append(Unheard(r.utterance_id, r.outcome))
            continue
        start, end = r.marks.get(Mark.PLAYOUT_START), r.marks.get(Mark.PLAYOUT_END)
        if start is None or end is None:
            out.unheard.append(Unheard(r.utterance_id, "no_playout"))
            continue
        span = source_spans.get(segment_of(r.utterance_id))
        if span is None:
            out.unheard.append(Unheard(r.utterance_id, "no_caption"))
            continue
        groups.setdefault((start, end), []).append((r.utterance_id, span))
    for (start, end), members in sorted(groups.items()):
        out.merged += len(members) - 1
        out.heard.append(
            Heard(
                tuple(rid for rid, _ in members),
                min(s for _, (s, _) in members),
                max(e for _, (_, e) in members),
                start,
                end,
            )
        )
    return out


def heard_at(t: float, heard: Sequence[Heard], *, end: bool, tolerance: float = TOLERANCE_S) -> float | None:
    """When the source's point `t` is heard, or None if no translation heard holds it (within `tolerance`).
    At a boundary between two translations, a start (`end` False) takes the one beginning there, an end the
    one ending there."""
    best: tuple[float, float, Heard] | None = None
    for h in heard:
        distance = max(h.source_start - t, 0.0, t - h.source_end)
        if distance > tolerance:
            continue
        # ties: a start prefers the span reaching furthest past t, an end the one beginning furthest before
        tie = -h.source_end if not end else h.source_start
        if best is None or (distance, tie) < best[:2]:
            best = (distance, tie, h)
    return None if best is None else best[2].at(t, end=end)


@dataclass(frozen=True, slots=True)
class SentenceLag:
    sentence: Sentence
    start_lag: float | None  # None: its first word is in no translation heard
    end_lag: float | None

    @property
    def heard(self) -> bool:
        return self.start_lag is not None and self.end_lag is not None


def sentence_lags(
    sentences: Iterable[Sentence], heard: Sequence[Heard], *, audio_t0: float, tolerance: float = TOLERANCE_S
) -> list[SentenceLag]:
    out = []
    for s in sentences:
        start = heard_at(s.start, heard, end=False, tolerance=tolerance)
        end = heard_at(s.end, heard, end=True, tolerance=tolerance)
        out.append(
            SentenceLag(
                s,
                None if start is None else start - (audio_t0 + s.start),
                None if end is None else end - (audio_t0 + s.end),
            )
        )
    return out


def first_audio(
    turns: Iterable[Sentence], heard: Sequence[Heard], *, audio_t0: float, tolerance: float = TOLERANCE_S
) -> list[float | None]:
    """Per turn: its speech end → the first translated audio heard of it (None: none heard)."""
    out: list[float | None] = []
    for turn in turns:
        starts = [
            h.heard_start
            for h in heard
            if h.source_start <= turn.end + tolerance and h.source_end >= turn.start - tolerance
        ]
        out.append(min(starts) - (audio_t0 + turn.end) if starts else None)
    return out


def overlaps(heard: Iterable[Heard], *, tolerance: float = OVERLAP_TOLERANCE_S) -> list[float]:
    """By how much each translation began to be heard before the previous one had ended (none: [])."""
    ordered = sorted(heard, key=lambda h: h.heard_start)
    return [
        prev.heard_end - h.heard_start
        for prev, h in itertools.pairwise(ordered)
        if h.heard_start < prev.heard_end - tolerance
    ]


def order_breaks(heard: Iterable[Heard]) -> int:
    """How many translations were heard after one whose source comes later."""
    ordered = sorted(heard, key=lambda h: h.heard_start)
    return sum(1 for prev, h in itertools.pairwise(ordered) if h.source_start < prev.source_start)


@dataclass(frozen=True, slots=True)
class Growth:
    start_slope_s_per_min: float  # start lag against the minute the sentence started
    end_slope_s_per_min: float  # end lag against the minute the sentence ended
    first_minute: dict[str, float | None]  # p50/p95 of start and end lags of sentences in the first minute
    last_minute: dict[str, float | None]  # ... and in the last


def growth(lags: Sequence[SentenceLag], *, minutes: float) -> Growth:
    """Whether the lag grows over a long talk: slopes (s/min), and the first minute against the last."""
    starts = [(lag.sentence.start / 60, lag.start_lag) for lag in lags if lag.start_lag is not None]
    ends = [(lag.sentence.end / 60, lag.end_lag) for lag in lags if lag.end_lag is not None]

    def minute(lo: float, hi: float) -> dict[str, float | None]:
        s = [v for m, v in starts if lo <= m < hi]
        e = [v for m, v in ends if lo <= m < hi]
        return {
            "start_p50_s": quantile(s, 50),
            "start_p95_s": quantile(s, 95),
            "end_p50_s": quantile(e, 50),
            "end_p95_s": quantile(e, 95),
            "sentences": len(s),
        }

    return Growth(
        start_slope_s_per_min=slope(starts),
        end_slope_s_per_min=slope(ends),
        first_minute=minute(0.0, 1.0),
        last_minute=minute(max(0.0, minutes - 1.0), math.inf),
    )
