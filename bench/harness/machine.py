"""The load the machine was under while a benchmark ran, and a process's memory.

Each result carries the machine's load (`machine`): the load averages before and after, the share of all
cores busy during the run, and the number of cores, so a figure always comes with the load it was measured
under (figures near saturation move with it).
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil


class MachineLoad:
    """The machine's load over a run: load averages before and after, and the busy share of all cores."""

    def __init__(self) -> None:
        self._load0 = os.getloadavg()
        self._cpu0 = psutil.cpu_times()
        self._wall0 = time.perf_counter()

    def figures(self) -> dict[str, Any]:
        cpu1 = psutil.cpu_times()
        busy = _busy(cpu1) - _busy(self._cpu0)
        total = _total(cpu1) - _total(self._cpu0)
        return {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in self._load0],  # 1, 5, 15 min
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "cpu_busy_share": round(busy / total, 3) if total > 0 else None,  # all cores, this run included
            "wall_s": round(time.perf_counter() - self._wall0, 1),
        }


def _total(times: Any) -> float:  # Linux counts guest time inside user time too
    return float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _busy(times: Any) -> float:
    return _total(times) - times.idle - getattr(times, "iowait", 0.0)


def describe(machine: dict[str, Any]) -> str:
    """One line for a report: the load a run's figures were measured under."""
    if "loadavg_before" not in machine:
        return f"machine: {machine.get('cpus')} cores (load not recorded)"
    busy = machine["cpu_busy_share"]
    busy_text = f"{busy * 100:.0f}%" if busy is not None else "?"
    return (
        f"machine: {machine['cpus']} cores, load average (1 min) {machine['loadavg_before'][0]} before → "
        f"{machine['loadavg_after'][0]} after, all cores {busy_text} busy during the run"
        f" (this benchmark included), {machine['wall_s']} s"
    )


def rss_mb(pid: int | str = "self") -> float:
    """A process's resident memory (MiB; NaN when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
