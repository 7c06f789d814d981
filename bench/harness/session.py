"""One interpretation in this process, exactly as the worker runs it (`run_session`), against the fake
providers at the URLs it is given (`bench_settings`), and what it leaves to measure (`SessionRun`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from livekit import rtc

from agent.loops.captions import CaptionLog
from agent.loops.mouth.loop import OUTPUT_QUEUE_MS
from agent.loops.pipeline import Interpreter, PipelineOptions
from agent.providers.build import build_providers
from agent.run.filemode import Pcm, paced_frames
from agent.settings.config import Settings, load_settings
from agent.telemetry.latency import LatencyTracker
from bench.harness.provider_process import provider_env

# Deepgram's endpointing (the silence it waits for before it ends an utterance), as the worker's default
ENDPOINTING_MS = 300


def bench_settings(urls: dict[str, str], **overrides: str) -> Settings:
    """The worker's settings with every provider at the fakes' `urls`, and `overrides` (`--set`)."""
    return load_settings({**provider_env(urls), **overrides}, require_livekit=False)


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
