"""The interpreter worker as production runs it (`python -m agent start`, a subprocess with its own job
processes), registered with a real LiveKit server, its providers pointed at fakes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import psutil

from tests.livekit_server import LiveKitServer, free_port
from tests.loopback import eventually

ROOT = Path(__file__).parent.parent
REGISTERED = "registered worker"  # the framework's log line once the server accepted the worker
# the framework's log lines when the worker's load crosses its threshold (0.7: its rooms at its capacity, or
# its CPU saturated, agent/run/capacity.py); the server drops (does not queue) a dispatch that finds no
# available worker
FULL, AVAILABLE = "marking as unavailable", "marking as available"
JOB_REQUEST = "received job request"
PORT_TAKEN = "address already in use"


def agent_env(server: LiveKitServer) -> dict[str, str]:
    """The environment a `python -m agent` subprocess starts from: this checkout, development mode (inherited
    by job processes: ResourceWarnings and never-awaited coroutines are reported, so the tests can fail on
    them) and `server`'s URL and dev keys; nothing else from the test's own environment."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "PYTHONPATH": str(ROOT),
        "PYTHONDEVMODE": "1",
        "LIVEKIT_URL": server.url,
        "LIVEKIT_API_KEY": "devkey",
        "LIVEKIT_API_SECRET": "secret",
    }


async def spawn_agent(
    command: str, workdir: Path, env: Mapping[str, str], log_path: Path, *, own_group: bool = False
) -> asyncio.subprocess.Process:
    """`python -m agent <command>` in `workdir` (no .env from the repository), only `env` as its
    environment, its output (stdout and stderr) into `log_path`; with `own_group`, in a session (and
    process group) of its own, which its job processes share."""
    with log_path.open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            command,
            cwd=workdir,
            env=dict(env),
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=own_group,
        )


class WorkerProcess:
    def __init__(
        self, server: LiveKitServer, provider_env: dict[str, str], workdir: Path, **env: str
    ) -> None:
        self.server = server
        # set before `start`: a process group of its own, so that `kill_group` is a machine dying
        self.own_group = False
        self.workdir = workdir
        self.log_path = workdir / "worker.log"
        self.env = {
            **agent_env(server),
            "HEALTH_PORT": str(free_port()),
            "PROMETHEUS_PORT": str(free_port()),
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
            # the load's CPU term counts the worker's own processes: this machine also runs the server, the
            # participants, the fakes (and maybe other test runs), which must not make the worker refuse rooms
            "LOAD_CPU": "worker",
            # no keeper (agent/run/keeper.py): tests share one LiveKit server, and a keeper would dispatch
            # this worker into an earlier test's room still holding a participant; tests/test_recovery.py
            # turns it on, with agent names of its own
            "KEEPER_INTERVAL_S": "0",
            # two warm job processes, not one per room of its capacity (the default): enough for the tests'
            # rooms, and a test that starts several workers does not start dozens of processes
            "WARM_PROCESSES": "2",
            **provider_env,
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout_s: float = 60.0, attempts: int = 3) -> None:
        """Start the worker and wait until it registered. Its health and metrics ports were free when
        chosen, but another process can take one before the worker binds it (`free_port` is only a
        guess): then it is started again on new ports."""
        for attempt in range(1, attempts + 1):
            try:
                await self._start_once(timeout_s)
                return
            except AssertionError:
                if attempt == attempts or PORT_TAKEN not in self.output():
                    raise
                if self.proc is not None and self.proc.returncode is None:  # stopping by itself: at once
                    self.kill_tree()
                    await self.proc.wait()
                self.env["HEALTH_PORT"], self.env["PROMETHEUS_PORT"] = str(free_port()), str(free_port())

    async def _start_once(self, timeout_s: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = await spawn_agent(
            "start", self.workdir, self.env, self.log_path, own_group=self.own_group
        )
        await eventually(self._registered, within_s=timeout_s, what=f"the worker to register\n{self.tail()}")
        # the health endpoint binds once the worker has registered: a port taken meanwhile stops the worker
        deadline = time.perf_counter() + timeout_s
        while not await asyncio.to_thread(self._health_answers):
            if PORT_TAKEN in self.output() or time.perf_counter() > deadline:
                raise AssertionError(f"the worker's health endpoint did not answer\n{self.tail()}")
            await asyncio.sleep(0.1)

    def _registered(self) -> bool:
        if self.proc is not None and self.proc.returncode is not None:
            raise AssertionError(f"the worker exited with {self.proc.returncode}\n{self.tail()}")
        return REGISTERED in self.output()

    def _health_answers(self) -> bool:
        """The health endpoint answers (200, or 503 while the worker is not available), as the bound
        port is this worker's."""
        url = f"http://127.0.0.1:{self.env['HEALTH_PORT']}/"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def available(self) -> bool:
        """Whether the worker last told the server that it takes jobs."""
        output = self.output()
        return output.rfind(FULL) <= output.rfind(AVAILABLE)

    def job_requests(self, room: str) -> int:
        """How many jobs for `room` the server sent this worker (the framework logs each one)."""
        return len(self.job_dispatches(room))

    def job_dispatches(self, room: str) -> list[str]:
        """The dispatch of each job for `room` the server sent this worker, in order (their ids)."""
        marker = f'"room": {json.dumps(room)}'
        return [
            str(json.loads(line).get("dispatch_id"))
            for line in self.output().splitlines()
            if JOB_REQUEST in line and marker in line
        ]

    async def active_jobs(self) -> int:
        """How many jobs the worker runs now, as its health server's `/worker` reports it."""
        url = f"http://127.0.0.1:{self.env['HEALTH_PORT']}/worker"

        def get() -> int:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(json.loads(response.read()).get("active_jobs", 0))

        return await asyncio.to_thread(get)

    def tail(self, lines: int = 60) -> str:
        return "worker log:\n" + "\n".join(self.output().splitlines()[-lines:])

    async def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM to the worker process only (as Fly, Docker and Kubernetes send it); its exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            self.kill_tree()
            await self.proc.wait()
            raise AssertionError(
                f"the worker did not exit within {timeout_s} s of SIGTERM\n{self.tail()}"
            ) from None

    async def kill_group(self) -> None:
        """SIGKILL the worker's whole process group at once, its job processes with it (a machine that
        dies); needs `own_group`."""
        assert self.proc is not None and self.own_group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()

    def kill_tree(self) -> None:
        """SIGKILL the worker and its job processes (a hung worker's jobs would outlive it)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
        self.proc.kill()

    async def aclose(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(AssertionError):  # teardown: killed if it hangs
                await self.terminate(30)


def start_unregistered_worker(
    workdir: Path,
    *,
    pythonpath: tuple[Path, ...] = (),
    environment: Mapping[str, str] | None = None,
    **env: str,
) -> subprocess.Popen[str]:
    """`python -m agent start` against a LiveKit URL where nothing listens (the framework warns and keeps
    retrying), in a session of its own: its health, metrics and logs without a server. Output on stdout.
    `environment`, then `env`, add to (or override) its variables."""
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([*map(str, pythonpath), str(ROOT)]),
        "LIVEKIT_URL": "ws://127.0.0.1:9",
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": "secret",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom"),
        "WARM_PROCESSES": "1",
        **(environment or {}),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "start"],
        cwd=workdir,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
