"""Shared plumbing for the fake provider servers: an aiohttp app bound to 127.0.0.1 on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType
from typing import Self

from aiohttp import web


class FakeServer:
    """Base of the fakes. Subclasses register their routes in `_setup`."""

    def __init__(self) -> None:
        self._app = web.Application()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._websockets: set[web.WebSocketResponse] = set()
        # set on aclose(): handlers that deliberately hang wait on it
        self._closing = asyncio.Event()
        self._setup(self._app)

    def _setup(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        self._closing.clear()
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def aclose(self) -> None:
        self._closing.set()

        async def close(ws: web.WebSocketResponse) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)

        # at once: a peer that is gone (a worker killed) never answers the close, and each waits its second
        await asyncio.gather(*(close(ws) for ws in list(self._websockets)))
        self._websockets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _wait_until_client_gone(self, request: web.Request) -> None:
        """Park a handler until the client disconnects or the server closes."""
        while not self._closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), 0.02)


def abort_connection(request: web.Request) -> None:
    """Drop the TCP connection under a request at once: no close frame, no end of body."""
    if request.transport is not None:
        request.transport.abort()
