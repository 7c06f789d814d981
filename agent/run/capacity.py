"""How many rooms a worker takes, and the load it reports for them ([deploying](docs/deploying.md),
"Capacity and dispatch").

A worker takes exactly `capacity` = SESSIONS_PER_CORE × cores rooms, bursts included, and none while its
CPU is saturated. Two gates decide, both through the framework's public options:

- **The framework's own check** (livekit-agents 1.8.9, `AgentServer._answer_availability`), before our
  request handler runs, answers "not available" when `load + reserved × estimate ≥ load_threshold`: `load`
  is our `load_fnc`, `reserved` the requests it said yes to and has not launched yet, `estimate` the load
  per running job (`load / running`) or, with no job running, `load_threshold / num_idle_processes`. It
  also marks the worker full (WS_FULL) for LiveKit when that sum reaches the threshold. With
  `load = LOAD_FULL × running / capacity` and `load_threshold = LOAD_FULL`, the estimate is one room's
  share, so it says no exactly when running + reserved ≥ capacity; with no job running, exactly when
  reserved ≥ num_idle_processes, which is why WARM_PROCESSES defaults to the capacity (capped).
- **Our request handler** (`on_request`) accepts while the jobs running and those it is accepting number
  fewer than the capacity and the CPU is not saturated, else declines with `terminate=False`, so LiveKit
  offers the room to another worker (`terminate=True`, the framework's default, would end the dispatch).

The load LiveKit sees is LOAD_FULL at capacity, because livekit-server 1.13.5 offers a job to a server
node only while one of its available workers reports a load below its `agents.target_load` (0.7 by default:
`JobRequestAffinity` sums `target_load − load`, and psrpc never picks an affinity of 0), and to a worker at
random, weighted by 1 − load (`selectWorkerWeightedByLoad`).

CPU counts only once saturated (CPU_SATURATED, smoothed over CPU_SMOOTHING_S): the load is then LOAD_FULL.
A CPU term that grew with use would be multiplied by the framework's estimate for every reserved request,
and the CPU of a burst's own job start-ups would make the worker refuse rooms it has room for.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
from livekit.agents import AgentServer, JobRequest
from livekit.agents.utils.hw import get_cpu_monitor

from agent.room.room_io import ATTR_STARTED_AT

logger = logging.getLogger("agent.worker")

LOAD_FULL = 0.7  # the framework's production load_threshold, and livekit-server's default agents.target_load
CPU_SATURATED = 0.9  # smoothed CPU use (0-1 of the cores) at which the worker takes no new room
CPU_SMOOTHING_S = 10.0  # time constant of that smoothing: a burst's start-ups last a few seconds
MAX_DEFAULT_WARM = 16  # warm processes by default: the capacity, but no more than this


class CpuSampler:
    """CPU use (0-1 of this machine's cores, cgroup-aware), sampled once a second on a daemon thread, so
    reading it never blocks the worker's event loop; `smoothed` is its exponential average over
    `smoothing_s`. `scope` "machine" counts everything running here (right when the machine runs only the
    worker, as on Fly); "worker" counts only this worker's own processes (its jobs included), for a machine
    shared with other services (or a test's LiveKit server and participants)."""

    def __init__(self, scope: str = "machine", smoothing_s: float = CPU_SMOOTHING_S) -> None:
        self.monitor = get_cpu_monitor()
        self.scope = scope
        self.smoothing_s = smoothing_s
        self.value = 0.0  # over the last second
        self.smoothed = 0.0
        self._thread: threading.Thread | None = None

    def __call__(self) -> float:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="interpreter-cpu-sampler")
            self._thread.start()
        return self.value

    def saturated(self) -> bool:
        self()
        return self.smoothed >= CPU_SATURATED

    def record(self, value: float, seconds: float) -> None:
        """A sample: `value` over the last `seconds`."""
        self.value = value
        self.smoothed += (value - self.smoothed) * (1 - math.exp(-seconds / self.smoothing_s))

    def _run(self) -> None:
        if self.scope == "worker":
            self._sample_worker_processes()
        else:
            while True:
                started = time.monotonic()
                value = self.monitor.cpu_percent(interval=1.0)
                self.record(value, time.monotonic() - started)

    def _sample_worker_processes(self) -> None:
        root = psutil.Process()
        cores = self.monitor.cpu_count()
        seen: dict[int, float] = {}  # pid → CPU seconds at the last sample, for the processes alive then
        while True:
            started = time.monotonic()
            time.sleep(1.0)
            used, now = 0.0, {}
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    now[proc.pid] = times.user + times.system
                    used += now[proc.pid] - seen.get(proc.pid, now[proc.pid])
            seen = now  # ended jobs' processes drop out: bounded however many jobs the worker runs
            elapsed = time.monotonic() - started
            self.record(min(1.0, used / elapsed / cores), elapsed)


class Capacity:
    """The rooms this worker takes (`rooms`): its load for the framework and LiveKit (`load`, the
    framework's `load_fnc`) and its request handler (`on_request`). `saturated` says whether the CPU is
    saturated now."""

    def __init__(
        self,
        rooms: int,
        saturated: Callable[[], bool] | None = None,
        attributes: Callable[[JobRequest], dict[str, str]] | None = None,
    ) -> None:
        self.rooms = max(1, rooms)
        self._saturated = saturated or (lambda: False)
        # more attributes for the agent of an accepted job (e.g. whom it takes a room over from)
        self._attributes = attributes or (lambda request: {})
        self._server: Any = None  # the AgentServer (or anything with its `active_jobs`) it answers for
        self._accepting: set[str] = set()  # job ids accepted and not yet launched

    @classmethod
    def per_core(
        cls,
        sessions_per_core: int,
        cpu_scope: str = "machine",
        attributes: Callable[[JobRequest], dict[str, str]] | None = None,
    ) -> Capacity:
        """SESSIONS_PER_CORE × this machine's cores (cgroup-aware: a container's CPU quota)."""
        rooms = round(sessions_per_core * get_cpu_monitor().cpu_count())
        return cls(rooms, CpuSampler(cpu_scope).saturated, attributes)

    def warm_processes(self, wanted: int | None) -> int:
        """How many job processes to keep warm: WARM_PROCESSES (`wanted`), by default the capacity up to
        MAX_DEFAULT_WARM; never more than the capacity (a process beyond it would never get a job)."""
        return min(wanted or min(self.rooms, MAX_DEFAULT_WARM), self.rooms)

    def serve(self, server: AgentServer) -> None:
        self._server = server

    def load(self, server: AgentServer) -> float:
        """LOAD_FULL × running jobs / capacity, or LOAD_FULL while the CPU is saturated. Runs on one of
        the framework's executor threads: it only reads."""
        if self._saturated():
            return LOAD_FULL
        return LOAD_FULL * min(1.0, len(server.active_jobs) / self.rooms)

    def taken(self) -> int:
        """Rooms taken: the jobs running and the ones being accepted (a job runs once it is launched)."""
        running = {info.job.id for info in self._server.active_jobs} if self._server is not None else set()
        return len(running | self._accepting)

    async def on_request(self, request: JobRequest) -> None:
        """Accept while a room is free (marking when, `interpreter.started_at`), else decline so that
        LiveKit offers the job to another worker."""
        taken, saturated = self.taken(), self._saturated()
        if saturated or taken >= self.rooms:
            logger.info(
                "declining a room: %s; LiveKit may offer it to another worker",
                "the CPU is saturated" if saturated else "at capacity",
                extra={"job_id": request.id, "taken": taken, "capacity": self.rooms, "saturated": saturated},
            )
            await request.reject(terminate=False)
            return
        self._accepting.add(request.id)
        try:
            started = {ATTR_STARTED_AT: str(round(time.time() * 1000))}
            await request.accept(attributes={**self._attributes(request), **started})
        finally:  # launched (then running), or never assigned
            self._accepting.discard(request.id)
