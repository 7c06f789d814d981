"""A LiveKit cluster for the cluster tests: Debian's `redis-server` on a free loopback port (its own
temporary directory, nothing persisted) and two `livekit-server` nodes sharing it, each on its own ports
(signal, RTC TCP and UDP), `node_ip` 127.0.0.1 (tests/livekit_server.py).

Redis is found in $REDIS_SERVER (a path), then `redis-server` on PATH; `.ci/run` installs Debian's when it
is missing (`apt-get install redis-server`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from livekit import api

from tests.livekit_server import LiveKitServer, free_port

REDIS_HINT = (
    "redis-server not found: install Debian's (apt-get install redis-server) or set REDIS_SERVER to its path"
)


def find_redis() -> str | None:
    if path := os.environ.get("REDIS_SERVER"):
        return path if os.access(path, os.X_OK) else None
    return shutil.which("redis-server")


class RedisServer:
    """One `redis-server` on 127.0.0.1: no persistence (no RDB snapshots, no AOF), its working directory a
    temporary one, removed when it stops."""

    def __init__(self, binary: str, log_path: Path) -> None:
        self.binary = binary
        self.log_path = log_path
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self._dir), "--save", ""]
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [self.binary, *args, "--appendonly", "no", "--daemonize", "no", "--logfile", ""],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        while not self._pong():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server did not start:\n{self.log_path.read_text(errors='replace')}"
                )
            time.sleep(0.05)

    def _pong(self) -> bool:
        with contextlib.suppress(OSError):
            return self._command("PING") == b"+PONG"
        return False

    def hget(self, key: str, field: str) -> str | None:
        """A hash field (the nodes keep their routing state in Redis hashes), None when it is not set."""
        reply = self._command("HGET", key, field)
        return None if reply == b"$-1" else reply.split(b"\r\n")[1].decode()

    def _command(self, *parts: str) -> bytes:
        """One command in Redis's wire protocol (RESP), its reply without the final CRLF."""
        encoded = [p.encode() for p in parts]
        request = b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(request)
            reply = b""
            # a simple reply is one line; a bulk string ("$<length>", then the value) two, unless null ("$-1")
            while reply.count(b"\r\n") < (2 if reply.startswith(b"$") and reply[:3] != b"$-1" else 1):
                if not (chunk := s.recv(4096)):
                    break
                reply += chunk
        return reply.removesuffix(b"\r\n")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


class LiveKitCluster:
    """Redis and two nodes, `a` and `b`. A room goes to a random node unless it is created on one
    (`create_room(..., on=node)`); every node answers for every room (the API and signalling are routed
    to the room's node through Redis)."""

    def __init__(self, livekit_binary: str, redis_binary: str, logs: Path) -> None:
        self.redis = RedisServer(redis_binary, logs / "redis-server.log")
        self.a = LiveKitServer(livekit_binary, logs / "livekit-node-a.log", redis=self.redis.address)
        self.b = LiveKitServer(livekit_binary, logs / "livekit-node-b.log", redis=self.redis.address)

    @property
    def nodes(self) -> tuple[LiveKitServer, LiveKitServer]:
        return self.a, self.b

    def start(self) -> None:
        self.redis.start()
        try:
            for node in self.nodes:
                node.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(drain_s=0.2)  # no draining: the tests are over
        self.redis.stop()

    async def create_room(self, name: str, *, on: LiveKitServer, through: LiveKitServer) -> None:
        """Create `name` hosted on node `on`, asking node `through` (the API's `node_id`)."""
        lk = through.api()
        try:
            await lk.room.create_room(api.CreateRoomRequest(name=name, node_id=on.node_id))
        finally:
            await lk.aclose()

    def host_of(self, room: str) -> LiveKitServer | None:
        """The node hosting `room`, as the cluster's routing table in Redis says (`room_node_map`)."""
        node_id = self.redis.hget("room_node_map", room)
        return next((node for node in self.nodes if node.node_id == node_id), None)

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"{name} ({node.log_path}):\n{node.log_tail(lines)}"
            for name, node in (("a", self.a), ("b", self.b))
        )
