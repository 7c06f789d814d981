"""What a workload's run leaves behind: its result file, carrying the machine's load over the run, the
pictures beside it, and the report printed with them (`write_results`); the pieces the reports and pictures
share."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness.machine import MachineLoad, describe

Draw = Callable[[dict[str, Any], Path], list[str]]  # draws a run's pictures into a folder: their file names


def write_results(
    out: Path,
    name: str,
    results: dict[str, Any],
    load: MachineLoad,
    *,
    draw: Draw | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """`results` with the machine's load over the run (`load`) to `out/name`, its pictures beside it, then the
    report, the load and what was written, printed."""
    results["machine"] = load.figures()  # the load the whole run was measured under
    (out / name).write_text(json.dumps(results, indent=1))
    pictures = draw(results, out) if draw is not None else []
    if report is not None:
        report(results)
    print(f"\n{describe(results['machine'])}")
    print(f"wrote {out / name}" + (f" and {', '.join(pictures)} beside it" if pictures else ""))


def summary_table(rows: list[tuple[str, dict[str, float]]], width: int) -> None:
    """Print summaries (`stats.summary_ms`) as a table: a row a label, p50 to p99 and n."""
    print(f"{'':<{width}}{'p50':>9}{'p90':>9}{'p95':>9}{'p99':>9}{'n':>6}")
    for label, s in rows:
        print(f"{label:<{width}}{s['p50']:>9}{s['p90']:>9}{s['p95']:>9}{s['p99']:>9}{s['n']:>6}")


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only (imported when a run draws, not before)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cdf(ax: Any, series: list[tuple[list[float], str]], title: str) -> None:
    """Cumulative distributions of end-to-end latencies (seconds, shown in ms) on one matplotlib axis."""
    for seconds, label in series:
        values = sorted(v * 1000 for v in seconds)
        ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=label)
    ax.set_xlabel("speech end → first translated frame (ms)")
    ax.set_ylabel("fraction of utterances")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
