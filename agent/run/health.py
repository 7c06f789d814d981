"""Whether the worker is registered with LiveKit, and the health endpoint that says so.

livekit-agents 1.8.9's own health endpoint answers 200 while every connection attempt fails (a dead
LIVEKIT_URL, or a 401 for bad credentials); only after its last retry (16 by default, about two minutes)
does it answer 503, and then the process exits 0 (worker.py `_connection_task`, cli.py `_run_worker`).
What the framework tells about its connection, publicly: the `worker_registered` event, on every
registration; and a warning on the `livekit.agents` logger for every failed attempt, whose record carries
`retry_count`, `max_retry` and the `error` (there is no event for it). `Registration` follows both, and
`HealthServer` answers from it on HEALTH_PORT:

- 200 `OK` while registered and taking jobs;
- 503 once the worker drains (SIGTERM: it takes no new rooms and hands its rooms over);
- 200 while the worker starts, for `grace_s` (HEALTH_GRACE_S) after start-up, before its first registration;
- 503 otherwise: never registered after the grace period, the connection lost (no grace then), or LiveKit
  refused the worker's credentials.

It also serves the framework's `/worker` (its status as JSON), fetched from the framework's own HTTP server,
which listens on a port of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

# what LiveKit answers a worker whose API key or secret it does not accept (the real server: 401)
REJECTED_STATUSES = frozenset({401, 403})
FRAMEWORK_LOGGER = "livekit.agents"


class Registration:
    """The worker's registration with LiveKit, as the framework reports it. Read and written on the worker's
    event loop (the framework logs its connection warnings there)."""

    def __init__(self, grace_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._grace_ends = clock() + grace_s
        self.registered = False
        self.ever_registered = False
        self.failures = 0  # connection attempts failed since the last registration
        self.rejected_status: int | None = None  # LiveKit refused the credentials with this HTTP status
        self.gave_up = False  # the framework stopped retrying
        self.draining = False  # SIGTERM: the worker takes no new rooms
        self._on_rejected: list[Callable[[int], object]] = []

    def on_rejected(self, callback: Callable[[int], object]) -> None:
        """Call `callback(status)` once, when LiveKit first refuses the worker's credentials."""
        self._on_rejected.append(callback)

    def registered_now(self, *_: object) -> None:
        """The framework's `worker_registered` event (worker id, server info)."""
        self.registered = self.ever_registered = True
        self.failures = 0

    def connection_failed(self, error: object) -> None:
        """A connection attempt failed (or a live connection broke): the framework retries."""
        self.registered = False
        self.failures += 1
        if (
            isinstance(error, aiohttp.WSServerHandshakeError)
            and error.status in REJECTED_STATUSES
            and self.rejected_status is None
        ):
            self.rejected_status = error.status
            for callback in self._on_rejected:
                callback(error.status)

    @property
    def failed(self) -> bool:
        """The worker could not work with LiveKit and gave up (its exit code should say so)."""
        return self.rejected_status is not None or self.gave_up

    def health(self) -> tuple[int, str]:
        """The health endpoint's answer: status and text."""
        if self.draining:
            return 503, "draining: taking no new rooms"
        if self.registered:
            return 200, "OK"
        if self.rejected_status is not None:
            return 503, f"LiveKit rejected the worker's credentials (HTTP {self.rejected_status})"
        if self.gave_up:
            return 503, "gave up connecting to LiveKit"
        if not self.ever_registered and self._clock() < self._grace_ends:
            return 200, "starting: not registered with LiveKit yet"
        return 503, f"not registered with LiveKit ({self.failures} connection attempts failed)"


class ConnectionWatch(logging.Handler):
    """Feeds the framework's connection-retry warnings to a `Registration` (a handler on the `livekit.agents`
    logger while the worker runs; it prints nothing)."""

    def __init__(self, registration: Registration) -> None:
        super().__init__(logging.WARNING)
        self.registration = registration
        self._quieted: list[tuple[logging.Handler, logging.Filter]] = []
        self._framework_level: int | None = None

    def attach(self) -> None:
        """Start watching. The framework's logger must make its warnings even when LOG_LEVEL is ERROR: it is
        lowered to WARNING then, and the root's handlers (what prints) keep dropping what is below ERROR."""
        framework = logging.getLogger(FRAMEWORK_LOGGER)
        level = framework.getEffectiveLevel()
        if level > logging.WARNING:
            self._framework_level = framework.level
            framework.setLevel(logging.WARNING)
            for handler in logging.getLogger().handlers:
                below = AtLeast(level)
                handler.addFilter(below)
                self._quieted.append((handler, below))
        framework.addHandler(self)

    def detach(self) -> None:
        framework = logging.getLogger(FRAMEWORK_LOGGER)
        framework.removeHandler(self)
        if self._framework_level is not None:
            framework.setLevel(self._framework_level)
        for handler, below in self._quieted:
            handler.removeFilter(below)
        self._quieted.clear()

    def emit(self, record: logging.LogRecord) -> None:
        fields = record.__dict__
        if "retry_count" in fields and "max_retry" in fields:
            self.registration.connection_failed(fields.get("error"))


class AtLeast(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


class HealthServer:
    """GET / (the registration's health) and GET /worker (the framework's worker status) on `port`."""

    def __init__(self, registration: Registration, port: int, framework_port: Callable[[], int]) -> None:
        self.registration = registration
        self.port = port
        self._framework_port = framework_port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/", self._health), web.get("/worker", self._worker)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, None, self.port).start()

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _health(self, _: web.Request) -> web.Response:
        status, text = self.registration.health()
        return web.Response(status=status, text=text)

    async def _worker(self, _: web.Request) -> web.Response:
        url = f"http://127.0.0.1:{self._framework_port()}/worker"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.get(url) as response,
            ):
                return web.Response(
                    status=response.status, body=await response.read(), content_type=response.content_type
                )
        except (aiohttp.ClientError, TimeoutError):
            return web.Response(status=503, text="the worker's status is not available")
