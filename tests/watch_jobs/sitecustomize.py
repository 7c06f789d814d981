"""Imported by every Python process started with this directory on PYTHONPATH (the interpreter's `site`
does it): with $JOB_WATCH_DIR set, a worker's job processes are watched (tests/job_watch.py)."""

import os

if os.environ.get("JOB_WATCH_DIR"):
    from tests.job_watch import install

    install()
