"""What one benchmark room's run comes to: each utterance that ended at a pause of the speaker, joined to
where its translation started at the listener (`analyse`), and the figures of a run (`latency_summary`): the
listener's end to end, the worker's own, what the SFU adds (uplink, the worker's source queue, downlink), the
worker's stages, and the overhead over the modelled floor as `python -m bench` computes it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

from agent.telemetry.latency import STAGES, Mark, UtteranceRecord
from bench.harness.figures import figures, overhead_summary
from bench.harness.model import LatencyModel
from bench.harness.modelled_providers import tagged_freq
from bench.harness.session import ENDPOINTING_MS
from bench.harness.stats import summary_ms
from bench.room.listener_audio import Heard
from bench.room.participants import TARGET, TRACK, BenchRoom


@dataclass
class Utterance:
    room: str
    id: str
    listener_e2e_s: float
    worker_e2e_s: float
    sfu_added_s: float
    uplink_s: float
    source_queue_s: float
    downlink_s: float
    caption_lead_s: float | None  # the translated caption's first version arrived this long before the audio


@dataclass
class RunResult:
    rooms: int
    dispatched: int
    utterances: list[Utterance] = field(default_factory=list)
    records: list[UtteranceRecord] = field(default_factory=list)
    downlink_all_s: list[float] = field(default_factory=list)  # every spoken utterance, at a pause or not
    unmatched: int = 0
    meter: dict[str, Any] = field(default_factory=dict)
    fakes: dict[str, list[dict]] = field(default_factory=dict)
    captions: dict[str, Any] = field(default_factory=dict)
    speech_s: float = 0.0
    t0: float = 0.0
    dispatch: dict[str, Any] = field(default_factory=dict)
    speaking_lag_s: float = 0.0  # the slowest speaker's delay over its speech's duration


def analyse(room: BenchRoom, records: list[UtteranceRecord], result: RunResult) -> None:
    """The room's share of the worker's `records` into `result`: each utterance ending at a pause of the
    speaker, joined to where its translation started at the listener; what cannot be joined is counted."""
    prefix = room.speaker.identity + "-"
    mine = [r for r in records if r.utterance_id.startswith(prefix)]
    result.records += mine
    spoken = [
        r
        for r in mine
        if r.outcome == "spoken" and Mark.FIRST_FRAME in r.marks and Mark.SPEECH_END in r.marks
    ]
    result.captions[room.name] = {
        "source": _finals(room, translated=False),
        "translated": _finals(room, translated=True),
    }
    onsets = _onsets(room, spoken, result.downlink_all_s)
    first_caption: dict[str, float] = {}
    for c in room.listener.captions:
        if c.translated and c.segment_id not in first_caption:
            first_caption[c.segment_id] = c.at
    # the utterances that end where the speaker paused: speech end as sent → first frame heard
    for end in pause_ends(room.segments):
        utterance = _at_pause(room, spoken, onsets, first_caption, end)
        if utterance is None:
            result.unmatched += 1
        else:
            result.utterances.append(utterance)


def _finals(room: BenchRoom, *, translated: bool) -> list[SimpleNamespace]:
    """The listener's final captions, shaped as the figures read a session's (`CaptionLog.finals`)."""
    captions = room.listener.final_captions(translated=translated, language=TARGET if translated else None)
    return [SimpleNamespace(segment_id=c.segment_id, text=c.text, start_s=None, end_s=None) for c in captions]


def _heard_at_worker(r: UtteranceRecord) -> float:
    return max(r.marks[Mark.FIRST_FRAME], r.marks.get(Mark.PLAYOUT_START, 0.0))


def _onsets(room: BenchRoom, spoken: list[UtteranceRecord], downlink_all: list[float]) -> dict[str, float]:
    """When each spoken utterance's translation began to arrive at the listener (found by its tagged tone),
    by record id; its downlink (heard at the worker's source → arrived) goes to `downlink_all`."""
    ids = {}
    for c in room.listener.final_captions(translated=True, language=TARGET):
        words = c.text.split()
        if words and words[0].strip(".,").isdigit():
            ids[c.segment_id] = int(words[0].strip(".,"))
    heard = Heard(room.listener.heard.get(TRACK, []))
    onsets: dict[str, float] = {}
    for r in spoken:
        number = ids.get(r.utterance_id)
        if number is None:
            continue
        heard_at = _heard_at_worker(r)
        onset = heard.onset(tagged_freq(f"{number:04d}"), heard_at - 0.005)
        if onset is not None:
            onsets[r.utterance_id] = onset
            downlink_all.append(onset - heard_at)
    return onsets


def pause_ends(segments: list[tuple[float, float]]) -> list[float]:
    """The ends of the voiced segments followed by a pause (s into the speech), not by a breath: the STT
    ends an utterance there."""
    ends = [start + duration for start, duration in segments]
    nexts = [start for start, _ in segments[1:]] + [math.inf]
    return [
        end
        for end, next_start in zip(ends, nexts, strict=True)
        if next_start - end >= ENDPOINTING_MS / 1000 + 0.1
    ]


def _at_pause(
    room: BenchRoom,
    spoken: list[UtteranceRecord],
    onsets: dict[str, float],
    first_caption: dict[str, float],
    end: float,
) -> Utterance | None:
    """The utterance ending at the pause `end` s into the speech, as the listener heard it (None: none)."""
    sent_end = room.speaker.sent_at(end)
    near = [r for r in spoken if -0.3 <= r.marks[Mark.SPEECH_END] - sent_end <= 0.6]
    if not near:
        return None
    r = max(near, key=lambda r: r.marks[Mark.SPEECH_END])
    onset = onsets.get(r.utterance_id)
    if onset is None:
        return None
    worker_e2e = r.marks[Mark.FIRST_FRAME] - r.marks[Mark.SPEECH_END]
    heard_at = _heard_at_worker(r)
    return Utterance(
        room=room.name,
        id=r.utterance_id,
        listener_e2e_s=onset - sent_end,
        worker_e2e_s=worker_e2e,
        sfu_added_s=onset - sent_end - worker_e2e,
        uplink_s=r.marks[Mark.SPEECH_END] - sent_end,
        source_queue_s=heard_at - r.marks[Mark.FIRST_FRAME],
        downlink_s=onset - heard_at,
        caption_lead_s=onset - first_caption[r.utterance_id] if r.utterance_id in first_caption else None,
    )


def stage_figures(records: list[UtteranceRecord]) -> dict[str, dict[str, float]]:
    """The worker's own per-stage figures (as its latency log, logger `agent.latency`, reports them)."""
    spoken = [r for r in records if r.outcome == "spoken"]
    out = {}
    for name, start, end in STAGES:
        values = [v for r in spoken if (v := r.span(start, end)) is not None]
        out[name] = summary_ms(values)
    return out


def overhead_figures(result: RunResult, model: LatencyModel) -> dict[str, Any]:
    """As `python -m bench`: each utterance's modelled floor (from the fakes' /records), overhead over it."""
    figs = []
    for room, captions in result.captions.items():
        prefix = f"{room}-speaker-"
        run = SimpleNamespace(
            tracker=SimpleNamespace(
                completed=[r for r in result.records if r.utterance_id.startswith(prefix)]
            ),
            captions=SimpleNamespace(
                finals=lambda translated, c=captions: c["translated"] if translated else c["source"]
            ),
            t0=result.t0,
        )
        figs += figures(run, result.fakes, model, endpointing_s=ENDPOINTING_MS / 1000)  # type: ignore[arg-type]
    return {"joined": len(figs), **overhead_summary(figs)}


def latency_summary(result: RunResult, model: LatencyModel) -> dict[str, Any]:
    u = result.utterances
    outcomes: dict[str, int] = {}
    for r in result.records:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    return {
        "rooms": result.rooms,
        "dispatched": result.dispatched,
        "dispatch": result.dispatch,
        "speaking_lag_s": round(result.speaking_lag_s, 2),
        "outcomes": outcomes,
        "at_pauses": len(u),
        "unmatched": result.unmatched,
        "listener_e2e_ms": summary_ms([x.listener_e2e_s for x in u]),
        "worker_e2e_ms": summary_ms([x.worker_e2e_s for x in u]),
        "sfu_added_ms": summary_ms([x.sfu_added_s for x in u]),
        "uplink_ms": summary_ms([x.uplink_s for x in u]),
        "source_queue_ms": summary_ms([x.source_queue_s for x in u]),
        "downlink_ms": summary_ms([x.downlink_s for x in u]),
        "downlink_all_ms": summary_ms(result.downlink_all_s),
        "caption_lead_ms": summary_ms([x.caption_lead_s for x in u if x.caption_lead_s is not None]),
        "worker_stages_ms": stage_figures(result.records),
        **overhead_figures(result, model),
        "cpu": result.meter,
        "points": [asdict(x) for x in u],
    }
