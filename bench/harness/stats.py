"""Percentiles and summaries, the one place every workload takes them from: a summary in milliseconds
(`summary_ms`, p50/p90/p95/p99 and n, as the result files hold them), a quantile in seconds (`quantile`,
None for none) and a least-squares slope (`slope`, for lags that grow over a talk)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

from agent.telemetry.latency import percentile


def pct(values: list[float], q: float) -> float:
    """The q-th percentile of seconds, in milliseconds (NaN for none)."""
    return round(percentile(sorted(values), q) * 1000, 1) if values else float("nan")


def summary_ms(values: list[float]) -> dict[str, float]:
    return {f"p{q}": pct(values, q) for q in (50, 90, 95, 99)} | {"n": len(values)}


def quantile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile, in the values' own unit (None for none)."""
    ordered = sorted(values)
    return percentile(ordered, q) if ordered else None


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two distinct x)."""
    if len(points) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0
