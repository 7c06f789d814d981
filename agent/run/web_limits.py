"""How often one client may ask the page for a join token (`python -m agent web`): a stranger can neither
guess the access code nor flood the endpoint, and a flood from one address does not stop another.

Each client address has three token buckets: its requests to `POST /api/token` (REQUEST_BURST at once, then
REQUESTS_PER_MIN), its refused access codes, invite links and host keys (CODE_TRIES at once, then
CODE_TRIES_PER_HOUR), and its requests to the host's endpoints (HOST_BURST, then HOST_PER_MIN). An empty
bucket is a 429 with `Retry-After`, whole seconds until the next request would pass; while the codes' bucket
is empty, no code of that address is even compared. A flood is logged in a few lines: an address's 1st,
10th, 100th... refusal in a row (`limited_in_a_row`), not every one. At most MAX_CLIENTS addresses are
remembered, the least recently seen forgotten first, so a flood from many addresses costs bounded memory.

The address is the connection's peer, or, behind a proxy of yours that sets it, the header that
`WEB_CLIENT_IP_HEADER` names (Fly's proxy sets `Fly-Client-IP`; a header nobody in front sets is the
client's to forge, so it is read only when configured). Logs carry the address pseudonymised, as
identities are (`agent/telemetry/logs.py`, the `client` field).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

REQUEST_BURST, REQUESTS_PER_MIN = 10, 20  # a person joins, rejoins and switches role a few times
CODE_TRIES, CODE_TRIES_PER_HOUR = 5, 10  # typos; guessing a 6-digit code takes 100 000 hours
HOST_BURST, HOST_PER_MIN = 30, 60  # a host's panel: links for every language at once, settings saved often
MAX_CLIENTS = 10_000


@dataclass
class Bucket:
    burst: float
    per_s: float
    tokens: float
    at: float

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_s)
        self.at = now

    def wait(self, now: float) -> float:
        """Seconds until one token is there (0: now)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.per_s

    def take(self, now: float) -> float:
        """Take a token if there is one (0); else the seconds until there is, nothing taken."""
        wait = self.wait(now)
        if wait == 0.0:
            self.tokens -= 1
        return wait


@dataclass
class _Client:
    requests: Bucket
    codes: Bucket
    host: Bucket  # requests with a host key (agent/run/web_host.py), on their own
    limited: int = 0  # its requests refused in a row (429)


class Limits:
    """The buckets of every client address seen lately; `clock` in seconds (monotonic)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
        request_burst: int = REQUEST_BURST,
        code_tries: int = CODE_TRIES,
    ) -> None:
        self._clock = clock
        self._max_clients = max_clients
        self._request_burst, self._code_tries = request_burst, code_tries
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def _client(self, address: str) -> _Client:
        client = self._clients.get(address)
        if client is None:
            now = self._clock()
            client = _Client(
                Bucket(self._request_burst, REQUESTS_PER_MIN / 60, self._request_burst, now),
                Bucket(self._code_tries, CODE_TRIES_PER_HOUR / 3600, self._code_tries, now),
                Bucket(HOST_BURST, HOST_PER_MIN / 60, HOST_BURST, now),
            )
            self._clients[address] = client
            while len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(address)
        return client

    def request(self, address: str) -> int:
        """A token request from `address`: 0 if it may go on, else the seconds it must wait (Retry-After):
        its requests used up, or its access codes (even before this one is looked at)."""
        client, now = self._client(address), self._clock()
        wait = client.codes.wait(now) or client.requests.take(now)
        client.limited = client.limited + 1 if wait else 0
        return math.ceil(wait)

    def host_request(self, address: str) -> int:
        """A host's request from `address` (its key not checked yet): as `request`, with the host's
        bucket, so a host making links and saving settings does not use up its address's tokens."""
        client, now = self._client(address), self._clock()
        wait = client.codes.wait(now) or client.host.take(now)
        return math.ceil(wait)

    def limited_in_a_row(self, address: str) -> int:
        """The requests of `address` refused in a row, this one included (0: its last one passed)."""
        client = self._clients.get(address)
        return client.limited if client is not None else 0

    def code_refused(self, address: str) -> None:
        """`address` sent a missing or wrong access code."""
        self._client(address).codes.take(self._clock())

    @property
    def clients(self) -> int:
        """The addresses remembered (not `__len__`: an empty Limits must not read as false)."""
        return len(self._clients)
