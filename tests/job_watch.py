"""Test-only observation of a worker's job processes (`python -m agent start` run unchanged), installed by
tests/watch_jobs/sitecustomize.py when $JOB_WATCH_DIR is set. Observation only: nothing the job does is
changed.

What a listener in the room cannot see, checked in every job process the worker forks:
- the order of the job's last steps: when each of its tracks was unpublished and the room disconnected
  (the room's `connect`, `disconnect` and the local participant's `unpublish_track`, livekit.rtc methods
  the framework and the agent call, are wrapped to note when);
- tasks left running: when the framework's shutdown callbacks are done (the job's last word), the tasks
  started since the room connected that are still pending are listed (the framework would cancel them
  silently when its loop shuts down, as `asyncio.run` does);
- unclosed resources: a forkserver child ends with `os._exit` (multiprocessing/forkserver.py), without the
  interpreter's own finalization, so an aiohttp session left open in a job process is otherwise never
  reported. At the process's exit a garbage collection runs with warnings and asyncio's errors going to
  stderr (the worker's output), where the test looks for "Unclosed client session" and the like.

Each job process writes `job-<pid>.json` to $JOB_WATCH_DIR when its shutdown callbacks are done.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import multiprocessing.util
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WATCH_DIR_ENV = "JOB_WATCH_DIR"
SITE_DIR = Path(__file__).parent / "watch_jobs"  # put on PYTHONPATH to install the watch
HARNESS = "job-watch"  # the name of this module's own task


@dataclass
class JobReport:
    pid: int = 0
    connected_at: float = 0.0  # time.monotonic(), the same clock in every process of this machine
    unpublished_at: dict[str, float] = field(default_factory=dict)  # the agent's track name → when
    disconnect_started_at: float = 0.0
    disconnected_at: float = 0.0
    callbacks_done_at: float = 0.0
    pending_tasks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    watch_completed: bool = False

    def write(self) -> None:
        path = Path(os.environ[WATCH_DIR_ENV]) / f"job-{self.pid}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=1))
        tmp.replace(path)


def watched_worker_env(directory: Path) -> dict[str, str]:
    """The environment that installs the watch in a worker (`real_room(..., **watched_worker_env(d))`);
    its job reports go to `directory`."""
    root = str(Path(__file__).parent.parent)
    return {"PYTHONPATH": os.pathsep.join([root, str(SITE_DIR)]), WATCH_DIR_ENV: str(directory)}


def read_reports(directory: Path) -> list[JobReport]:
    return [JobReport(**json.loads(p.read_text())) for p in sorted(directory.glob("job-*.json"))]


class _Anchor:  # multiprocessing keeps after-fork hooks only while their object lives
    pass


_ANCHOR = _Anchor()


def install() -> None:
    """In any process of the worker: watch each process forked from now on (the job processes)."""
    multiprocessing.util.register_after_fork(_ANCHOR, _in_forked_process)


def _in_forked_process(_: object) -> None:
    # runs in the child's bootstrap, after multiprocessing cleared the finalizers inherited from its parent
    multiprocessing.util.Finalize(None, _collect_garbage_at_exit, exitpriority=0)
    from livekit import rtc

    report = JobReport(pid=os.getpid())
    connect, disconnect = rtc.Room.connect, rtc.Room.disconnect
    unpublish = rtc.LocalParticipant.unpublish_track
    baseline: set[asyncio.Task[Any]] = set()
    watches: set[asyncio.Task[None]] = set()

    async def watched_connect(self: rtc.Room, *args: Any, **kwargs: Any) -> None:
        await connect(self, *args, **kwargs)
        report.connected_at = time.monotonic()
        baseline.update(asyncio.all_tasks())  # the framework's and the room's own, running before the job's

    async def watched_disconnect(self: rtc.Room, **kwargs: Any) -> None:
        if report.disconnect_started_at:  # only the first (the framework's)
            return await disconnect(self, **kwargs)
        report.disconnect_started_at = time.monotonic()
        try:
            await disconnect(self, **kwargs)
        finally:
            report.disconnected_at = time.monotonic()
            # the framework creates the shutdown callbacks' tasks as soon as the disconnect returns
            watch = asyncio.create_task(_after_shutdown_callbacks(report, baseline), name=HARNESS)
            watches.add(watch)

    async def watched_unpublish(self: rtc.LocalParticipant, track_sid: str) -> None:
        publication = self.track_publications.get(track_sid)
        await unpublish(self, track_sid)
        if publication is not None:
            report.unpublished_at[publication.name] = time.monotonic()

    rtc.LocalParticipant.unpublish_track = watched_unpublish  # type: ignore[method-assign]
    rtc.Room.connect = watched_connect  # type: ignore[method-assign]
    rtc.Room.disconnect = watched_disconnect  # type: ignore[method-assign]


async def _after_shutdown_callbacks(report: JobReport, baseline: set[asyncio.Task[Any]]) -> None:
    try:
        me = asyncio.current_task()
        callbacks = [t for t in asyncio.all_tasks() if t.get_name() == "job_shutdown_callback"]
        if not callbacks:
            report.errors.append("found no job_shutdown_callback task after the room disconnected")
        else:
            await asyncio.wait(callbacks)
        report.callbacks_done_at = time.monotonic()
        for _ in range(3):  # let tasks cancelled by the callbacks finish
            await asyncio.sleep(0)
        pending = [
            t
            for t in asyncio.all_tasks()
            if not t.done() and t is not me and t not in baseline and t not in callbacks
        ]
        report.pending_tasks = [f"{t.get_name()}: {t.get_coro()!r}" for t in pending]
        report.watch_completed = True
    except Exception as e:
        report.errors.append(repr(e))
    finally:
        report.write()


def _collect_garbage_at_exit() -> None:
    """At the job process's exit (its log forwarding is closed by then): surface unclosed resources."""
    logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
    gc.collect()
