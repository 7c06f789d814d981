"""Where a benchmark writes its results, and the load the machine was under while it ran.

By default every benchmark writes to `bench-results/` at the repository root (ignored by git), so a run
never overwrites the committed figures in `bench/results/`; `--write-results` writes there instead, and
`--out` names any folder. Each result carries the machine's load (`machine`): the load averages before and
after, the share of all cores busy during the run, and the number of cores, so a figure always comes with
the load it was measured under (figures near saturation move with it).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import psutil

COMMITTED = Path(__file__).parent.parent / "results"
SCRATCH = Path(__file__).parent.parent.parent / "bench-results"


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=None, help=f"write the results to this folder (default: {SCRATCH.name}/)"
    )
    parser.add_argument(
        "--write-results",
        action="store_true",
        help=f"write to the committed {COMMITTED.parent.name}/{COMMITTED.name}/ (overwriting it)",
    )


def output_dir(args: argparse.Namespace) -> Path:
    if args.out is not None and args.write_results:
        raise SystemExit("--out and --write-results name two folders: give one")
    out: Path = args.out if args.out is not None else COMMITTED if args.write_results else SCRATCH
    out.mkdir(parents=True, exist_ok=True)
    print(f"results go to {out}", flush=True)
    return out


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
