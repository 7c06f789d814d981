"""`python -m bench relay`: what a listener receives of an interpretation track over a lossy downlink, for the
track's publish options (RED on/off, DTX on/off), at 0/2/5/10 % random loss with 30 ± 20 ms jitter.

The real LiveKit server behind the user-space relay of the tests (tests/relay.py: the server's only candidate,
ICE lite, no TCP). A publisher stands in for the interpreter: it publishes `interpretation-es` with
`agent.room.outputs.interpretation_publish_options(red=..., dtx=...)` and says the committed speech fixtures
(the English then the Spanish dialogue, about 17 s, pauses included) on a clean uplink; the listener (the
rtc SDK, as in the real-room tests) is on the lossy downlink. One room per condition.

Per condition it prints: RTP packets dropped by the relay on the listener's way; the receiver's own
accounting (WebRTC inbound-rtp stats): packets lost (RED's recovered ones still count), concealed samples
(% of those played: sound made up for lost audio; and, apart, the silence made up during DTX) and
concealment events; and, from the audio the listener heard against what was said, in 10 ms windows:
speech windows received (% of those sent) and silent runs of 60 ms or more inside speech beyond those the
fixture has (dropouts a listener would hear as gaps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc

from agent.room.outputs import interpretation_publish_options
from agent.run.filemode import Pcm, paced_frames, read_wav
from tests.conftest import DIALOGUE, SPANISH
from tests.livekit_server import INSTALL_HINT, LiveKitServer, find_binary
from tests.loopback import eventually
from tests.participants import LISTEN_RATE, Listener
from tests.relay import RELAY_IP, Relay, lossy, serving_through_relay

TRACK = "interpretation-es"
OPTIONS = {"red+dtx": (True, True), "red": (True, False), "dtx": (False, True), "none": (False, False)}
WINDOW_S = 0.01
SPEECH_RMS = 300.0  # about −40 dBFS: a 10 ms window above it is speech
GAP_WINDOWS = 6  # 60 ms


def windows(samples: np.ndarray, rate: int) -> np.ndarray:
    """Whether each 10 ms window is speech."""
    n = int(rate * WINDOW_S)
    usable = samples[: len(samples) // n * n].astype(np.float32).reshape(-1, n)
    return np.asarray(np.sqrt(np.mean(usable**2, axis=1)) > SPEECH_RMS)


def inner_gaps(speech: np.ndarray) -> int:
    """Silent runs of GAP_WINDOWS or more between the first and the last speech window."""
    found = np.flatnonzero(speech)
    if not len(found):
        return 0
    run, gaps = 0, 0
    for is_speech in speech[found[0] : found[-1] + 1]:
        if is_speech:
            gaps += run >= GAP_WINDOWS
            run = 0
        else:
            run += 1
    return gaps


async def inbound_audio(room: rtc.Room) -> Any:
    stats = await room.get_rtc_stats()
    for stat in [*stats.subscriber_stats, *stats.publisher_stats]:
        if stat.WhichOneof("stats") == "inbound_rtp" and stat.inbound_rtp.stream.kind == "audio":
            return stat.inbound_rtp
    return None


async def one(
    server: LiveKitServer, relay: Relay, pcm: Pcm, options: str, loss: float, round_: int
) -> dict[str, Any]:
    name = f"relay-{options}-{int(loss * 100)}-{round_}"
    relay.impair(name, down=lossy(loss))
    listener = Listener("listener")
    publisher = rtc.Room()
    source = rtc.AudioSource(pcm.sample_rate, 1, queue_size_ms=100)
    try:
        with relay.claim(name):
            await listener.connect(server.url, server.token("listener", name))
            await eventually(lambda: bool(relay.labelled(name)), what="the listener's flow")
        await publisher.connect(server.url, server.token("interpreter", name))
        red, dtx = OPTIONS[options]
        track = rtc.LocalAudioTrack.create_audio_track(TRACK, source)
        options_ = interpretation_publish_options(red=red, dtx=dtx)
        await publisher.local_participant.publish_track(track, options_)
        await eventually(lambda: TRACK in listener.heard, what="the listener's subscription")
        async for frame in paced_frames(pcm):
            await source.capture_frame(frame)
        await asyncio.sleep(1.5)  # the tail: jitter buffer and the relay's delay
        inbound = await inbound_audio(listener.room)
    finally:
        await listener.aclose()
        await publisher.disconnect()
        await source.aclose()
    sent, heard = windows(pcm.samples, pcm.sample_rate), windows(listener.audio(TRACK), LISTEN_RATE)
    arrived, dropped = relay.count(name, "down").total("rtp")
    figures: dict[str, Any] = {
        "options": options,
        "loss_pct": round(loss * 100),
        "rtp_dropped_pct": round(100 * dropped / arrived, 1) if arrived else None,
        "speech_received_pct": round(100 * heard.sum() / max(sent.sum(), 1), 1),
        "extra_gaps_60ms": inner_gaps(heard) - inner_gaps(sent),
    }
    if inbound is not None:
        samples = max(inbound.inbound.total_samples_received, 1)
        concealed = inbound.inbound.concealed_samples - inbound.inbound.silent_concealed_samples
        figures |= {
            "packets_lost": inbound.received.packets_lost,
            "concealed_pct": round(100 * concealed / samples, 2),
            "silent_concealed_pct": round(100 * inbound.inbound.silent_concealed_samples / samples, 2),
            "concealments": inbound.inbound.concealment_events,
        }
    return figures


async def run(
    server: LiveKitServer, relay: Relay, losses: list[float], options: list[str], repeat: int
) -> list[dict[str, Any]]:
    said = [read_wav(DIALOGUE.wav), read_wav(SPANISH.wav)]
    pcm = Pcm(np.concatenate([p.samples for p in said]), said[0].sample_rate)
    rows = []
    for round_ in range(repeat):
        for loss in losses:
            for option in options:
                rows.append(row := await one(server, relay, pcm, option, loss, round_))
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


COLUMNS = ("options", "loss_pct", "rtp_dropped_pct", "packets_lost", "concealed_pct", "silent_concealed_pct",
           "concealments", "speech_received_pct", "extra_gaps_60ms")  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    lines = [" | ".join(COLUMNS)]
    lines += [" | ".join(f"{row.get(c, '-')!s:>{len(c)}}" for c in COLUMNS) for row in rows]
    return "\n".join(lines)


class LossProxyingServer(LiveKitServer):
    """The server reporting to a publisher of audio the worst of its subscribers' loss (so that the Opus
    encoder's in-band FEC turns on for the listeners' loss): `audio.enable_loss_proxying`, off by default."""

    def config(self) -> dict[str, object]:
        return {**super().config(), "audio": {"enable_loss_proxying": True}}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench relay", description=__doc__)
    parser.add_argument("--loss", default="0,2,5,10", help="loss percentages (0,2,5,10)")
    parser.add_argument("--options", default=",".join(OPTIONS), help=f"of {', '.join(OPTIONS)} (all)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every condition (1)")
    parser.add_argument("--loss-proxying", action="store_true", help="audio.enable_loss_proxying on")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    try:
        losses = [float(x) / 100 for x in args.loss.split(",")]
    except ValueError:
        parser.error(f"--loss: percentages separated by commas, not {args.loss!r}")
    if not all(0 <= loss < 1 for loss in losses):
        parser.error(f"--loss: each from 0 to under 100, not {args.loss!r}")
    options = args.options.split(",")
    if unknown := set(options) - set(OPTIONS):
        parser.error(f"unknown options {sorted(unknown)} (known: {', '.join(OPTIONS)})")
    binary = find_binary()
    if binary is None:
        raise SystemExit(INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        kind = LossProxyingServer if args.loss_proxying else LiveKitServer
        server = kind(binary, Path(tmp) / "livekit-server.log", relay_ip=RELAY_IP)
        with serving_through_relay(server) as relay:
            rows = asyncio.run(run(server, relay, losses, options, args.repeat))
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
