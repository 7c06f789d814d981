"""The LiveKit worker: explicit dispatch by agent name; one job interprets a whole room."""

from __future__ import annotations

import asyncio
import logging
import sys

from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobProcess, tts

from .config import Settings, load_settings, read_environment
from .latency import LatencyTracker
from .providers import build_llm, build_stt, build_tts
from .session import RoomSession

logger = logging.getLogger("agent.worker")


def install_uvloop() -> None:
    """uvloop on Linux/macOS. Called on import too: job processes import this module (to find the
    entrypoint) before they create their event loop, so they get uvloop as well."""
    if sys.platform != "win32":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


install_uvloop()


def prewarm(proc: JobProcess) -> None:
    """Per worker process, before any job: validate settings and pay one-off import costs here,
    not on a job's event loop (the Cerebras SDK loads its chat resources lazily, ~35 ms)."""
    import cerebras.cloud.sdk.resources.chat.completions  # noqa: F401

    proc.userdata["settings"] = load_settings(read_environment())


async def entrypoint(ctx: JobContext) -> None:
    settings: Settings = ctx.proc.userdata.get("settings") or load_settings(read_environment())
    ctx.log_context_fields = {"room": ctx.room.name, "job_id": ctx.job.id}

    llm = build_llm(settings)
    llm.prewarm()  # connections open while the room connects, without blocking the loop
    stt = build_stt(settings, settings.source_language, None)
    tts_by_language: dict[str, tts.TTS] = {}

    def tts_for(language: str, voice: str | None) -> tts.TTS:
        instance = build_tts(settings, language, None, voice)
        instance.prewarm()
        tts_by_language[language] = instance
        return instance

    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    tracker = LatencyTracker()
    session = RoomSession(
        room=ctx.room,
        settings=settings,
        stt=stt,
        llm=llm,
        tts_factory=tts_for,
        tracker=tracker,
        job_metadata=ctx.job.metadata,
    )
    periodic = asyncio.create_task(tracker.log_periodically(settings.latency_log_interval_s))

    async def on_shutdown() -> None:
        periodic.cancel()
        await session.aclose()
        tracker.log_summary("job end")
        await llm.aclose()
        await stt.aclose()

    ctx.add_shutdown_callback(on_shutdown)
    await session.start()


def build_server(*, agent_name: str) -> AgentServer:
    server = AgentServer(setup_fnc=prewarm)
    server.rtc_session(entrypoint, agent_name=agent_name)
    return server
