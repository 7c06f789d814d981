"""CPU seconds per group of processes while the rooms talk (the worker's tree, the LiveKit server, the fakes,
the participants), the machine's busy cores, and the worker tree's memory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import psutil


class Meter:
    """CPU seconds per group of processes over a window (psutil, sampled every second, so processes that
    come and go are counted), the machine's busy cores, and the worker tree's memory."""

    def __init__(self, groups: dict[str, Callable[[], list[psutil.Process]]]) -> None:
        self.groups = groups
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self.rss_mb: list[float] = []
        self.pss_mb: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._t0 = 0.0
        self._t0_wall = 0.0
        self._machine0: Any = None
        self.wall = 0.0

    def _sample(self, memory: bool = False) -> None:
        for name, procs in self.groups.items():
            rss = pss = 0.0
            for proc in procs():
                try:
                    with proc.oneshot():
                        t = proc.cpu_times()
                        cpu = t.user + t.system
                        created = proc.create_time()
                        if memory and name == "worker":
                            info = proc.memory_full_info()
                            rss += info.rss / 2**20
                            pss += getattr(info, "pss", info.rss) / 2**20
                except psutil.Error:
                    continue
                key = (name, proc.pid)
                if key not in self._first:  # a process born in the window counts from its start
                    self._first[key] = 0.0 if created >= self._t0_wall else cpu
                self._last[key] = cpu
            if memory and name == "worker":
                self.rss_mb.append(rss)
                self.pss_mb.append(pss)

    async def _run(self) -> None:
        i = 0
        while True:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self._sample, i % 5 == 0)
            i += 1

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._t0_wall = time.time()
        self._machine0 = psutil.cpu_times()
        self._sample(memory=True)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, Any]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._sample(memory=True)
        self.wall = time.perf_counter() - self._t0
        machine1 = psutil.cpu_times()
        busy = sum(getattr(machine1, f) - getattr(self._machine0, f) for f in machine1._fields)
        idle = (machine1.idle - self._machine0.idle) + (
            getattr(machine1, "iowait", 0.0) - getattr(self._machine0, "iowait", 0.0)
        )
        cores = {name: 0.0 for name in self.groups}
        for (name, pid), last in self._last.items():
            cores[name] += max(0.0, last - self._first[(name, pid)]) / self.wall
        machine = (busy - idle) / self.wall
        # the worker's main process apart from its job processes (already in "worker")
        main = self.groups["worker"]()[:1]
        main_pid = main[0].pid if main else -1
        worker_main = max(
            0.0, self._last.get(("worker", main_pid), 0.0) - self._first.get(("worker", main_pid), 0.0)
        )
        return {
            "seconds": round(self.wall, 1),
            "cores": {k: round(v, 3) for k, v in cores.items()}
            | {
                "machine": round(machine, 3),
                "others": round(max(0.0, machine - sum(cores.values())), 3),  # other users of the machine
                "worker_main": round(worker_main / self.wall, 3),  # of "worker": the process jobs are not in
            },
            "worker_rss_mb": round(max(self.rss_mb, default=0.0), 1),
            "worker_pss_mb": round(max(self.pss_mb, default=0.0), 1),
        }


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
