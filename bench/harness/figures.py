"""Per spoken utterance of a session: end to end, ear-voice lag, and the overhead over the modelled floor (the
provider time the fakes' records say was on the critical path), and their summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.language.text import ClauseSplitter
from agent.telemetry.latency import Mark, UtteranceRecord
from bench.harness.model import LatencyModel
from bench.harness.session import SessionRun
from bench.harness.stats import summary_ms

# the per-stage overheads of `UtteranceFigures`, as the result files name them
STAGE_OVERHEADS = ("stt_over_s", "llm_over_s", "tts_over_s", "playout_s")


@dataclass(frozen=True, slots=True)
class UtteranceFigures:
    record_id: str
    speech_end_s: float  # since the speaker started
    end_to_end_s: float
    ear_voice_s: float | None
    floor_s: float  # the modelled provider time on the critical path (or the track still busy)
    overhead_s: float  # measured minus modelled
    speed: float
    # where the overhead goes: each stage measured minus its modelled provider time
    stt_over_s: float
    llm_over_s: float
    tts_over_s: float
    playout_s: float
    track_busy_s: float  # how long the utterance had to wait for the previous one to finish playing
    # ear-voice lag of each source word: its end → the same point of the translation heard (words spread
    # evenly over the source speech and over the translated audio), as (minutes into the talk, lag s)
    word_lags: list[tuple[float, float]]


def first_clause_pieces(reply: str, piece_chars: int = 4) -> int:
    """How many streamed pieces of `reply` the LLM must send before the brain has its first clause."""
    splitter = ClauseSplitter()
    for i in range(0, len(reply), piece_chars):
        if splitter.push(reply[i : i + piece_chars]):
            return i // piece_chars + 1
    return max(1, -(-len(reply) // piece_chars))


@dataclass(frozen=True, slots=True)
class Floors:
    """The modelled provider time of each stage on one utterance's critical path (s), and its TTS speed."""

    stt: float
    llm: float
    tts: float
    speed: float


class ProviderRecords:
    """What the fakes did (their `/records`), found by the utterance each request served."""

    def __init__(self, records: dict[str, list[dict]], model: LatencyModel, *, endpointing_s: float) -> None:
        self.stt = {r["text"]: r for r in records["stt"]}
        self.llm = {r["source"]: r for r in records["llm"]}
        self.tts = {r["text"]: r for r in records["tts"]}
        self._tokens_per_s = model.llm_tokens_per_s
        self._endpointing_s = endpointing_s

    def floors(self, text: str, spoken: str) -> Floors | None:
        """The floors of the utterance whose transcript is `text` and translation `spoken` (None: merged)."""
        stt_rec = self.stt.get(text)
        llm_rec = next((r for src, r in self.llm.items() if text and text in src), None)
        # each clause is its own TTS context: the first clause's is the one on the critical path
        tts_rec = next((r for t, r in self.tts.items() if t and spoken.startswith(t)), None)
        if stt_rec is None or llm_rec is None or tts_rec is None:
            return None  # a merged utterance: its parts cannot be joined one to one
        return Floors(
            stt=stt_rec["delay_s"] + (0.0 if stt_rec["forced"] else self._endpointing_s),
            llm=llm_rec["ttft_s"] + (first_clause_pieces(llm_rec["reply"]) - 1) / self._tokens_per_s,
            tts=tts_rec["ttfb_s"],
            speed=float(tts_rec["speed"]),
        )


def stage_spans(record: UtteranceRecord) -> tuple[float, float, float, float] | None:
    """Speech end → final transcript → first clause → first TTS audio → first frame (None: one is missing)."""
    stages = [
        record.span(Mark.SPEECH_END, Mark.TRANSCRIPT_FINAL),
        record.span(Mark.TRANSCRIPT_FINAL, Mark.FIRST_CLAUSE),
        record.span(Mark.FIRST_CLAUSE, Mark.TTS_FIRST_AUDIO),
        record.span(Mark.TTS_FIRST_AUDIO, Mark.FIRST_FRAME),
    ]
    if any(v is None for v in stages):
        return None
    stt_s, llm_s, tts_s, playout_s = (v or 0.0 for v in stages)
    return stt_s, llm_s, tts_s, playout_s


def word_lags(record: UtteranceRecord, words: int, span: float, t0: float) -> list[tuple[float, float]]:
    """Each of the utterance's `words` source words (spread evenly over its `span` s of speech) → the same
    point of its translation heard, as (minutes since `t0`, lag s); none if it was not heard."""
    heard_from, heard_to = record.marks.get(Mark.PLAYOUT_START), record.marks.get(Mark.PLAYOUT_END)
    if heard_from is None or heard_to is None:
        return []
    speech_end = record.marks[Mark.SPEECH_END]
    out = []
    for i in range(1, words + 1):
        f = i / words
        said = speech_end - span * (1 - f)
        out.append(((said - t0) / 60, heard_from + f * (heard_to - heard_from) - said))
    return out


def figures(
    run: SessionRun, records: dict[str, list[dict]], model: LatencyModel, *, endpointing_s: float
) -> list[UtteranceFigures]:
    """Per spoken utterance: end to end, ear-voice lag, and overhead over the modelled floor."""
    providers = ProviderRecords(records, model, endpointing_s=endpointing_s)
    sources = run.captions.finals(translated=False)
    source_text = {c.segment_id: c.text for c in sources}
    source_span = {c.segment_id: (c.end_s or 0.0) - (c.start_s or 0.0) for c in sources}
    spoken_text = {c.segment_id: c.text for c in run.captions.finals(translated=True)}
    out = []
    busy_until = float("-inf")  # when the track finished playing the previous utterance
    for record in run.tracker.completed:
        previous_end, busy_until = busy_until, record.marks.get(Mark.PLAYOUT_END, busy_until)
        if record.outcome != "spoken":
            continue
        segment = record.utterance_id.rsplit("-", 1)[0]
        text = source_text.get(segment, "")
        floors = providers.floors(text, spoken_text.get(record.utterance_id, ""))
        if floors is None:
            continue
        e2e = record.span(Mark.SPEECH_END, Mark.FIRST_FRAME)
        assert e2e is not None
        stages = stage_spans(record)
        if stages is None:
            continue
        track_busy = max(0.0, previous_end - record.marks[Mark.SPEECH_END])
        floor = max(floors.stt + floors.llm + floors.tts, track_busy)
        stt_s, llm_s, tts_s, playout_s = stages
        out.append(
            UtteranceFigures(
                record_id=record.utterance_id,
                speech_end_s=record.marks[Mark.SPEECH_END] - run.t0,
                end_to_end_s=e2e,
                ear_voice_s=record.span(Mark.SPEECH_END, Mark.PLAYOUT_END),
                floor_s=floor,
                overhead_s=e2e - floor,
                speed=floors.speed,
                stt_over_s=stt_s - floors.stt,
                llm_over_s=llm_s - floors.llm,
                tts_over_s=tts_s - floors.tts,
                playout_s=playout_s,
                track_busy_s=track_busy,
                word_lags=word_lags(record, len(text.split()), source_span.get(segment, 0.0), run.t0),
            )
        )
    return out


def overhead_summary(figs: list[UtteranceFigures]) -> dict[str, Any]:
    """The modelled floor and the overhead over it (ms), in all and per stage."""
    return {
        "floor_ms": summary_ms([f.floor_s for f in figs]),
        "overhead_ms": summary_ms([f.overhead_s for f in figs]),
        "overhead_by_stage_ms": {
            name: summary_ms([getattr(f, name) for f in figs]) for name in STAGE_OVERHEADS
        },
    }
