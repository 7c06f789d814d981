"""The LiveKit worker: explicit dispatch by agent name; one job interprets a whole room."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livekit.agents import AgentServer, AutoSubscribe, JobContext, tts, utils
from livekit.agents.llm import LLM
from livekit.agents.stt import STT
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.worker import ServerEnvOption

from agent.providers.build import build_tts
from agent.room.cloning import VoiceCloner
from agent.room.presence import Member, Presence
from agent.room.running import STOP_TIMEOUT_S
from agent.room.session import RoomSession
from agent.run.capacity import LOAD_FULL, Capacity
from agent.run.clone_sweep import CloneSweep
from agent.run.handover import DrainFlag, hand_over_when_draining, handover_attributes, split_handover
from agent.run.health import ConnectionWatch, HealthServer, Registration
from agent.run.keeper import Keeper
from agent.run.warmup import job_providers, prewarm
from agent.settings.config import ServerSettings, Settings, load_settings, read_environment
from agent.telemetry import metrics
from agent.telemetry.errors import log_unexpected
from agent.telemetry.latency import LatencyTracker
from agent.telemetry.usage import Usage

logger = logging.getLogger("agent.worker")


def install_uvloop() -> None:
    """uvloop on Linux/macOS. Called on import too: job processes import this module (to find the
    entrypoint) before they create their event loop, so they get uvloop as well."""
    if sys.platform != "win32":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


install_uvloop()


# How a job ends (livekit-agents 1.8.9, ipc/job_proc_lazy_main.py `_JobProc._shutdown_job`): the framework
# calls `on_session_end`, then tells the worker process it is shutting down, disconnects the room, and only
# then runs the shutdown callbacks, which must be done (and the process gone) within
# `shutdown_process_timeout`, or the process is killed. When the worker shuts down (SIGTERM) or the job
# calls `ctx.shutdown()`, the room is still connected during `on_session_end`: the room is drained there,
# where what was heard can still be heard, and the shutdown callback only closes. When the room ends first
# (deleted, closed by the server after everyone left, the agent removed), the framework reacts to the
# room's "disconnected" event, so `on_session_end` runs with the room already gone (seen with a real
# LiveKit server): the session must then not wait on the room (RoomSession.aclose).
SESSION_DRAIN_TIMEOUT_S = 2 * STOP_TIMEOUT_S + 5  # ears, then every channel, each within STOP_TIMEOUT_S
JOB_CLOSE_TIMEOUT_S = 10.0  # the shutdown callbacks and the job process's exit, after the disconnect
_CLOSE_WAITS_FOR_DRAIN_S = 5.0  # in the shutdown callback, if the drain is still running (it overran)


@dataclass(frozen=True, slots=True)
class ShutdownBounds:
    """What the worker tells the framework about stopping (`InterpreterServer` passes these to it and keeps
    them, public): on SIGTERM the drain, `drain_s` (jobs go on as usual); then for each job `on_session_end`
    (our drain of the room) within `session_end_s`, and after the room's disconnect the shutdown callbacks
    and the job process's exit within `process_close_s`, or the process is killed."""

    drain_s: int
    session_end_s: float = SESSION_DRAIN_TIMEOUT_S
    process_close_s: float = JOB_CLOSE_TIMEOUT_S


_jobs: dict[str, _Job] = {}  # by job id: a thread executor runs several jobs in one process


class _Job:
    """One room's interpretation and the providers it holds, ended in two steps: `drain` (from
    `on_session_end`) and `close` (a shutdown callback). Each step runs once; `close` drains first
    if `drain` never ran."""

    def __init__(self, job_id: str, llm: LLM, stt: STT, shutdown: Callable[[str], None]) -> None:
        self.job_id = job_id
        self.llm = llm
        self.stt = stt
        self.session: RoomSession | None = None
        self.presence: Presence | None = None
        self.tracker: LatencyTracker | None = None
        self.usage: Usage | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.leaving = False  # another interpreter stays in the room: this one goes, at once
        self._shutdown = shutdown
        self._drain: asyncio.Task[None] | None = None

    def leave(self, rival: Member) -> None:
        """A rival stays in the room (agent/room/presence.py): the job ends, and its drain stops at once:
        nothing more is heard, spoken or published (what was heard is dropped: the rival interprets it)."""
        if not self.leaving:
            self.leaving = True
            self._shutdown("another interpreter is in the room")  # then `drain`, at once

    def drain(self) -> asyncio.Task[None]:
        if self._drain is None:
            self._drain = asyncio.create_task(self._drain_session(), name="interpreter-drain")
        return self._drain

    async def _drain_session(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            metrics.ACTIVE_SESSIONS.dec()
            # stops listening; what was heard is still interpreted (unless this one leaves to a rival)
            await self.session.aclose(at_once=self.leaving)
        if self.presence is not None:  # it beat while the room drained: a draining interpreter is live
            await self.presence.aclose()
        if self.tracker is not None:
            self.tracker.log_summary("job end")
        if self.usage is not None:
            self.usage.log(logger, "room usage at job end")

    async def close(self) -> None:
        drain = self.drain()  # already done when `on_session_end` ran
        try:
            await asyncio.wait_for(asyncio.shield(drain), _CLOSE_WAITS_FOR_DRAIN_S)
        except TimeoutError:
            logger.warning("the room did not drain in time; stopping it")
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain
        except Exception as e:
            log_unexpected(logger, "draining the room failed", e)
        finally:
            _jobs.pop(self.job_id, None)
            if self.session is not None and self.session.cloner is not None:
                await self.session.cloner.aclose()  # the drain overran or failed: its clones still go first
            await self.llm.aclose()
            await self.stt.aclose()


async def entrypoint(ctx: JobContext) -> None:
    settings: Settings = ctx.proc.userdata.get("settings") or load_settings(read_environment())
    ctx.log_context_fields = {"room": ctx.room.name, "job_id": ctx.job.id}

    providers = job_providers(ctx.proc, settings)  # made at process warm-up, not on this loop
    llm, stt = providers.llm, providers.stt
    llm.prewarm()  # connections open while the room connects, without blocking the loop
    job = _jobs[ctx.job.id] = _Job(ctx.job.id, llm, stt, lambda reason: ctx.shutdown(reason))
    ctx.add_shutdown_callback(job.close)  # closes the providers even if connecting fails

    def tts_for(language: str, voice: str | None) -> tts.TTS:
        instance = build_tts(settings, language, None, voice)
        instance.prewarm()
        return instance

    # a job taking the room over from another interpreter (a deploy): its metadata names that one
    handover_from, room_metadata = split_handover(ctx.job.metadata)
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    # never two interpreters in a room: before publishing anything, then whenever the room changes
    job.presence = presence = Presence(ctx.room, settings.agent_name, job.leave)
    if presence.check():
        return
    presence.start()
    job.tracker = tracker = LatencyTracker(on_complete=metrics.observe_record)
    job.usage = usage = Usage(settings.prices)
    job.session = session = RoomSession(
        room=ctx.room,
        settings=settings,
        stt=stt,
        llm=llm,
        tts_factory=tts_for,
        tracker=tracker,
        job_metadata=room_metadata,
        cloner=lambda on_clone: VoiceCloner.for_tts(
            settings.tts, utils.http_context.http_session(), on_clone
        ),
        handover_from=handover_from,
        usage=usage,
    )
    metrics.ACTIVE_SESSIONS.inc()
    job.tasks = [
        asyncio.create_task(tracker.log_periodically(settings.latency_log_interval_s)),
        asyncio.create_task(_sample_gauges(session)),
    ]
    await session.start()
    if (flag := DrainFlag.of_job()) is not None:  # its worker drains: hand the room over
        job.tasks.append(asyncio.create_task(hand_over_when_draining(ctx, session, flag)))


async def drain_room(ctx: JobContext) -> None:
    """`on_session_end`: the job is ending (the worker shuts down, the room closed, or `ctx.shutdown()`):
    stop listening, finish what was heard (within a bound) and unpublish, while the room is still
    connected; if the room closed, it is already gone and there is nothing left to finish."""
    job = _jobs.get(ctx.job.id)
    if job is not None:
        await asyncio.shield(job.drain())  # if the framework gives up waiting, `close` still bounds it


async def _sample_gauges(session: RoomSession) -> None:
    while True:
        metrics.QUEUED_UTTERANCES.set(session.outputs.queued_utterances())
        await asyncio.sleep(5)


class InterpreterServer(AgentServer):
    """The framework's server, with a health endpoint that says whether the worker is registered with
    LiveKit (`health.py`) and with a stop when it cannot be: credentials LiveKit rejects end the worker
    at once (one error line; SIGTERM to itself, so running rooms still drain), and so does the framework
    giving up its retries, or HEALTH_PORT taken. Then `failed` is true and `python -m agent` exits 1 (the
    framework's CLI alone would exit 0)."""

    def __init__(
        self, *, health_port: int, health_grace_s: float, shutdown: ShutdownBounds, **options: Any
    ) -> None:
        # the framework's own HTTP server (its `/worker`, and a health check that only fails once it gave
        # up) moves to a free port; HEALTH_PORT serves ours
        super().__init__(
            port=0,
            drain_timeout=shutdown.drain_s,
            session_end_timeout=shutdown.session_end_s,
            shutdown_process_timeout=shutdown.process_close_s,
            **options,
        )
        self.shutdown = shutdown  # as built (a `start --drain-timeout` on the command line changes the drain)
        self.health_port = health_port
        self.registration = Registration(health_grace_s)
        self.health_failed = False
        self._health: HealthServer | None = None
        self.keeper: Keeper | None = None  # started once registered (agent/run/keeper.py)
        self.clone_sweep: CloneSweep | None = None  # started once registered (agent/run/clone_sweep.py)
        self.on("worker_registered", self.registration.registered_now)
        self.once("worker_registered", self._start_sweeps)
        self.drain_flag: DrainFlag | None = None  # made by `run`, before any job process starts

    def _start_sweeps(self, *_: Any) -> None:
        """Once registered (a worker that never registers runs no job, and sweeps nothing): the keeper, and
        the clone sweep (the main process only: clones a killed job left are deleted)."""
        if self.keeper is not None:
            self.keeper.start()
        if self.clone_sweep is not None:
            self.clone_sweep.start()

    # the framework's signature (its `timeout` bounds the wait for the jobs)
    async def drain(self, timeout: NotGivenOr[int | None] = NOT_GIVEN) -> None:  # noqa: ASYNC109
        """SIGTERM: the framework's drain, after telling the jobs, which hand their rooms over."""
        self.registration.draining = True  # the health check: no longer taking jobs
        if self.drain_flag is not None:
            self.drain_flag.raise_flag()
        await super().drain(timeout)

    async def run(self, *, devmode: bool = False, unregistered: bool = False) -> None:
        self.drain_flag = DrainFlag.for_worker()  # job processes inherit its path (`run/handover.py`)
        loop = asyncio.get_running_loop()
        self.registration.on_rejected(
            lambda status: loop.call_soon_threadsafe(self._give_up_rejected, status)
        )
        watch = ConnectionWatch(self.registration)
        watch.attach()
        self._health = health = HealthServer(
            self.registration, self.health_port, lambda: self.worker_info.http_port
        )
        starting: list[asyncio.Task[None]] = []
        # once the framework has set itself up (a failure before that leaves the CLI's stop path broken)
        self.once("worker_started", lambda: starting.append(loop.create_task(self._serve_health(health))))
        try:
            await super().run(devmode=devmode, unregistered=unregistered)
        except RuntimeError:
            if self.registration.registered or not self.registration.failures:
                raise  # not the framework giving up on LiveKit: the CLI logs it
            # the framework's last retry failed (it logs its traceback; this line says what to check).
            # Every failed attempt but the last is logged as a retry: one more than `failures`
            self.registration.gave_up = True
            attempts = self.registration.failures + 1
            logger.error(
                "could not connect to LiveKit after %d attempts; giving up: check LIVEKIT_URL and the "
                "network",
                attempts,
                extra={"attempts": attempts},
            )
        finally:
            watch.detach()
            await asyncio.gather(*starting, return_exceptions=True)
            await health.aclose()  # closed by `aclose` already, unless `run` failed

    async def aclose(self) -> None:
        """The CLI's last step: the framework's closing, then the health endpoint's (it keeps answering
        while the worker drains). Here, not at the end of `run`: the CLI cancels what is left of `run`."""
        if self.keeper is not None:
            await self.keeper.aclose()
        if self.clone_sweep is not None:
            await self.clone_sweep.aclose()
        await super().aclose()
        if self.drain_flag is not None:
            self.drain_flag.remove()
        if self._health is not None:
            await self._health.aclose()

    @property
    def failed(self) -> bool:
        """The worker could not run: LiveKit rejected it or stayed unreachable, or HEALTH_PORT was taken."""
        return self.registration.failed or self.health_failed

    async def _serve_health(self, health: HealthServer) -> None:
        try:
            await health.start()
        except OSError as e:
            self.health_failed = True
            logger.error(
                "the health endpoint cannot listen on HEALTH_PORT %d (%s); stopping",
                self.health_port,
                e.strerror or type(e).__name__,
                extra={"port": self.health_port},
            )
            os.kill(os.getpid(), signal.SIGTERM)

    def _give_up_rejected(self, status: int) -> None:
        logger.error(
            "LiveKit rejected the worker's credentials (HTTP %d): check LIVEKIT_API_KEY and "
            "LIVEKIT_API_SECRET; giving up",
            status,
            extra={"status": status},
        )
        # the framework's CLI stops on SIGTERM: it drains the rooms still running, then closes
        os.kill(os.getpid(), signal.SIGTERM)


def build_server(settings: ServerSettings) -> InterpreterServer:
    """The worker: it takes SESSIONS_PER_CORE × cores rooms, bursts included (`agent/run/capacity.py` says
    how the framework's options are chosen for that); `dev` keeps the framework's development defaults
    (no load threshold, no warm process)."""
    capacity = Capacity.per_core(settings.sessions_per_core, settings.load_cpu, handover_attributes)
    server = InterpreterServer(
        health_port=settings.health_port,
        health_grace_s=settings.health_grace_s,
        max_retry=settings.connect_retries,
        setup_fnc=prewarm,
        # imported once in the framework's forkserver, which forks every job process: ~0.3 s of CPU and
        # ~9 MB per process saved (each job process would import it to find the entrypoint)
        preload_modules=["agent.run.worker"],
        load_fnc=capacity.load,
        load_threshold=ServerEnvOption(dev_default=math.inf, prod_default=LOAD_FULL),
        num_idle_processes=ServerEnvOption(
            dev_default=0, prod_default=capacity.warm_processes(settings.warm_processes)
        ),
        prometheus_port=settings.prometheus_port,
        prometheus_multiproc_dir=settings.prometheus_dir,
        shutdown=ShutdownBounds(drain_s=settings.drain_timeout_s),
    )
    capacity.serve(server)
    server.rtc_session(
        entrypoint, agent_name=settings.agent_name, on_request=capacity.on_request, on_session_end=drain_room
    )
    if settings.keeper_interval_s > 0 and settings.livekit is not None:
        server.keeper = Keeper(settings.livekit, settings.agent_name, settings.keeper_interval_s)
    if settings.clone_sweep is not None:
        server.clone_sweep = CloneSweep(settings.clone_sweep)
    return server
