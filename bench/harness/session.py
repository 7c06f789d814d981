"""Running sessions against the provider process and turning what happened into figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from livekit import rtc

from agent.language.text import ClauseSplitter
from agent.loops.captions import CaptionLog
from agent.loops.mouth import OUTPUT_QUEUE_MS
from agent.loops.pipeline import Interpreter, PipelineOptions
from agent.providers.build import build_providers
from agent.run.filemode import Pcm, paced_frames
from agent.settings.config import Settings, load_settings
from agent.telemetry.latency import LatencyTracker, Mark, percentile
from bench.harness.model import LatencyModel


@contextlib.asynccontextmanager
async def provider_process(
    model: LatencyModel, *, length_factor: float, concise_factor: float = 1.05, tag_tones: bool = False
) -> AsyncIterator[dict[str, str]]:
    """The fake providers on `model`, in their own process; yields their URLs (and its `pid`).
    `tag_tones`: each translation's first clause at a frequency its id picks (`modelled_providers`)."""
    config = json.dumps(
        {
            "model": model.as_dict(),
            "length_factor": length_factor,
            "concise_factor": concise_factor,
            "tag_tones": tag_tones,
        }
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once per run, before any session)
        [sys.executable, "-m", "bench.harness.modelled_providers", config],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = await asyncio.to_thread(proc.stdout.readline)
    try:
        yield json.loads(line)
    finally:
        proc.stdin.close()
        await asyncio.to_thread(proc.wait, 10)


def bench_settings(urls: dict[str, str], **overrides: str) -> Settings:
    env = {
        "DEEPGRAM_API_KEY": "bench",
        "DEEPGRAM_BASE_URL": urls["deepgram"],
        "CEREBRAS_API_KEY": "bench",
        "CEREBRAS_BASE_URL": urls["cerebras"],
        "GROQ_API_KEY": "bench",
        "GROQ_BASE_URL": urls["groq"],
        "CARTESIA_API_KEY": "bench",
        "CARTESIA_BASE_URL": urls["cartesia"],
        **overrides,
    }
    return load_settings(env, require_livekit=False)


@dataclass
class SessionRun:
    tracker: LatencyTracker
    captions: CaptionLog
    t0: float  # clock time at which the speaker started
    merged: int = 0
    # clock time at which the speaker's audio began (the paced input's start): sample t spoken at audio_t0 + t
    audio_t0: float = 0.0


async def run_session(
    settings: Settings, pcm: Pcm, http: aiohttp.ClientSession, name: str, *, keep_records: int = 1000
) -> SessionRun:
    """One interpretation, exactly as the worker runs it: real loops, plugins and AudioSource pacing.
    `keep_records`: how many completed latency records the tracker keeps (all of a long run's, for lags)."""
    tracker, captions = LatencyTracker(keep_records=keep_records), CaptionLog()
    audio_started: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    providers = build_providers(settings, source_language="en", target_language="es", http_session=http)
    providers.prewarm()
    await asyncio.sleep(0.3)  # as in a job: connections warm while the room connects
    source = rtc.AudioSource(settings.tts.sample_rate, 1, queue_size_ms=OUTPUT_QUEUE_MS)
    interpreter = Interpreter(
        providers=providers,
        frames=paced_frames(pcm, started=audio_started),
        output=source,
        tracker=tracker,
        speaker=name,
        source_language="en",
        target_language="es",
        captions=captions,
        options=PipelineOptions.from_settings(settings),
    )
    t0 = tracker.clock()
    try:
        await interpreter.run()
        await source.wait_for_playout()
    finally:
        await source.aclose()
        await providers.aclose()
    audio_t0 = audio_started.result() if audio_started.done() else t0
    return SessionRun(tracker, captions, t0, merged=interpreter.channel.inbox.merged, audio_t0=audio_t0)


async def fetch_records(urls: dict[str, str], http: aiohttp.ClientSession) -> dict[str, list[dict]]:
    async with http.get(urls["control"] + "/records") as resp:
        records: dict[str, list[dict]] = await resp.json()
        return records


async def reset_records(urls: dict[str, str], http: aiohttp.ClientSession) -> None:
    async with http.post(urls["control"] + "/reset") as resp:
        await resp.read()


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


def figures(
    run: SessionRun, records: dict[str, list[dict]], model: LatencyModel, *, endpointing_s: float
) -> list[UtteranceFigures]:
    """Per spoken utterance: end to end, ear-voice lag, and overhead over the modelled floor."""
    stt = {r["text"]: r for r in records["stt"]}
    llm = {r["source"]: r for r in records["llm"]}
    tts = {r["text"]: r for r in records["tts"]}
    source_text = {c.segment_id: c.text for c in run.captions.finals(translated=False)}
    source_span = {
        c.segment_id: (c.end_s or 0.0) - (c.start_s or 0.0) for c in run.captions.finals(translated=False)
    }
    spoken_text = {c.segment_id: c.text for c in run.captions.finals(translated=True)}
    out = []
    busy_until = float("-inf")  # when the track finished playing the previous utterance
    for record in run.tracker.completed:
        previous_end, busy_until = busy_until, record.marks.get(Mark.PLAYOUT_END, busy_until)
        if record.outcome != "spoken":
            continue
        segment = record.utterance_id.rsplit("-", 1)[0]
        text = source_text.get(segment, "")
        stt_rec = stt.get(text)
        llm_rec = next((r for src, r in llm.items() if text and text in src), None)
        # each clause is its own TTS context: the first clause's is the one on the critical path
        spoken = spoken_text.get(record.utterance_id, "")
        tts_rec = next((r for t, r in tts.items() if t and spoken.startswith(t)), None)
        if stt_rec is None or llm_rec is None or tts_rec is None:
            continue  # a merged utterance: its parts cannot be joined one to one
        stt_floor = stt_rec["delay_s"] + (0.0 if stt_rec["forced"] else endpointing_s)
        llm_floor = llm_rec["ttft_s"] + (first_clause_pieces(llm_rec["reply"]) - 1) / model.llm_tokens_per_s
        tts_floor = tts_rec["ttfb_s"]
        e2e = record.span(Mark.SPEECH_END, Mark.FIRST_FRAME)
        assert e2e is not None
        track_busy = max(0.0, previous_end - record.marks[Mark.SPEECH_END])
        floor = max(stt_floor + llm_floor + tts_floor, track_busy)
        stages = [
            record.span(Mark.SPEECH_END, Mark.TRANSCRIPT_FINAL),
            record.span(Mark.TRANSCRIPT_FINAL, Mark.FIRST_CLAUSE),
            record.span(Mark.FIRST_CLAUSE, Mark.TTS_FIRST_AUDIO),
            record.span(Mark.TTS_FIRST_AUDIO, Mark.FIRST_FRAME),
        ]
        if any(v is None for v in stages):
            continue
        stt_s, llm_s, tts_s, playout_s = (v or 0.0 for v in stages)
        word_lags = []
        heard_from, heard_to = record.marks.get(Mark.PLAYOUT_START), record.marks.get(Mark.PLAYOUT_END)
        if heard_from is not None and heard_to is not None:
            speech_end, span, n = (
                record.marks[Mark.SPEECH_END],
                source_span.get(segment, 0.0),
                len(text.split()),
            )
            for i in range(1, n + 1):
                f = i / n
                said = speech_end - span * (1 - f)
                word_lags.append(((said - run.t0) / 60, heard_from + f * (heard_to - heard_from) - said))
        out.append(
            UtteranceFigures(
                record_id=record.utterance_id,
                speech_end_s=record.marks[Mark.SPEECH_END] - run.t0,
                end_to_end_s=e2e,
                ear_voice_s=record.span(Mark.SPEECH_END, Mark.PLAYOUT_END),
                floor_s=floor,
                overhead_s=e2e - floor,
                speed=float(tts_rec["speed"]),
                stt_over_s=stt_s - stt_floor,
                llm_over_s=llm_s - llm_floor,
                tts_over_s=tts_s - tts_floor,
                playout_s=playout_s,
                track_busy_s=track_busy,
                word_lags=word_lags,
            )
        )
    return out


def pct(values: list[float], q: float) -> float:
    """The q-th percentile of seconds, in milliseconds (NaN for none)."""
    return round(percentile(sorted(values), q) * 1000, 1) if values else float("nan")


def summary_ms(values: list[float]) -> dict[str, float]:
    return {f"p{q}": pct(values, q) for q in (50, 90, 95, 99)} | {"n": len(values)}


def plot_cdf(ax: Any, series: list[tuple[list[float], str]], title: str) -> None:
    """Cumulative distributions of end-to-end latencies (seconds, shown in ms) on one matplotlib axis."""
    for seconds, label in series:
        values = sorted(v * 1000 for v in seconds)
        ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=label)
    ax.set_xlabel("speech end → first translated frame (ms)")
    ax.set_ylabel("fraction of utterances")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
