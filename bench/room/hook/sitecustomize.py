"""Imported at start-up by every Python process of the worker `python -m bench room` runs (this directory
leads its PYTHONPATH): when BENCH_ROOM_RECORDS names a file, each latency record the worker's own tracker
completes is appended to it as one JSON line (its marks on the machine's monotonic clock, which
`time.perf_counter` reads in every process), then handed on to the tracker's own callback unchanged (the
Prometheus histograms). It only observes: no agent code is edited, and nothing the agent does changes."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

_PATH = os.environ.get("BENCH_ROOM_RECORDS")


def _install(path: str) -> None:
    from agent.telemetry import latency  # stdlib imports only: cheap in every process

    original_init = latency.LatencyTracker.__init__
    if getattr(original_init, "bench_observed", False):
        return

    def __init__(self: latency.LatencyTracker, *args: Any, on_complete: Any = None, **kwargs: Any) -> None:
        def observed(record: latency.UtteranceRecord) -> None:
            try:
                line = json.dumps(
                    {
                        "pid": os.getpid(),
                        "id": record.utterance_id,
                        "outcome": record.outcome,
                        "marks": {str(k): v for k, v in record.marks.items()},
                    }
                )
                with open(path, "a") as f:  # one short append per record: whole lines from every process
                    f.write(line + "\n")
            except Exception:  # observing must never break the job
                pass
            if on_complete is not None:
                on_complete(record)

        original_init(self, *args, on_complete=observed, **kwargs)

    __init__.bench_observed = True  # type: ignore[attr-defined]
    latency.LatencyTracker.__init__ = __init__  # type: ignore[method-assign]


if _PATH:
    with contextlib.suppress(Exception):  # the worker runs unobserved rather than not at all
        _install(_PATH)
