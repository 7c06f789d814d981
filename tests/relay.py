"""A lossy network between WebRTC participants and the real LiveKit server, in user space (this kernel has no
`netem`): a UDP relay on a loopback address that the server advertises as its only ICE candidate
(`LiveKitServer(relay_ip=...)`: `rtc.node_ip` is the relay's address, the same UDP port, ICE lite, no TCP),
so every participant's media, STUN, DTLS and data channels go through it.

Each client address the relay sees is a flow, with its own socket towards the server (as a NAT would do).
A flow belongs to whoever `claim`ed the relay when it first showed (a participant connecting), and gets that
label's impairments, per direction: "up" (client → server) and "down" (server → client). An impairment
drops packets at random (a seeded generator per label and direction: the same packets are dropped on every
run) and delays each by `delay_ms ± jitter_ms` (uniform). Order is kept, as on one network path: a packet
never leaves before the one sent before it in the same flow and direction (so jitter bunches packets up
rather than reordering them; `reorder=True` lets each packet go at its own time, as netem's jitter does).

The relay runs on its own thread and event loop (an asyncio DatagramProtocol), so a busy test loop does
not add to the jitter; its counters are plain integers read from the test's thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.livekit_server import LiveKitServer

RELAY_IP = "127.0.0.22"  # all of 127/8 answers on loopback; the server's own media is on 127.0.0.1
UNLABELLED = "-"  # flows that showed while nobody claimed the relay (the interpreter's, say): never impaired


@dataclass(frozen=True)
class Impairment:
    loss: float = 0.0  # the probability that a packet is dropped
    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # each packet's delay: delay_ms ± jitter_ms, uniform
    reorder: bool = False  # False: a packet waits for the one before it (order kept)

    def delay_s(self, rng: random.Random) -> float:
        return max(0.0, self.delay_ms + rng.uniform(-self.jitter_ms, self.jitter_ms)) / 1000


CLEAN = Impairment()


def lossy(loss: float) -> Impairment:
    """The issue's network: `loss` random loss, jitter 30 ± 20 ms."""
    return Impairment(loss=loss, delay_ms=30.0, jitter_ms=20.0)


def packet_kind(data: bytes) -> str:
    """What a datagram on a WebRTC 5-tuple is (RFC 7983): stun, dtls (also the data channels), rtp, rtcp."""
    if not data:
        return "other"
    first = data[0]
    if first < 4:
        return "stun"
    if 20 <= first < 64:
        return "dtls"
    if 128 <= first < 192:
        return "rtcp" if len(data) > 1 and 192 <= data[1] <= 223 else "rtp"
    return "other"


@dataclass
class Counts:
    """What arrived at the relay in one label's direction, and what of it was dropped, by packet kind."""

    arrived: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def total(self, kind: str | None = None) -> tuple[int, int]:
        """(arrived, dropped), of one kind or of all."""
        if kind is None:
            return sum(self.arrived.values()), sum(self.dropped.values())
        return self.arrived.get(kind, 0), self.dropped.get(kind, 0)

    def loss(self, kind: str | None = None) -> float:
        arrived, dropped = self.total(kind)
        return dropped / arrived if arrived else 0.0


class _Upstream(asyncio.DatagramProtocol):
    """One flow's socket towards the server: what the server sends back goes down to the client."""

    def __init__(self, relay: Relay, flow: _Flow) -> None:
        self.relay = relay
        self.flow = flow

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.relay._forward(self.flow, "down", data)


@dataclass
class _Flow:
    client: tuple[str, int]
    label: str
    upstream: asyncio.DatagramTransport | None = None
    pending: list[bytes] = field(default_factory=list)  # up packets while its socket is being made
    last_departure: dict[str, float] = field(default_factory=dict)  # per direction, the loop's clock
    queues: dict[str, collections.deque[tuple[float, bytes]]] = field(default_factory=dict)  # in order


class Relay(asyncio.DatagramProtocol):
    """Listens on `listen` (host, port); forwards to `server` (host, port)."""

    def __init__(self, listen: tuple[str, int], server: tuple[str, int], *, seed: int = 22) -> None:
        self.listen = listen
        self.server = server
        self.seed = seed
        self.impairments: dict[str, dict[str, Impairment]] = {}  # label → direction → impairment
        self.counts: dict[tuple[str, str], Counts] = {}  # (label, direction) → counts
        self.flows: dict[tuple[str, int], _Flow] = {}
        self._rngs: dict[tuple[str, str], random.Random] = {}
        self._seeds: dict[str, int] = {}  # label → its own seed (`impair(seed=...)`)
        self._blackouts: dict[tuple[str, str], float] = {}  # (label, direction) → until (the loop's clock)
        self._claiming = UNLABELLED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- the test's side ----------------------------------------------------------------------------

    def impair(
        self, label: str, *, up: Impairment = CLEAN, down: Impairment = CLEAN, seed: int | None = None
    ) -> None:
        """`seed`: `label`'s drops and delays drawn from a generator of this seed alone, started afresh (the
        same draws whatever the label; default: the relay's seed and the label)."""
        self.impairments[label] = {"up": up, "down": down}
        if seed is not None:
            self._seeds[label] = seed
            for direction in ("up", "down"):
                self._rngs.pop((label, direction), None)

    @contextlib.contextmanager
    def claim(self, label: str) -> Iterator[None]:
        """Flows that first show inside this block are `label`'s (connect one participant inside it)."""
        self._claiming = label
        try:
            yield
        finally:
            self._claiming = UNLABELLED

    def blackout(self, label: str, direction: str, seconds: float) -> None:
        """Drop every packet of `label`'s flows in `direction` for the next `seconds` (a dropout: a Wi-Fi
        hand-over, a microwave oven), counted as dropped."""
        assert self._loop is not None

        def start() -> None:
            assert self._loop is not None
            self._blackouts[(label, direction)] = self._loop.time() + seconds

        self._loop.call_soon_threadsafe(start)

    def labelled(self, label: str) -> list[tuple[str, int]]:
        return [flow.client for flow in list(self.flows.values()) if flow.label == label]

    def count(self, label: str, direction: str) -> Counts:
        return self.counts.setdefault((label, direction), Counts())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="udp-relay", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None or self._transport is None:
            raise RuntimeError(f"the relay did not start on {self.listen}: {self._error!r}")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- the relay's thread -------------------------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._transport, _ = loop.run_until_complete(
                loop.create_datagram_endpoint(lambda: self, local_addr=self.listen)
            )
        except OSError as e:
            self._error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            for flow in self.flows.values():
                if flow.upstream is not None:
                    flow.upstream.close()
            self._transport.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        client = (str(addr[0]), int(addr[1]))
        flow = self.flows.get(client)
        if flow is None:
            flow = self.flows[client] = _Flow(client, self._claiming)
            assert self._loop is not None
            self._loop.create_task(self._open_upstream(flow))
        self._forward(flow, "up", data)

    async def _open_upstream(self, flow: _Flow) -> None:
        assert self._loop is not None
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Upstream(self, flow), local_addr=(self.server[0], 0), remote_addr=self.server
        )
        flow.upstream = transport
        for data in flow.pending:
            transport.sendto(data)
        flow.pending.clear()

    def _forward(self, flow: _Flow, direction: str, data: bytes) -> None:
        impairment = self.impairments.get(flow.label, {}).get(direction, CLEAN)
        key = (flow.label, direction)
        rng = self._rngs.get(key)
        if rng is None:
            seed = self._seeds.get(flow.label)
            name = f"{self.seed}-{flow.label}" if seed is None else f"{seed}"
            rng = self._rngs[key] = random.Random(f"{name}-{direction}")
        counts = self.count(*key)
        kind = packet_kind(data)
        counts.arrived[kind] = counts.arrived.get(kind, 0) + 1
        assert self._loop is not None
        now = self._loop.time()
        if (impairment.loss and rng.random() < impairment.loss) or now < self._blackouts.get(key, 0.0):
            counts.dropped[kind] = counts.dropped.get(kind, 0) + 1
            return
        departure = now + impairment.delay_s(rng)
        if not impairment.reorder:
            # strictly after: the loop's timer heap does not keep the order of equal times
            departure = max(departure, flow.last_departure.get(direction, 0.0) + 1e-6)
            flow.last_departure[direction] = departure
        if impairment.reorder:
            self._loop.call_at(departure, self._send, flow, direction, data)
            return
        # in order: one queue per direction, one timer at its head (the loop's timers, uvloop's at 1 ms
        # resolution, and I/O callbacks run before due timers, would let a later packet overtake)
        queue = flow.queues.setdefault(direction, collections.deque())
        queue.append((departure, data))
        if len(queue) == 1:
            self._loop.call_at(departure, self._drain, flow, direction)

    def _drain(self, flow: _Flow, direction: str) -> None:
        assert self._loop is not None
        queue = flow.queues[direction]
        while queue and queue[0][0] <= self._loop.time():
            self._send(flow, direction, queue.popleft()[1])
        if queue:
            self._loop.call_at(queue[0][0], self._drain, flow, direction)

    def _send(self, flow: _Flow, direction: str, data: bytes) -> None:
        if direction == "down":
            assert self._transport is not None
            self._transport.sendto(data, flow.client)
        elif flow.upstream is None:
            flow.pending.append(data)
        else:
            flow.upstream.sendto(data)


@contextlib.contextmanager
def serving_through_relay(server: LiveKitServer, *, seed: int = 22) -> Iterator[Relay]:
    """`server` (made with `relay_ip`) started behind a relay on the address and UDP port it advertises, the
    relay forwarding to its media on 127.0.0.1; both stopped after."""
    if server.relay_ip is None:
        raise ValueError("the server advertises no relay: make it with LiveKitServer(relay_ip=...)")
    relay = Relay((server.relay_ip, server.udp_port), ("127.0.0.1", server.udp_port), seed=seed)
    relay.start()
    try:
        server.start()
        try:
            yield relay
        finally:
            server.stop()
    finally:
        relay.stop()
