"""A flood at the token endpoint (`agent/run/web.py`, `agent/run/web_limits.py`), on a real socket: the app
served by aiohttp on 127.0.0.1, its clients real TCP peers with distinct loopback source addresses (Linux
routes all of 127/8 to this machine), so the limiter sees the connection's own peer address, as it does
without a proxy in front.

Every malformed request is answered with a 4xx naming what is wrong (never a 500, never a hang); one address
sending thousands of them, mixed with valid ones, gets 4xx or its few tokens, while another address keeps
getting its tokens; the addresses remembered stay bounded."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from agent.run.web import MAX_BODY_BYTES, WEB_APP, WebApp, create_app
from agent.run.web_limits import REQUEST_BURST, REQUESTS_PER_MIN, Limits
from bench.flood import no_time_wait
from tests.livekit_server import free_port
from tests.loopback import eventually
from tests.test_web import GOOD, settings

CODE = "271828"
VALID = json.dumps({**GOOD, "access_code": CODE}).encode()
JSON = {"Content-Type": "application/json"}
HUGE = b"x" * (10 * 1024 * 1024)  # 10 MB
BOMB = gzip.compress(b" " * (50 * 1024 * 1024), compresslevel=9)  # 50 KB: 50 MB once inflated
ANSWER_WITHIN_S = 60  # far past any answer's time (the body timeout included): longer is a hang
MAX_CLIENTS = 50


@dataclass(frozen=True)
class Site:
    url: str
    port: int
    app: WebApp


@asynccontextmanager
async def real_site(limits: Limits) -> AsyncIterator[Site]:
    """The page's app with an access code, on a free port of 127.0.0.1 (no access log, as served)."""
    app = create_app(settings(WEB_ACCESS_CODE=CODE), limits=limits)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield Site(f"http://127.0.0.1:{port}/api/token", port, app[WEB_APP])
    finally:
        await runner.cleanup()


@asynccontextmanager
async def client_at(address: str, *, limit: int = 10) -> AsyncIterator[ClientSession]:
    """HTTP from `address` (a loopback address of this machine): the server sees it as the peer."""
    connector = TCPConnector(local_addr=(address, 0), limit=limit, socket_factory=no_time_wait)
    async with ClientSession(connector=connector, timeout=ClientTimeout(total=ANSWER_WITHIN_S)) as session:
        yield session


async def post(session: ClientSession, url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    async with session.post(url, data=body, headers=JSON if headers is None else headers) as response:
        await response.read()
        if response.status == 429:
            assert int(response.headers["Retry-After"]) > 0
        return response.status


async def slow_body(site: Site, address: str) -> int:
    """A body promised 100 bytes long that never comes (one byte sent): the status answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port, local_addr=(address, 0))
    try:
        writer.write(
            b"POST /api/token HTTP/1.1\r\nHost: flood\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), ANSWER_WITHIN_S)
        return int(status_line.split()[1]) if status_line else 0  # 0: closed unanswered
    finally:
        writer.close()


async def cut_off_body(site: Site, address: str) -> None:
    """A body promised 1000 bytes, the connection closed after 10."""
    _, writer = await asyncio.open_connection("127.0.0.1", site.port, local_addr=(address, 0))
    writer.write(
        b"POST /api/token HTTP/1.1\r\nHost: flood\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"room": "'
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


# what each kind of bad request sends (the body, its headers), and the answer it gets
MALFORMED: dict[str, tuple[bytes, dict[str, str], int]] = {
    "valid": (VALID, JSON, 200),
    "bad JSON": (b'{"room": ', JSON, 400),
    "not UTF-8": (b"\xff\xfe{}", JSON, 400),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, JSON, 413),
    "nested within the limit": (b"[" * 5000 + b"]" * 5000, JSON, 400),
    "huge body (10 MB)": (HUGE, JSON, 413),
    "just over the limit": (b" " * MAX_BODY_BYTES + b"{}", JSON, 413),
    "wrong content type": (VALID, {"Content-Type": "text/plain"}, 415),
    "no content type": (VALID, {}, 415),
    "form encoded": (b"room=a&name=b", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    "gzip that is not": (VALID, {**JSON, "Content-Encoding": "gzip"}, 415),
    "gzip bomb": (BOMB, {**JSON, "Content-Encoding": "gzip"}, 415),
    "deflate": (VALID, {**JSON, "Content-Encoding": "deflate"}, 415),
    "wrong access code": (json.dumps({**GOOD, "access_code": "000000"}).encode(), JSON, 403),
    "no access code": (json.dumps(GOOD).encode(), JSON, 403),
    "not an object": (b"[1, 2]", JSON, 400),  # named as such before any code is looked at
}


async def test_each_malformed_request_is_a_4xx_naming_it_never_a_500_or_a_hang(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each kind from an address of its own (within its burst, so the body is read): the status expected,
    a body that never comes a 408 (not a connection held forever), a body cut off no error logged."""
    caplog.set_level(logging.INFO, logger="agent.web")
    async with real_site(Limits()) as site:
        statuses = {}
        for i, (kind, (body, headers, _)) in enumerate(MALFORMED.items()):
            async with client_at(f"127.0.2.{i + 1}") as session:
                statuses[kind] = await post(session, site.url, body, headers)
        statuses["slow body"] = await slow_body(site, "127.0.3.1")
        await cut_off_body(site, "127.0.3.2")
        await eventually(lambda: handled(caplog) == len(MALFORMED) + 2, what="the cut-off request handled")
    assert statuses == {kind: status for kind, (_, _, status) in MALFORMED.items()} | {"slow body": 408}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [(r.name, r.getMessage(), r.exc_info) for r in errors]


def handled(caplog: pytest.LogCaptureFixture) -> int:
    """The token requests the server finished with: issued, refused, or failed."""
    done = ("token issued", "token refused", "request failed")
    return sum(1 for r in caplog.records if r.name == "agent.web" and r.getMessage() in done)


def flood_request(i: int) -> tuple[bytes, dict[str, str]]:
    """The flood's i-th request: every kind of bad request in turn, and valid ones."""
    kinds = list(MALFORMED.values())
    body, headers, _ = kinds[i % len(kinds)]
    return body, headers


async def test_a_flood_from_one_address_leaves_another_served_and_memory_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """127.0.0.2 sends 3000 requests, 50 at a time, every kind of bad request among valid ones (a few
    bodies that never come among them); meanwhile 127.0.0.3 asks for a token every 300 requests of the flood
    and gets each. Every flood request gets a 4xx or (its burst) a token; then one request from each of 200
    more addresses leaves at most MAX_CLIENTS remembered."""
    caplog.set_level(logging.INFO, logger="agent.web")
    flood_size, concurrency, every = 3000, 50, 300
    async with real_site(Limits(max_clients=MAX_CLIENTS)) as site:
        answered: Counter[int] = Counter()
        legit: list[int] = []
        async with client_at("127.0.0.2", limit=concurrency) as flood, client_at("127.0.0.3") as other:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(flood_size):
                queue.put_nowait(i)

            async def worker() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    answered[await post(flood, site.url, *flood_request(i))] += 1
                    if i % every == 0:
                        legit.append(await post(other, site.url, VALID))

            started = asyncio.get_running_loop().time()
            slow = [slow_body(site, "127.0.0.2") for _ in range(5)]
            results = await asyncio.gather(*[worker() for _ in range(concurrency)], *slow)
            took_s = asyncio.get_running_loop().time() - started
        assert set(results[concurrency:]) <= {408, 429}, results[concurrency:]
        assert sum(answered.values()) == flood_size
        assert all(400 <= status < 500 or status == 200 for status in answered), answered
        # its burst, and the few a minute after it
        assert answered[200] <= REQUEST_BURST + math.ceil(took_s * REQUESTS_PER_MIN / 60), (answered, took_s)
        assert answered[429] > flood_size * 0.9, answered
        assert legit == [200] * (flood_size // every), legit

        await many_addresses(site, 200)
        assert site.app.limits.clients == MAX_CLIENTS
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [(r.name, r.getMessage()) for r in errors[:5]]


async def many_addresses(site: Site, count: int) -> None:
    """One token request from each of `count` addresses."""

    async def one(address: str) -> int:
        async with client_at(address) as session:
            return await post(session, site.url, VALID)

    addresses = [f"127.0.{4 + i // 250}.{1 + i % 250}" for i in range(count)]
    statuses = await asyncio.gather(*(one(address) for address in addresses))
    assert set(statuses) == {200}, Counter(statuses)


async def test_a_flood_is_logged_in_a_few_lines_not_one_per_request(caplog: pytest.LogCaptureFixture) -> None:
    """1000 requests from one address past its burst: its refusals are logged at the 1st, 10th, 100th and
    1000th in a row (each line with the count), not 990 lines; another address's refusal is logged."""
    caplog.set_level(logging.INFO, logger="agent.web")
    async with real_site(Limits()) as site:
        async with client_at("127.0.0.2", limit=20) as flood:
            statuses = await asyncio.gather(*(post(flood, site.url, VALID) for _ in range(1000)))
        async with client_at("127.0.0.3") as other:
            assert await post(other, site.url, b"[", JSON) == 400
    assert Counter(statuses) == {200: REQUEST_BURST, 429: 1000 - REQUEST_BURST}
    refused = [r for r in caplog.records if r.getMessage() == "token refused"]
    limited = [getattr(r, "in_a_row", None) for r in refused if getattr(r, "reason", "") == "rate limited"]
    assert limited == [1, 10, 100], limited
    assert [getattr(r, "reason", "") for r in refused][-1] == "body not JSON"
    assert site.app.refused["rate limited"] == 1000 - REQUEST_BURST  # all counted
