"""`python -m agent local`: the interpreter on this machine, in one command.

Before starting anything it checks the provider keys (naming every missing one) and finds `livekit-server`
($LIVEKIT_SERVER, then PATH, then where ./scripts/install-livekit-server puts it). Then it starts, on
127.0.0.1 only:

1. `livekit-server --dev` (keys devkey/secret) on LOCAL_LIVEKIT_PORT (7880; media on the next two ports, TCP
   and UDP, as `--dev` does), its log in a file;
2. the worker, `python -m agent start`, registered with it (its output passed through to stderr, its JSON
   log lines as lines to read: `agent/run/local_log.py`);
3. the page and its token endpoint (`agent/run/web.py`) on WEB_PORT (8080), in this process;

and prints the page's URL once the worker has registered. Ctrl-C or SIGTERM stops the page, then the worker
(it drains for DRAIN_TIMEOUT_S, 5 s here unless the environment sets it), then the server; a process that
does not stop in time is killed (a second Ctrl-C kills at once). If the server or the worker dies, the
others are stopped and the exit code is 1; a missing key or binary is exit code 2.

The dev keys are short (`secret` is 6 bytes), so the JWT library warns at every token it signs with them
("The HMAC key is 6 bytes long, which is below the minimum recommended length ..."). Expected here, and
only here: `local` silences that warning in itself and in the worker it starts, and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from agent.run.local_log import ReadableFormatter, readable
from agent.run.web import page_url, start_site
from agent.settings.config import ConfigError, load_settings, read_environment
from agent.settings.web import WebSettings, load_web_settings

API_KEY, API_SECRET = "devkey", "secret"  # what `livekit-server --dev` accepts
DEFAULT_PORT = 7880
INSTALLED_AT = Path.home() / ".cache" / "livekit-interpreter" / "bin" / "livekit-server"
INSTALL_HINT = (
    "livekit-server not found (looked in $LIVEKIT_SERVER, on PATH and in "
    f"{INSTALLED_AT}): run ./scripts/install-livekit-server (or `brew install livekit`, or "
    "`curl -sSL https://get.livekit.io | bash`), or set LIVEKIT_SERVER to its path"
)
REGISTERED = "registered worker"  # the framework's log line once the server accepted the worker
SERVER_START_S = 30.0
WORKER_REGISTER_S = 90.0
JOB_SHUTDOWN_S = 40.0  # after the drain, each job's own shutdown bound (35.5 s at most) and some
SERVER_STOP_S = 10.0
LOCAL_DRAIN_TIMEOUT_S = "5"
# how the JWT library's warning about the dev keys' length starts (a UserWarning)
DEV_KEY_WARNING = "The HMAC key is"


class Problems(Exception):
    """What stops `local` before it starts anything, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("python -m agent local cannot start:\n" + "\n".join(f"  - {p}" for p in problems))


def find_livekit_server(env: Mapping[str, str | None]) -> str | None:
    if path := env.get("LIVEKIT_SERVER"):
        return path if os.access(path, os.X_OK) else None
    if path := shutil.which("livekit-server", path=env.get("PATH") or None):
        return path
    return str(INSTALLED_AT) if os.access(INSTALLED_AT, os.X_OK) else None


@dataclass(frozen=True, slots=True)
class LocalPlan:
    binary: str
    port: int  # the server's signalling port; media on port + 1 (TCP) and port + 2 (UDP)
    worker_env: dict[str, str]
    web: WebSettings
    run_dir: Path  # the server's log

    @property
    def worker_stop_s(self) -> float:
        """How long the worker may take to stop: its drain, then its jobs' shutdown."""
        drain = self.worker_env["DRAIN_TIMEOUT_S"]
        return (float(drain) if drain.isdigit() else float(LOCAL_DRAIN_TIMEOUT_S)) + JOB_SHUTDOWN_S

    @property
    def livekit_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def server_config(self) -> dict[str, object]:
        return {
            "port": self.port,
            "bind_addresses": ["127.0.0.1"],
            "rtc": {
                "tcp_port": self.port + 1,
                "udp_port": self.port + 2,
                "use_external_ip": False,
                "enable_loopback_candidate": True,
                "node_ip": "127.0.0.1",
            },
            "keys": {API_KEY: API_SECRET},
        }


def plan(env: Mapping[str, str | None], environ: Mapping[str, str]) -> LocalPlan:
    """What to start, from `env` (the environment over .env); `environ` is the real environment, passed to
    the worker. `Problems` names everything missing: every provider key, the binary, a bad setting."""
    problems: list[str] = []
    port = DEFAULT_PORT
    if raw_port := (env.get("LOCAL_LIVEKIT_PORT") or "").strip():
        if raw_port.isdigit() and 1 <= int(raw_port) <= 65533:
            port = int(raw_port)
        else:
            problems.append(
                f"LOCAL_LIVEKIT_PORT={raw_port!r} is malformed: expected an integer from 1 to 65533"
            )
    url = f"ws://127.0.0.1:{port}"
    local = {"LIVEKIT_URL": url, "LIVEKIT_API_KEY": API_KEY, "LIVEKIT_API_SECRET": API_SECRET}
    try:
        load_settings({**env, **local})  # the provider keys, as the worker checks them
    except ConfigError as e:
        problems += e.problems
    web: WebSettings | None = None
    try:
        web_env = {**env, **local, "WEB_LIVEKIT_URL": url, "WEB_HOST": env.get("WEB_HOST") or "127.0.0.1"}
        web = load_web_settings(web_env)
    except ConfigError as e:
        problems += [p for p in e.problems if p not in problems]
    binary = find_livekit_server(env)
    if binary is None:
        problems.append(INSTALL_HINT)
    if problems or binary is None or web is None:
        raise Problems(problems)
    worker_env = {
        **environ,
        **local,
        # a stopping worker lets its rooms finish this long (the production default, 260 s, is for Fly)
        "DRAIN_TIMEOUT_S": environ.get("DRAIN_TIMEOUT_S", LOCAL_DRAIN_TIMEOUT_S),
        # the browser and the server share this machine: count only the worker's own CPU in its load
        "LOAD_CPU": environ.get("LOAD_CPU", "worker"),
        # a few rooms at most on one machine for trying it out: two warm job processes, not one per room
        "WARM_PROCESSES": environ.get("WARM_PROCESSES", "2"),
        # the dev keys are short by design: no warning about their length (the last filter wins)
        "PYTHONWARNINGS": ",".join(
            filter(None, [environ.get("PYTHONWARNINGS"), f"ignore:{DEV_KEY_WARNING}:UserWarning"])
        ),
    }
    return LocalPlan(
        binary=binary,
        port=port,
        worker_env=worker_env,
        web=web,
        run_dir=Path(tempfile.mkdtemp(prefix="interpreter-local-")),
    )


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Child:
    """A process of ours in a session of its own (a Ctrl-C in the terminal reaches only `local`, which stops
    the children in order)."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self.exited = asyncio.ensure_future(proc.wait())

    async def stop(self, within_s: float, hurry: asyncio.Event) -> None:
        """SIGTERM; SIGKILL to its process group (its children too) after `within_s`, or on `hurry`."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        hurried = asyncio.ensure_future(hurry.wait())
        try:
            await asyncio.wait({self.exited, hurried}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hurried.cancel()
        if self.proc.returncode is None:  # not reaped yet: its process group is still ours to kill
            why = "a second signal" if hurry.is_set() else f"not stopped within {within_s:.0f} s"
            say(f"{self.name} killed ({why})")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        await self.exited


class Local:
    def __init__(self, plan: LocalPlan) -> None:
        self.plan = plan
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()
        self.registered = asyncio.Event()
        self.children: list[Child] = []
        self._pump: asyncio.Task[None] | None = None
        self.log_format = ReadableFormatter(color=sys.stderr.isatty())

    def signalled(self) -> None:
        if self.stop.is_set():
            self.hurry.set()
        self.stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.signalled)
        runner = None
        try:
            try:
                server = await self._start_server()
            except OSError as e:
                say(f"cannot start livekit-server ({self.plan.binary}): {e.strerror or e}")
                return 1
            if not await self._until(asyncio.ensure_future(self._server_ready()), server, "livekit-server"):
                return 0 if self.stop.is_set() else 1
            worker = await self._start_worker()
            try:
                runner = await start_site(self.plan.web)
            except OSError as e:
                say(f"cannot serve the page on {self.plan.web.host}:{self.plan.web.port}: {e.strerror or e}")
                return 1
            registered = asyncio.ensure_future(self.registered.wait())
            if not await self._until(registered, worker, "the worker", WORKER_REGISTER_S):
                return 0 if self.stop.is_set() else 1
            url = page_url(self.plan.web)
            print(f"The page: {url} (LiveKit at {self.plan.livekit_url}). Ctrl-C stops it all.", flush=True)
            died = await self._watch()
            return 1 if died else 0
        finally:
            say("stopping")
            if runner is not None:
                await runner.cleanup()
            await self._stop_children()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def _start_server(self) -> Child:
        log_path = self.plan.run_dir / "livekit-server.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                self.plan.binary,
                "--dev",
                "--config-body",
                json.dumps(self.plan.server_config()),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        say(f"livekit-server --dev on {self.plan.livekit_url} (keys {API_KEY}/{API_SECRET}), log: {log_path}")
        child = Child("livekit-server", proc)
        self.children.append(child)
        return child

    async def _server_ready(self) -> None:
        url = f"http://127.0.0.1:{self.plan.port}"
        async with aiohttp.ClientSession() as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)

    async def _start_worker(self) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            "start",
            env=self.plan.worker_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        child = Child("the worker", proc)
        self.children.append(child)
        assert proc.stdout is not None
        self._pump = asyncio.create_task(self._pass_through(proc.stdout))
        return child

    async def _pass_through(self, stream: asyncio.StreamReader) -> None:
        """The worker's output to our stderr, line by line (its log records made readable), watching for
        its registration."""
        while raw := await stream.readline():
            line = raw.decode(errors="replace").rstrip("\n")
            sys.stderr.write(readable(line, self.log_format) + "\n")
            sys.stderr.flush()
            if REGISTERED in line:
                self.registered.set()

    async def _until(
        self, waiting: asyncio.Future[Any], child: Child, what: str, within_s: float = SERVER_START_S
    ) -> bool:
        """Whether `waiting` finished before `child` exited, a signal came, or `within_s` passed."""
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait(
                {waiting, child.exited, stopped}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (waiting, stopped):
                task.cancel()
        if waiting.done() and not waiting.cancelled():
            return True
        if child.exited.done():
            say(f"{what} exited with code {child.proc.returncode} while starting{self._log_hint(child)}")
        elif not self.stop.is_set():
            say(f"{what} did not start within {within_s:.0f} s{self._log_hint(child)}")
        return False

    async def _watch(self) -> bool:
        """Wait for a signal (False) or a child's death (True, said on stderr)."""
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait(
                {stopped, *(child.exited for child in self.children)}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
        for child in self.children:
            if child.exited.done():
                say(f"{child.name} exited with code {child.proc.returncode}{self._log_hint(child)}")
                return True
        return False

    def _log_hint(self, child: Child) -> str:
        if child.name == "livekit-server":
            return f" (its log: {self.plan.run_dir / 'livekit-server.log'})"
        return " (its output is above)"

    async def _stop_children(self) -> None:
        for child in reversed(self.children):  # the worker first, then the server
            within = self.plan.worker_stop_s if child.name == "the worker" else SERVER_STOP_S
            await child.stop(within, self.hurry)
        if self._pump is not None:  # the worker's output ends with it (and its job processes)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pump, 5)
        say("stopped")


def main(argv: list[str]) -> int:
    if argv:
        print(__doc__, file=sys.stderr)
        return 0 if argv[0] in ("-h", "--help") else 2
    try:
        local = plan(read_environment(), os.environ)
    except Problems as e:
        print(e, file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ReadableFormatter(color=sys.stderr.isatty()))
    logging.basicConfig(level=local.web.log_level or "INFO", handlers=[handler])
    warnings.filterwarnings("ignore", message=DEV_KEY_WARNING, category=UserWarning)
    code = asyncio.run(Local(local).run())
    if code == 0:  # the server's log is kept only when something went wrong
        shutil.rmtree(local.run_dir, ignore_errors=True)
    return code
