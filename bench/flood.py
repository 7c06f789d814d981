"""A flood at the page's token endpoint: the real web server (`python -m agent web`, its own process, an
access code set) flooded from N loopback addresses while one person after another joins from addresses of
their own.

    uv run python -m bench flood                          # 20 s from 8 addresses, 64 connections
    uv run python -m bench flood --seconds 60 --addresses 32 --spread 20000

Three phases: at rest, a person's token request (a new connection from a fresh address, as a browser joining)
is timed 40 times; then the flood (a process of its own, so the people are not queued behind it in one
event loop) sends valid requests, bad JSON, wrong content types, wrong codes, gzip bombs and, every
`--huge-every`, a 10 MB body, as fast as the server answers, while a person joins every 0.25 s; then one
request from each of `--spread` distinct addresses (more than the limiter remembers, MAX_CLIENTS). Prints
requests/s answered, the share of each status, a person's token latency (p50/p95) at rest and during the
flood, the server's RSS (before, peak, after) and CPU, and the bytes it logged; writes flood.json.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import multiprocessing
import socket
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector

from agent.run.web_limits import MAX_CLIENTS
from bench.harness.cli import add_output_arguments, command_parser, output_dir
from bench.harness.machine import MachineLoad, rss_mb
from bench.harness.output import write_results
from bench.harness.stats import summary_ms

ROOT = Path(__file__).parent.parent
CODE = "271828"
PERSON = {"room": "flood-bench", "name": "Ana", "role": "listener", "language": "es", "access_code": CODE}
JSON = {"Content-Type": "application/json"}
TIMEOUT = ClientTimeout(total=60)
REST_SAMPLES, JOIN_EVERY_S = 40, 0.25


def no_time_wait(addr_info: Any) -> socket.socket:
    """A client socket that resets its connection when closed instead of lingering in TIME_WAIT: thousands of
    connections bound to chosen source addresses would otherwise hold their ports for a minute (a listener
    binding one of them, such as another test's server, then fails). For aiohttp's `socket_factory`."""
    family, kind, protocol, _, _ = addr_info
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return sock


def mix() -> list[tuple[str, bytes, dict[str, str]]]:
    """The flood's requests, in turn: (what, body, headers)."""
    valid = json.dumps(PERSON).encode()
    return [
        ("valid", valid, JSON),
        ("bad JSON", b'{"room": ', JSON),
        ("wrong content type", valid, {"Content-Type": "text/plain"}),
        ("wrong code", json.dumps({**PERSON, "access_code": "000000"}).encode(), JSON),
        (
            "gzip bomb (50 MB inflated)",
            gzip.compress(b" " * 50_000_000),
            {**JSON, "Content-Encoding": "gzip"},
        ),
        ("not an object", b"[1, 2, 3]", JSON),
    ]


def address(base: str, i: int) -> str:
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address(base)) + i))


def fresh_addresses(base: str) -> Iterator[str]:
    """Addresses never used before, from `base` on (one per person joining)."""
    i = 0
    while True:
        yield address(base, i)
        i += 1


class WebProcess:
    """`python -m agent web` on a free loopback port, with an access code; its log in `workdir`."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / "web.log"
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "LIVEKIT_URL": "ws://127.0.0.1:7880",  # tokens are signed here: no LiveKit server is asked
            "LIVEKIT_API_KEY": "devkey",
            "LIVEKIT_API_SECRET": "secret-of-at-least-32-characters-long",
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": str(port),
            "WEB_ACCESS_CODE": CODE,
        }
        with self.log.open("wb") as log:
            self.proc = psutil.Popen(
                [sys.executable, "-m", "agent", "web"], cwd=workdir, env=env, stdout=log, stderr=log
            )

    async def ready(self) -> None:
        async with ClientSession(timeout=ClientTimeout(total=2)) as http:
            for _ in range(300):
                try:
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except ClientError:
                    pass
                if self.proc.poll() is not None:
                    raise SystemExit(f"the web server exited:\n{self.log.read_text()[-2000:]}")
                await asyncio.sleep(0.1)
        raise SystemExit("the web server did not answer /healthz")

    def rss_mb(self) -> float:
        return round(rss_mb(self.proc.pid), 1)

    def cpu_s(self) -> float:
        times = self.proc.cpu_times()
        return float(times.user + times.system)

    def log_bytes(self) -> int:
        return self.log.stat().st_size

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def join(url: str, source: str) -> tuple[int, float]:
    """One person's token request from `source`, on a new connection: its status and seconds."""
    started = time.perf_counter()
    try:
        connector = TCPConnector(local_addr=(source, 0), socket_factory=no_time_wait)
        async with (
            ClientSession(connector=connector, timeout=TIMEOUT) as http,
            http.post(f"{url}/api/token", json=PERSON) as response,
        ):
            await response.read()
            status = response.status
    except (ClientError, TimeoutError):
        status = 0
    return status, time.perf_counter() - started


async def people(url: str, sources: Iterator[str], *, count: int | None, every_s: float, stop: Any) -> list:
    """People joining one after another (`every_s` apart), `count` of them or until `stop` is set."""
    joins: list[tuple[int, float]] = []
    while (count is None or len(joins) < count) and not stop.is_set():
        joins.append(await join(url, next(sources)))
        await asyncio.sleep(every_s)
    return joins


async def _flood(
    url: str, addresses: int, connections: int, seconds: float, huge_every: int, first: int
) -> dict[str, Any]:
    kinds = mix()
    huge = b"x" * (10 * 1024 * 1024)
    statuses: Counter[str] = Counter()
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal sent
        source = address("127.0.10.1", (first + k) % addresses)
        connector = TCPConnector(local_addr=(source, 0), limit=1, socket_factory=no_time_wait)
        async with ClientSession(connector=connector, timeout=TIMEOUT) as http:
            while time.perf_counter() < deadline:
                sent += 1
                n = sent
                _, body, headers = (
                    ("huge", huge, JSON) if huge_every and n % huge_every == 0 else kinds[n % len(kinds)]
                )
                try:
                    async with http.post(f"{url}/api/token", data=body, headers=headers) as response:
                        await response.read()
                        statuses[str(response.status)] += 1
                except (ClientError, TimeoutError) as error:
                    statuses[type(error).__name__] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    return {"statuses": dict(statuses), "seconds": time.perf_counter() - started}


def flood_process(
    url: str, addresses: int, connections: int, seconds: float, huge_every: int, out: Any, first: int
) -> None:
    """The flood, in a process of its own (its counts put on `out`); its connections numbered from `first`."""
    out.put(asyncio.run(_flood(url, addresses, connections, seconds, huge_every, first)))


async def spread(url: str, count: int, concurrency: int = 64) -> dict[str, Any]:
    """One token request from each of `count` distinct addresses (127.1.0.1 on)."""
    statuses: Counter[int] = Counter()
    sources = iter(address("127.1.0.1", i) for i in range(count))
    started = time.perf_counter()

    async def worker() -> None:
        for source in sources:
            statuses[(await join(url, source))[0]] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "addresses": count,
        "statuses": dict(statuses),
        "seconds": round(time.perf_counter() - started, 1),
    }


def joins_summary(joins: list[tuple[int, float]]) -> dict[str, Any]:
    return {
        "latency_ms": summary_ms([s for status, s in joins if status == 200]),
        "statuses": dict(Counter(status for status, _ in joins)),
    }


async def sample_peak(server: WebProcess, stop: asyncio.Event) -> float:
    peak = server.rss_mb()
    while not stop.is_set():
        peak = max(peak, server.rss_mb())
        await asyncio.sleep(0.5)
    return peak


async def flood_phase(server: WebProcess, args: Any, sources: Iterator[str]) -> dict[str, Any]:
    """The flood in its own process; meanwhile people join, and the server's RSS is sampled."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    per_process = max(1, args.connections // args.processes)
    floods = [
        context.Process(
            target=flood_process,
            args=(
                server.url,
                args.addresses,
                per_process,
                args.seconds,
                args.huge_every,
                out,
                p * per_process,
            ),
        )
        for p in range(args.processes)
    ]
    cpu0, stop = server.cpu_s(), asyncio.Event()
    for flood in floods:
        flood.start()
    peak = asyncio.create_task(sample_peak(server, stop))
    joining = asyncio.create_task(people(server.url, sources, count=None, every_s=JOIN_EVERY_S, stop=stop))
    result: dict[str, Any] = {"statuses": Counter(), "seconds": 0.0}
    for _ in floods:  # each process's counts, once its flood is over
        counts = await asyncio.to_thread(out.get)
        result["statuses"].update(counts["statuses"])
        result["seconds"] = max(result["seconds"], counts["seconds"])
    stop.set()
    for flood in floods:
        await asyncio.to_thread(flood.join)
    answered = sum(n for status, n in result["statuses"].items() if status.isdigit())
    return {
        "addresses": args.addresses,
        "connections": args.connections,
        "seconds": round(result["seconds"], 1),
        "processes": args.processes,
        "statuses": dict(result["statuses"]),
        "answered_per_s": round(answered / result["seconds"]),
        "share": {
            status: round(n / answered, 4) for status, n in result["statuses"].items() if status.isdigit()
        },
        "server_cpu_s": round(server.cpu_s() - cpu0, 2),
        "rss_peak_mb": await peak,
        "joins": joins_summary(await joining),
    }


async def run(args: Any, workdir: Path) -> dict[str, Any]:
    port = args.port or _free_port()
    server = WebProcess(workdir, port)
    try:
        await server.ready()
        sources = fresh_addresses("127.0.20.1")
        never = asyncio.Event()
        rest = await people(server.url, sources, count=REST_SAMPLES, every_s=0.05, stop=never)
        results: dict[str, Any] = {"rss_mb": {"start": server.rss_mb()}, "at_rest": joins_summary(rest)}
        results["log_bytes"] = {"before_flood": server.log_bytes()}
        results["flood"] = await flood_phase(server, args, sources)
        results["rss_mb"]["after_flood"] = server.rss_mb()
        results["log_bytes"]["after_flood"] = server.log_bytes()
        after = await people(server.url, sources, count=REST_SAMPLES, every_s=0.05, stop=never)
        results["after_flood"] = joins_summary(after)
        if args.spread:
            results["spread"] = await spread(server.url, args.spread)
            results["rss_mb"]["after_spread"] = server.rss_mb()
            results["log_bytes"]["after_spread"] = server.log_bytes()
        results["max_clients"] = MAX_CLIENTS
        return results
    finally:
        server.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(results: dict[str, Any]) -> None:
    flood, rest, during = results["flood"], results["at_rest"], results["flood"]["joins"]
    print(
        f"\nflood: {flood['addresses']} addresses, {flood['connections']} connections from "
        f"{flood['processes']} processes, {flood['seconds']} s: "
        f"{sum(v for k, v in flood['statuses'].items() if k.isdigit())} answered, {flood['answered_per_s']}/s"
    )
    print("  statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(flood["statuses"].items())))
    print("  share:    " + ", ".join(f"{k} {v * 100:.1f}%" for k, v in sorted(flood["share"].items())))
    answered = sum(v for k, v in flood["statuses"].items() if k.isdigit())
    logs = results["log_bytes"]
    flood_log = logs["after_flood"] - logs["before_flood"]
    print(
        f"  server CPU {flood['server_cpu_s']} s over the flood "
        f"({flood['server_cpu_s'] * 1000 / answered:.2f} ms a request); "
        f"its log grew {flood_log} bytes ({flood_log / answered:.1f} a request, the joins' lines included)"
    )
    print("\na person's token request (new connection, fresh address)   p50      p95    n  statuses")
    for label, joins in (
        ("at rest", rest),
        ("during the flood", during),
        ("after it", results["after_flood"]),
    ):
        lat = joins["latency_ms"]
        print(f"  {label:<55}{lat['p50']:>6} ms{lat['p95']:>6} ms{lat['n']:>5}  {joins['statuses']}")
    if "spread" in results:
        s = results["spread"]
        print(
            f"\none request from each of {s['addresses']} addresses (the limiter remembers "
            f"{results['max_clients']}): {s['statuses']} in {s['seconds']} s"
        )
    rss = results["rss_mb"]
    print(
        f"\nserver RSS: {rss['start']} MB before, {flood['rss_peak_mb']} MB peak during the flood, "
        f"{rss['after_flood']} MB after it"
        + (f", {rss['after_spread']} MB after the spread" if "after_spread" in rss else "")
    )


def main(argv: list[str]) -> None:
    parser = command_parser("flood", __doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the flood lasts")
    parser.add_argument("--addresses", type=int, default=8, help="loopback addresses the flood comes from")
    parser.add_argument("--connections", type=int, default=64, help="the flood's concurrent connections")
    parser.add_argument(
        "--huge-every", type=int, default=50, help="every Nth flood request is 10 MB (0: none)"
    )
    parser.add_argument(
        "--spread", type=int, default=20_000, help="addresses sending one request each (0: none)"
    )
    parser.add_argument("--processes", type=int, default=2, help="processes the flood is sent from")
    parser.add_argument("--port", type=int, default=0, help="the server's port (default: a free one)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    out = output_dir(args)
    load = MachineLoad()
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    results["args"] = {k: v for k, v in vars(args).items() if k not in ("out", "write_results")}
    write_results(out, "flood.json", results, load, report=report)


if __name__ == "__main__":
    main(sys.argv[1:])
