"""The LiveKit worker: explicit dispatch by agent name; one job interprets a room's speaker."""

from __future__ import annotations

import asyncio
import logging
import sys

from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobProcess

from .config import Settings, load_settings, read_environment
from .latency import LatencyTracker
from .pipeline import Interpreter, PipelineOptions
from .providers import build_providers
from .room import RoomCaptions, track_frames, wait_for_speaker_track

logger = logging.getLogger("agent.worker")


def install_uvloop() -> None:
    """uvloop on Linux/macOS. Called on import too: job processes import this module (to find the
    entrypoint) before they create their event loop, so they get uvloop as well."""
    if sys.platform != "win32":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


install_uvloop()


def track_name(language: str) -> str:
    """The published interpretation track of a language: stable, so front ends can find it."""
    return f"interpretation-{language}"


def prewarm(proc: JobProcess) -> None:
    """Per worker process, before any job: validate settings and pay one-off import costs here,
    not on a job's event loop (the Cerebras SDK loads its chat resources lazily, ~35 ms)."""
    import cerebras.cloud.sdk.resources.chat.completions  # noqa: F401

    proc.userdata["settings"] = load_settings(read_environment())


async def entrypoint(ctx: JobContext) -> None:
    settings: Settings = ctx.proc.userdata.get("settings") or load_settings(read_environment())
    ctx.log_context_fields = {"room": ctx.room.name, "job_id": ctx.job.id}
    source_language, target_language = settings.source_language, settings.target_language

    providers = build_providers(settings, source_language=source_language, target_language=target_language)
    providers.prewarm()  # connections open while the room connects
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)

    source = rtc.AudioSource(settings.tts.sample_rate, 1, queue_size_ms=400)
    track = rtc.LocalAudioTrack.create_audio_track(track_name(target_language), source)
    await ctx.room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )
    tracker = LatencyTracker()
    captions = RoomCaptions(ctx.room.local_participant)
    periodic = asyncio.create_task(tracker.log_periodically(settings.latency_log_interval_s))

    async def on_shutdown() -> None:
        periodic.cancel()
        tracker.log_summary("job end")
        await captions.aclose()
        await providers.aclose()
        await source.aclose()

    ctx.add_shutdown_callback(on_shutdown)

    while True:
        participant, speaker_track = await wait_for_speaker_track(ctx.room)
        language = participant.attributes.get("language") or source_language
        logger.info("interpreting a speaker", extra={"speaker": participant.identity, "language": language})
        interpreter = Interpreter(
            providers=providers,
            frames=track_frames(speaker_track),
            output=source,
            tracker=tracker,
            speaker=participant.identity,
            source_language=language,
            target_language=target_language,
            captions=captions,
            options=PipelineOptions.from_settings(settings),
        )
        await interpreter.run()


def build_server(*, agent_name: str) -> AgentServer:
    server = AgentServer(setup_fnc=prewarm)
    server.rtc_session(entrypoint, agent_name=agent_name)
    return server
