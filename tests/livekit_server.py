"""A real LiveKit server (`livekit-server --dev`) on free ports bound to 127.0.0.1, for the real-room tests
and `python -m bench room`; with `redis`, one node of a cluster (tests/livekit_cluster.py).

Installed by `./scripts/install-livekit-server` (the pinned Go module); found in $LIVEKIT_SERVER (a path),
then `livekit-server` on PATH, then where that script installs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from livekit import api
from livekit.protocol.agent_dispatch import RoomAgentDispatch

VERSION = "1.13.5"
API_KEY, API_SECRET = "devkey", "secret"  # what `--dev` uses
INSTALLED_AT = Path.home() / ".cache" / "livekit-interpreter" / "bin" / "livekit-server"
INSTALL_HINT = (
    f"livekit-server {VERSION} not found: run ./scripts/install-livekit-server "
    "(or set LIVEKIT_SERVER to its path)"
)
# the server's log line as it starts: `starting LiveKit server {"portHttp": …, "nodeID": "ND_…", …}`
NODE_ID = re.compile(r'starting LiveKit server\s.*?"nodeID": "(ND_\w+)"')


def find_binary() -> str | None:
    if path := os.environ.get("LIVEKIT_SERVER"):
        return path if os.access(path, os.X_OK) else None
    if path := shutil.which("livekit-server"):
        return path
    return str(INSTALLED_AT) if os.access(INSTALLED_AT, os.X_OK) else None


_GIVEN: set[int] = set()  # ports handed out in this test session: never twice


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free now, and not handed out before in this session (two picks that collide, before either
    process binds, made one of them fail with "address already in use")."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


class LiveKitServer:
    """One server process. Media on one UDP port (muxed) and one TCP port, no external IP lookup
    (there is no network), ICE on the loopback address only. With `redis` (`host:port`) it is a node of a
    cluster: the nodes sharing that Redis route signalling, rooms and agent jobs among them.

    With `relay_ip` (another loopback address, tests/relay.py), the server advertises that address, on its
    own UDP port, as its only candidate, answers ICE checks without making any (ICE lite), and has no TCP
    port: every participant's media must go through a relay listening there."""

    def __init__(
        self, binary: str, log_path: Path, *, redis: str | None = None, relay_ip: str | None = None
    ) -> None:
        self.binary = binary
        self.log_path = log_path
        self.redis = redis
        self.relay_ip = relay_ip
        self.port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.node_id = ""  # the server's node id (a new one each start), known once it started
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, object]:
        rtc: dict[str, object] = {
            "udp_port": self.udp_port,
            "use_external_ip": False,
            "enable_loopback_candidate": True,
            "node_ip": self.relay_ip or "127.0.0.1",
        }
        if self.relay_ip is None:
            rtc["tcp_port"] = free_port()
        else:  # media on 127.0.0.1 only, where the relay forwards it; no fallback around the relay: no TCP
            # (left out, tcp_port is 7881 on every address, advertised as a TCP candidate at the relay's)
            rtc |= {"tcp_port": 0, "use_ice_lite": True, "ips": {"includes": ["127.0.0.1/32"]}}
        return {
            "port": self.port,
            "bind_addresses": ["127.0.0.1"],
            "rtc": rtc,
            "keys": {API_KEY: API_SECRET},
            "logging": {"level": "info"},
            **({"redis": {"address": self.redis}} if self.redis else {}),
        }

    def start(self, timeout_s: float = 30.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [self.binary, "--dev", "--config-body", json.dumps(self.config())],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"livekit-server exited with {self._proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.http_url, timeout=1) as response:
                if response.status == 200 and (found := NODE_ID.search(self.log_tail(lines=0))):
                    self.node_id = found[1]
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"livekit-server did not answer within {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, drain_s: float = 2.0) -> None:
        """SIGTERM, and a second one `drain_s` later: on the first the server drains, waiting (5 s at a time,
        for ever) until every participant has left, and one whose process was killed stays about 20 s; on
        the second it stops at once. SIGKILL if it still runs 10 s later."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(drain_s)
            return
        self._proc.terminate()  # the second: stop now
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def log_tail(self, lines: int = 60) -> str:
        """The log's last `lines` lines (0: all of it)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def api(self) -> api.LiveKitAPI:
        """A server API client (rooms, dispatch); close it with `aclose()`."""
        return api.LiveKitAPI(self.http_url, API_KEY, API_SECRET)

    def token(
        self,
        identity: str,
        room: str,
        *,
        name: str = "",
        attributes: dict[str, str] | None = None,
        dispatch: RoomAgentDispatch | None = None,
        agent: bool = False,
        can_update_own_metadata: bool = True,
    ) -> str:
        """A join token; `dispatch` brings an agent into the room when this participant joins; `agent`
        makes the participant itself an agent (its kind as the server reports it). Without
        `can_update_own_metadata` the server ignores the participant's own attribute changes (silently: the
        SDK's `set_attributes` does not fail), as a front end setting `language`/`interpret_to` needs."""
        grants = api.VideoGrants(
            room_join=True, room=room, agent=agent, can_update_own_metadata=can_update_own_metadata
        )
        token = (
            api.AccessToken(API_KEY, API_SECRET)
            .with_identity(identity)
            .with_name(name or identity)
            .with_grants(grants)
            .with_attributes(attributes or {})
        )
        if agent:
            token = token.with_kind("agent")
        if dispatch is not None:
            token = token.with_room_config(api.RoomConfiguration(agents=[dispatch]))
        return token.to_jwt()
