"""Test-only (tests/test_logs.py puts this folder on PYTHONPATH): in every process of `python -m agent`, the
worker, its job processes (forked by the forkserver, which imports this too) and the file mode, an
`agent.session` record at INFO and one at WARNING, once the process's logging is set up (a root handler)."""

from __future__ import annotations

import logging
import os
import threading
import time


def _probe() -> None:
    root = logging.getLogger()
    deadline = time.monotonic() + 20
    while not root.handlers and time.monotonic() < deadline:
        time.sleep(0.05)
    if not root.handlers:
        return  # a process that never sets up logging (the forkserver itself)
    time.sleep(0.2)
    logger = logging.getLogger("agent.session")
    logger.info("log probe: info from pid %d", os.getpid())
    logger.warning("log probe: warning from pid %d", os.getpid())


def _start() -> None:
    threading.Thread(target=_probe, name="log-probe", daemon=True).start()


_start()
os.register_at_fork(after_in_child=_start)
