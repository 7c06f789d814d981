"""The LiveKit worker: explicit dispatch by agent name; one job interprets a whole room."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable

from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobProcess, tts
from livekit.agents.utils.hw import get_cpu_monitor

from . import metrics
from .config import ServerSettings, Settings, load_settings, read_environment
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

    def tts_for(language: str, voice: str | None) -> tts.TTS:
        instance = build_tts(settings, language, None, voice)
        instance.prewarm()
        return instance

    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    tracker = LatencyTracker(on_complete=metrics.observe_record)
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
    gauges = asyncio.create_task(_sample_gauges(session))
    metrics.ACTIVE_SESSIONS.inc()

    async def on_shutdown() -> None:
        metrics.ACTIVE_SESSIONS.dec()
        periodic.cancel()
        gauges.cancel()
        await session.aclose()
        tracker.log_summary("job end")
        await llm.aclose()
        await stt.aclose()

    ctx.add_shutdown_callback(on_shutdown)
    await session.start()


async def _sample_gauges(session: RoomSession) -> None:
    while True:
        metrics.QUEUED_UTTERANCES.set(session.queued_utterances())
        await asyncio.sleep(5)


class CpuSampler:
    """This machine's CPU use (0-1, cgroup-aware), sampled once a second on a daemon thread, so
    reading it never blocks the worker's event loop."""

    def __init__(self) -> None:
        self.monitor = get_cpu_monitor()
        self.value = 0.0
        self._thread: threading.Thread | None = None

    def __call__(self) -> float:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="interpreter-cpu-sampler")
            self._thread.start()
        return self.value

    def _run(self) -> None:
        while True:
            self.value = self.monitor.cpu_percent(interval=1.0)


class SessionLoad:
    """The worker's load for LiveKit's dispatch: its sessions against its capacity, or its CPU, whichever
    is higher. Capacity is SESSIONS_PER_CORE per core (the scale benchmark measured ~29 per core of CPU;
    the default keeps headroom for real providers' jitter)."""

    def __init__(self, sessions_per_core: int, cpu: Callable[[], float] | None = None) -> None:
        self._cpu = cpu or CpuSampler()
        cores = get_cpu_monitor().cpu_count()
        self.capacity = max(1, round(sessions_per_core * cores))

    def __call__(self, server: AgentServer) -> float:
        return min(1.0, max(len(server.active_jobs) / self.capacity, self._cpu()))


def build_server(settings: ServerSettings) -> AgentServer:
    server = AgentServer(
        setup_fnc=prewarm,
        load_fnc=SessionLoad(settings.sessions_per_core),
        port=settings.health_port,
        prometheus_port=settings.prometheus_port,
        prometheus_multiproc_dir=settings.prometheus_dir,
        drain_timeout=settings.drain_timeout_s,
    )
    server.rtc_session(entrypoint, agent_name=settings.agent_name)
    return server
