"""Runs one interpretation over local rtc objects against the fake providers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp

from agent.loops.captions import CaptionLog
from agent.loops.pipeline import Interpreter, PipelineOptions
from agent.providers.build import build_providers
from agent.run.filemode import Pcm, paced_frames, read_wav
from agent.telemetry.latency import LatencyTracker
from tests.conftest import Fakes
from tests.loopback import LoopbackListener, LoopbackSpeaker


def spoken_text(transcripts: list[str]) -> str:
    """What one Cartesia context was asked to say (the plugin pads and ends with a blank message)."""
    return " ".join(t.strip() for t in transcripts if t.strip())


async def run_interpreter(
    fakes: Fakes,
    speech: Path | Pcm,
    tracker: LatencyTracker,
    captions: CaptionLog,
    *,
    speaker_name: str = "alice",
    options: PipelineOptions | None = None,
    on_fault: Callable[[str, bool], None] | None = None,
    exact_timeline: bool = False,
) -> tuple[Interpreter, LoopbackListener]:
    """`speech` (a WAV or samples) spoken in real time into the interpreter; what it says, listened to.

    The speech goes through a local rtc track, as in a room; on a loaded machine that track may add a
    little silence now and then. `exact_timeline`: hand the samples over directly, paced in real time,
    so the speaker's timeline is exactly the file's (for tests of where words fall on it)."""
    settings = fakes.settings()
    pcm = read_wav(speech) if isinstance(speech, Path) else speech
    speaker = LoopbackSpeaker(pcm)
    listener = LoopbackListener(settings.tts.sample_rate)
    async with aiohttp.ClientSession() as http:
        providers = build_providers(settings, source_language="en", target_language="es", http_session=http)
        interpreter = Interpreter(
            providers=providers,
            frames=paced_frames(pcm) if exact_timeline else speaker.frames(),
            output=listener.source,
            tracker=tracker,
            speaker=speaker_name,
            source_language="en",
            target_language="es",
            captions=captions,
            options=options,
            on_fault=on_fault,
        )
        try:
            await interpreter.run()
            await listener.aclose()
        finally:
            await speaker.aclose()
            await providers.aclose()
    return interpreter, listener
