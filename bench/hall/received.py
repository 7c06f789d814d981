"""What the interpreter's ears receive of a speaker's microphone over a lossy uplink, through real WebRTC: the
audio of `python -m bench hall`'s loss conditions (issue 22: random loss 2, 5, 10 %, jitter 30 ± 20 ms).

A real LiveKit server behind the user-space UDP relay of the tests (tests/relay.py, `serving_through_relay`).
A speaker (tests/participants.Speaker: the rtc SDK's Opus, published with DTX and RED on as a browser's
microphone is, or RED off: `red=False`) says `pcm` on an uplink where the relay drops `loss` of the packets
at random (a generator of `seed`) and delays each by `jitter_ms` (mean ± spread, uniform, order kept). A
subscriber on the server's clean side stands in for the interpreter and records the track as the ears do
(`agent.room.room_io.track_frames`: an `rtc.AudioStream` at the input's rate, mono, 20 ms frames): Opus
decoded, the receiver's concealment of lost packets (NetEq), its time stretching, and the digital zeros it
plays once a loss has lasted too long to conceal.

The recording is put on the input's timeline, same length: sample t of `Received.pcm` is what the ears had
of sample t said. The shift is found by cross-correlating 10 ms RMS envelopes, then refined to the sample by
the waveforms' correlation within ±10 ms of it. `offset_ms` is that shift against the recording's position
when the speaker started (the mouth-to-ears delay: relay, jitter buffer, decoding); `drift_ms`, the largest
shift left in any 1 s stretch of speech. One shift for the whole: the receiver may change its playout
delay as it goes (NetEq; 0-20 ms measured here), so pauses may come out a little longer or shorter than
said, as the interpreter's ears get them. The speaker's frames go to the SDK as fast as its queue takes
them: paced just in time, a stall of this process starved the source and inserted a gap (500 ms once, on
a busy machine); `underrun_ms` says how dry it ran, and a run over UNDERRUN_LIMIT_MS is done again.

With `cache_dir`, the received audio of (input audio, loss, jitter, seed) is kept there (a WAV and its
figures as JSON) and read back instead of running the server again (`fresh`: run it anyway, and rewrite).

    uv run python -m bench.hall.received --loss 0.05 --wav tests/fixtures/dialogue_en.wav
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import time
import wave
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import TracebackType

import numpy as np
from livekit import rtc

from agent.run.filemode import Pcm, read_wav, write_wav
from bench.hall.align import align
from bench.hall.heard import FRAME_MS, figures
from bench.relay import inbound_audio
from tests.livekit_server import INSTALL_HINT, LiveKitServer, find_binary
from tests.loopback import eventually
from tests.noise import BABBLE, HUM, mix
from tests.participants import Speaker
from tests.relay import RELAY_IP, Impairment, Relay, serving_through_relay

CACHE_DIR = Path("bench-results/hall-received")
CACHE_VERSION = 2  # 1: the speaker paced just in time (a stall of this process inserted gaps): not reused
JITTER_MS = (30.0, 20.0)  # the issue's: 30 ± 20 ms
NOISES = {"hum": HUM, "babble": BABBLE}
TAIL_S = 1.0  # recorded after the last sample is said: the relay's delay and the jitter buffer
WARM_UP_S = 1.0  # a tone said once when a link starts
UNDERRUN_LIMIT_MS = 20.0  # a run whose speaker ran dry longer than this (this process stalled) is done again
ATTEMPTS = 3


@dataclass(frozen=True)
class Received:
    pcm: Pcm  # what the ears received, on the input's timeline, same length and rate
    offset_ms: float  # the recording lagged the input by this (mouth to ears)
    correlation: float  # the waveforms' normalised correlation at that shift (1: identical)
    drift_ms: float  # the largest shift left in any 1 s stretch of speech
    rtp_sent: int = 0  # the speaker's RTP packets that reached the relay
    rtp_dropped: int = 0  # ... and of those, dropped by it
    packets_lost: int | None = None  # the receiver's count of packets it never had (RED's recovered count)
    concealed_pct: float | None = None  # the receiver's samples made up for lost audio (inbound-rtp stats)
    silent_concealed_pct: float | None = None  # ... and, apart, the silence it made up
    underrun_ms: float = 0.0  # the longest the speaker's source ran dry (this process late: a gap inserted)
    load1: float | None = None  # the machine's load (1 min) when it was received: a busy one plays late
    cached: bool = False


class Link:
    """One real LiveKit server behind the relay, for any number of `receive`s (one room each):
    `async with Link(log) as link: received = await link.receive(pcm, loss=0.05)`."""

    def __init__(self, log_path: Path) -> None:
        binary = find_binary()
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.server = LiveKitServer(binary, log_path, relay_ip=RELAY_IP)
        self._stack = contextlib.ExitStack()
        self._relay: Relay | None = None
        self._rooms = 0

    async def __aenter__(self) -> Link:
        self._relay = await asyncio.to_thread(self._stack.enter_context, serving_through_relay(self.server))
        # the process's first room plays late and conceals without loss (the SDK warming up: 200-530 ms
        # from mouth to ears and up to 8 % of the speech as silence, against ~150 ms and 0 % after)
        t = np.arange(int(16000 * WARM_UP_S)) / 16000
        await self.receive(Pcm((3000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16), 16000), loss=0.0)
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await asyncio.to_thread(self._stack.close)

    @property
    def relay(self) -> Relay:
        if self._relay is None:
            raise RuntimeError("the link is not started: `async with Link(...)`")
        return self._relay

    async def receive(
        self,
        pcm: Pcm,
        *,
        loss: float,
        jitter_ms: tuple[float, float] = JITTER_MS,
        seed: int = 22,
        red: bool = True,
    ) -> Received:
        self._rooms += 1
        room, label = f"hall-received-{self._rooms}", f"speaker-{self._rooms}"
        delay, spread = jitter_ms
        self.relay.impair(label, up=Impairment(loss=loss, delay_ms=delay, jitter_ms=spread), seed=seed)
        ears, speaker = _Ears(pcm.sample_rate), Speaker("speaker", pcm.sample_rate)
        try:
            await ears.room.connect(self.server.url, self.server.token("interpreter", room))
            with self.relay.claim(label):
                await speaker.connect(self.server.url, self.server.token("speaker", room))
                options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE, red=red, dtx=True)
                speaker.publication = await speaker.room.local_participant.publish_track(
                    speaker.track, options
                )
                await eventually(lambda: bool(self.relay.labelled(label)), what="the speaker's flows")
            await eventually(lambda: ears.subscribed, what="the ears' subscription")
            at_say = ears.samples()
            underrun_ms = await say(speaker.source, pcm)
            await asyncio.sleep(TAIL_S)
            inbound = await inbound_audio(ears.room)
        finally:
            await speaker.aclose()
            await ears.aclose()
        sent, dropped = self.relay.count(label, "up").total("rtp")
        a = align(pcm, ears.audio(), at_say)
        aligned = Received(a.pcm, offset_ms=a.offset_ms, correlation=a.correlation, drift_ms=a.drift_ms)
        concealed = silent = lost = None
        if inbound is not None:
            lost = inbound.received.packets_lost
            samples = max(inbound.inbound.total_samples_received, 1)
            silent = 100 * inbound.inbound.silent_concealed_samples / samples
            concealed = 100 * inbound.inbound.concealed_samples / samples - silent
        aligned = replace(
            aligned, rtp_sent=sent, rtp_dropped=dropped, packets_lost=lost, underrun_ms=underrun_ms
        )
        load1 = round(os.getloadavg()[0], 2)
        return replace(aligned, concealed_pct=concealed, silent_concealed_pct=silent, load1=load1)


async def say(source: rtc.AudioSource, pcm: Pcm) -> float:
    """`pcm` into `source` as fast as its queue takes it (the SDK plays it out in real time; this process
    stays up to the queue's length ahead, so a stall of the event loop shorter than that changes nothing).
    Returns the longest the queue ran dry (ms): how late a frame was handed over against its play time."""
    step = int(pcm.sample_rate * FRAME_MS / 1000)
    t0, underrun = time.perf_counter(), 0.0
    for i, start in enumerate(range(0, len(pcm.samples), step)):
        chunk = pcm.samples[start : start + step]
        chunk = np.pad(chunk, (0, step - len(chunk)))
        underrun = max(underrun, time.perf_counter() - t0 - i * FRAME_MS / 1000)
        await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), pcm.sample_rate, 1, step))
    return 1000 * underrun


class _Ears:
    """The interpreter's side: records the first audio track it is given, as the ears take it."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.room = rtc.Room()
        self.subscribed = False
        self._frames: list[np.ndarray] = []
        self._task: asyncio.Task[None] | None = None
        self.room.on("track_subscribed", self._on_track)

    def _on_track(self, track: rtc.Track, *_: object) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and self._task is None:
            self.subscribed = True
            self._task = asyncio.create_task(self._record(track))

    async def _record(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream.from_track(
            track=track, sample_rate=self.sample_rate, num_channels=1, frame_size_ms=FRAME_MS
        )
        try:
            async for event in stream:
                self._frames.append(np.frombuffer(event.frame.data, np.int16).copy())
        finally:
            await stream.aclose()

    def samples(self) -> int:
        return sum(len(f) for f in self._frames)

    def audio(self) -> np.ndarray:
        return np.concatenate(self._frames) if self._frames else np.zeros(0, np.int16)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.room.disconnect()


# -- one call, cached ----------------------------------------------------------------------------------


def cache_key(pcm: Pcm, loss: float, jitter_ms: tuple[float, float], seed: int, red: bool = True) -> str:
    digest = hashlib.sha1(pcm.samples.astype(np.int16).tobytes() + str(pcm.sample_rate).encode()).hexdigest()
    options = "red-dtx" if red else "dtx"
    network = f"loss{loss:g}-jitter{jitter_ms[0]:g}+-{jitter_ms[1]:g}-seed{seed}"
    return f"v{CACHE_VERSION}-{digest[:16]}-{network}-{options}"


def _with(path: Path, suffix: str) -> Path:
    return path.parent / (path.name + suffix)  # the key has dots in it: not `with_suffix`


def _cached(path: Path) -> Received | None:
    wav, figures = _with(path, ".wav"), _with(path, ".json")
    if not (wav.exists() and figures.exists()):
        return None
    return Received(read_wav_s16(wav), **{**json.loads(figures.read_text()), "cached": True})


def read_wav_s16(path: Path) -> Pcm:
    """A mono s16 WAV exactly as written (`read_wav` rescales by 32767/32768)."""
    with wave.open(str(path), "rb") as w:
        return Pcm(np.frombuffer(w.readframes(w.getnframes()), np.int16).copy(), w.getframerate())


def _keep(path: Path, received: Received) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(_with(path, ".wav"), [received.pcm.samples], received.pcm.sample_rate)
    figures = {k: v for k, v in asdict(received).items() if k not in ("pcm", "cached")}
    _with(path, ".json").write_text(json.dumps(figures, indent=2) + "\n")


async def received_over_relay(
    pcm: Pcm,
    *,
    loss: float,
    jitter_ms: tuple[float, float] = JITTER_MS,
    seed: int = 22,
    red: bool = True,
    link: Link | None = None,
    cache_dir: Path | None = None,
    fresh: bool = False,
) -> Received:
    """What the ears receive of `pcm` said over a lossy uplink (`link`: a running one, or one started for
    this call alone); `cache_dir`: kept there and read back (`fresh`: not read back, rewritten)."""
    path = None if cache_dir is None else cache_dir / cache_key(pcm, loss, jitter_ms, seed, red)
    received: Received | None = None
    if path is not None and not fresh and (hit := _cached(path)) is not None:
        return hit
    async with contextlib.AsyncExitStack() as stack:
        if link is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="hall-received-"))
            link = await stack.enter_async_context(Link(Path(tmp) / "livekit-server.log"))
        for _ in range(ATTEMPTS):  # the run with the least underrun, if none is under the limit
            got = await link.receive(pcm, loss=loss, jitter_ms=jitter_ms, seed=seed, red=red)
            received = got if received is None or got.underrun_ms < received.underrun_ms else received
            if got.underrun_ms <= UNDERRUN_LIMIT_MS:
                break
    assert received is not None
    if path is not None:
        _keep(path, received)
    return received


# -- the standalone command ------------------------------------------------------------------------------


def _counters(received: Received) -> dict[str, object]:
    def rounded(x: float | None) -> float | None:
        return None if x is None else round(x, 2)

    return {
        "offset_ms": round(received.offset_ms, 1),
        "correlation": round(received.correlation, 3),
        "drift_ms": round(received.drift_ms, 1),
        "rtp_dropped": f"{received.rtp_dropped}/{received.rtp_sent}",
        "packets_lost": received.packets_lost,
        "concealed_pct": rounded(received.concealed_pct),
        "silent_concealed_pct": rounded(received.silent_concealed_pct),
        "underrun_ms": round(received.underrun_ms, 1),
        "load1": received.load1,
        "cached": received.cached,
    }


async def _measure(args: argparse.Namespace) -> list[dict[str, object]]:
    cache = None if args.no_cache else args.cache
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="hall-received-") as tmp:
        link = Link(Path(tmp) / "livekit-server.log")
        async with contextlib.AsyncExitStack() as stack:
            started = False
            for wav in args.wav:
                said = clean = read_wav(wav)
                if args.noise:
                    noise = read_wav(NOISES[args.noise[0]]).samples
                    said = Pcm(mix(said.samples, noise, args.noise[1]), said.sample_rate)
                for loss in args.loss:
                    key = cache_key(said, loss, args.jitter, args.seed, not args.no_red)
                    if not started and (cache is None or args.fresh or _cached(cache / key) is None):
                        await stack.enter_async_context(link)
                        started = True
                    received = await received_over_relay(
                        said, loss=loss, jitter_ms=args.jitter, seed=args.seed, red=not args.no_red,
                        link=link if started else None, cache_dir=cache, fresh=args.fresh,
                    )  # fmt: skip
                    row = {"wav": wav.stem, "loss_pct": round(100 * loss, 1), **_counters(received)}
                    row |= figures(said, received.pcm, clean)
                    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
                    rows.append(row)
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.hall.received", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--wav", type=Path, action="append", required=True, help="16 kHz mono speech (repeat)"
    )
    parser.add_argument("--loss", type=_losses, default=[0.05], help="loss shares, comma-separated (0.05)")
    parser.add_argument("--jitter", type=_jitter, default=JITTER_MS, help="delay±spread in ms (30,20)")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--no-red", action="store_true", help="the microphone published without RED")
    parser.add_argument("--noise", type=_noise, help="hum:DB or babble:DB: that noise DB under the speech")
    parser.add_argument(
        "--cache", type=Path, default=CACHE_DIR, help=f"received audio kept here ({CACHE_DIR})"
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor keep received audio")
    parser.add_argument("--fresh", action="store_true", help="run the server even if cached (and rewrite)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    return parser


def _losses(text: str) -> list[float]:
    losses = [float(x) for x in text.split(",")]
    if not all(0 <= x < 1 for x in losses):
        raise argparse.ArgumentTypeError(f"shares from 0 to under 1, not {text!r}")
    return losses


def _jitter(text: str) -> tuple[float, float]:
    delay, spread = (float(x) for x in text.split(","))
    if not 0 <= spread <= delay:
        raise argparse.ArgumentTypeError(f"DELAY,SPREAD in ms with 0 <= SPREAD <= DELAY, not {text!r}")
    return delay, spread


def _noise(text: str) -> tuple[str, float]:
    name, _, db = text.partition(":")
    if name not in NOISES:
        raise argparse.ArgumentTypeError(f"one of {', '.join(NOISES)}, not {name!r}")
    return name, float(db)


def main(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    for wav in args.wav:
        if not wav.exists():
            raise SystemExit(f"--wav: no such file {wav}")
    if find_binary() is None:
        raise SystemExit(INSTALL_HINT)
    rows = asyncio.run(_measure(args))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
