"""The figures of one run, from the script, never from the interpreter's own view.

- the source captions (per segment: the speaker, the first final's text, the latest text a front end
  shows) are matched, in order, to the segments the fake STT heard on that speaker's microphone (their
  words, timed and attributed: the speaker's own, another speaker's, the loudspeaker's echo), by word;
- an utterance interpreted is a segment with a translated caption that says something; it is an **echo
  interpreted** when any of its words was the loudspeaker's; a script sentence is **interpreted twice**
  when one of its words is in two utterances interpreted (from two speakers, or twice from one);
- a **cut** is where the ears ended a segment themselves (their Finalize, as the fake STT received it:
  a pause cut, a long segment cut); it is **mid-word** when the microphone's clean speech is voiced both in
  the 20 ms before and after it (`tests/noise.py` `mid_word`); Deepgram's own endpoints are not cuts;
- **missing words**: a speaker's script words (normalized) that are not in their source captions' latest
  texts, in order (the longest common subsequence);
- **lags** per sentence of a speaker's script, as `bench/lag/lags.py` measures them: first interpretation
  audio of the sentence heard minus its start, end of its interpretation audio heard minus its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from livekit.agents.types import ATTRIBUTE_TRANSCRIPTION_FINAL, ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID

from agent.room.room_io import ATTR_SPEAKER
from bench.hall.room import Run
from bench.hall.words import normalized
from bench.harness.speech import Sentence
from bench.harness.stats import quantile
from bench.lag.lags import segment_of, sentence_lags, translations
from tests.fakes.timed_words import HeardSegment, TimedWord
from tests.noise import mid_word

REACH = 4  # a caption's words are looked for in at most this many heard segments


@dataclass
class Segment:
    speaker: str
    first_text: str = ""  # the first final's text (what was transcribed)
    text: str = ""  # the latest (what a front end shows: a copy taken back is "")
    words: list[TimedWord] = field(default_factory=list)
    span: tuple[float, float] | None = None
    translation: str = ""


def segments(run: Run) -> dict[str, Segment]:
    out: dict[str, Segment] = {}
    for sent in run.texts:
        seg = sent.attributes[ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID]
        final = sent.attributes[ATTRIBUTE_TRANSCRIPTION_FINAL] == "true"
        if ATTR_SPEAKER in sent.attributes:
            source = out.setdefault(segment_of(seg), Segment(sent.attributes[ATTR_SPEAKER]))
            source.translation = sent.text if final or not source.translation else source.translation
        elif final:
            s = out.setdefault(seg, Segment(sent.sender_identity or ""))
            s.speaker = sent.sender_identity or s.speaker
            s.first_text = s.first_text or sent.text
            s.text = sent.text
    return out


def _subsequence(wanted: list[str], words: list[TimedWord]) -> list[TimedWord] | None:
    """The words of `words` spelling `wanted` in order (greedy), or None."""
    out, i = [], 0
    for w in words:
        if i < len(wanted) and normalized(w.word) == [wanted[i]]:
            out.append(w)
            i += 1
    return out if i == len(wanted) else None


def match(segs: list[Segment], heard: list[HeardSegment]) -> int:
    """Give each segment its heard words and span; returns how many could not be matched."""
    heard = [h for h in heard if h.words]
    p, unmatched = 0, 0
    for seg in segs:
        wanted = normalized(seg.first_text)
        if not wanted:
            continue
        for q in range(p, len(heard)):
            if [wanted[0]] not in [normalized(w.word) for w in heard[q].words]:
                continue
            found = next(
                (
                    (r, got)
                    for r in range(q, min(q + REACH, len(heard)))
                    if (got := _subsequence(wanted, [w for h in heard[q : r + 1] for w in h.words]))
                ),
                None,
            )
            if found is not None:
                r, seg.words = found
                # the segment's audio, and all of the words it holds (a word cut through is heard whole)
                start = min(heard[q].start, seg.words[0].start)
                seg.span = (start, max(heard[r].end, max(w.end for w in seg.words)))
                p = r + 1
                break
        else:
            unmatched += 1
    return unmatched


def lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b):
            prev, row[j + 1] = row[j + 1], prev + 1 if x == y else max(row[j + 1], row[j])
    return row[-1]


def measure(run: Run) -> dict[str, Any]:
    segs = segments(run)
    unmatched = sum(
        match([s for s in segs.values() if s.speaker == mic.speaker], run.heard[mic.speaker])
        for mic in run.mics
    )
    interpreted = [s for s in segs.values() if s.translation.strip() and s.first_text.strip()]
    echoes = [s for s in interpreted if any(w.source == "echo" for w in s.words)]
    uses: dict[tuple[str, int, int], int] = {}
    for s in interpreted:
        for w in {(w.source, w.sentence, w.index) for w in s.words if w.source != "echo"}:
            uses[w] = uses.get(w, 0) + 1
    doubles = {(src, k) for (src, k, _), n in uses.items() if n > 1}
    cuts = [(mic, h.cut_at) for mic in run.mics for h in run.heard[mic.speaker] if h.cut_at is not None]
    mid = sum(mid_word(mic.reference, end) for mic, end in cuts)
    missing_by: dict[str, int] = {}
    script = 0
    for mic in run.mics:
        own = [w for text, _, _ in mic.own.sentences for w in normalized(text)]
        shown = [w for s in segs.values() if s.speaker == mic.speaker for w in normalized(s.text)]
        script += len(own)
        missing_by[mic.speaker] = len(own) - lcs(own, shown)
    starts, ends, unheard = lags(run, segs)
    return {
        "utterances": len(interpreted),
        "echoes": len(echoes),
        "echo_words": sum(1 for s in echoes for w in s.words if w.source == "echo"),
        "doubles": len(doubles),
        "cuts": len(cuts),
        "mid_word": mid,
        "script_words": script,
        "missing_words": sum(missing_by.values()),
        "missing_by_speaker": missing_by,
        "lost_words": sum(len(h.lost) for heard in run.heard.values() for h in heard),
        "start_p50_s": quantile(starts, 50),
        "start_p95_s": quantile(starts, 95),
        "end_p50_s": quantile(ends, 50),
        "end_p95_s": quantile(ends, 95),
        "start_lags_s": [round(x, 3) for x in starts],
        "end_lags_s": [round(x, 3) for x in ends],
        "sentences": sum(len(mic.own.sentences) for mic in run.mics),
        "sentences_unheard": unheard,
        "captions_unmatched": unmatched,
        "echo_stretches": run.echo_stretches,
        "open_records": run.open_records,
    }


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one condition as one: counts summed, lags pooled (their percentiles over all the
    runs' sentences), `runs` their number."""
    out: dict[str, Any] = {"runs": len(runs)}
    for key, value in runs[0].items():
        if key.endswith("_lags_s"):
            out[key] = [x for run in runs for x in run[key]]
        elif isinstance(value, dict):
            out[key] = {k: sum(run[key].get(k, 0) for run in runs) for k in value}
        elif isinstance(value, int):
            out[key] = sum(run[key] for run in runs)
    for side in ("start", "end"):
        for q in (50, 95):
            out[f"{side}_p{q}_s"] = quantile(out[f"{side}_lags_s"], q)
    return out


def lags(run: Run, segs: dict[str, Segment]) -> tuple[list[float], list[float], int]:
    """Start and end lags of every sentence of every speaker's script, and how many had none."""
    starts: list[float] = []
    ends: list[float] = []
    unheard = 0
    for mic in run.mics:
        spans = {k: s.span for k, s in segs.items() if s.speaker == mic.speaker and s.span is not None}
        records = [r for r in run.records if segment_of(r.utterance_id) in spans]
        heard = translations(records, spans)
        sentences = [Sentence(a, b) for _, a, b in mic.own.sentences]
        for lag in sentence_lags(sentences, heard.heard, audio_t0=run.t0[mic.speaker]):
            if lag.start_lag is not None:
                starts.append(lag.start_lag)
            if lag.end_lag is not None:
                ends.append(lag.end_lag)
            unheard += not lag.heard
    return starts, ends, unheard
