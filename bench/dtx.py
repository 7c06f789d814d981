"""`python -m bench dtx`: what the ears get during a browser microphone's pauses, DTX on and off.

The page's speaker in real Chromium (its fake capture device playing `dialogue_en.wav` in a loop, under a
noise floor) publishes through the real LiveKit server to a subscriber that takes the track as the interpreter
does (tests/dtx.py). Conditions: the floor (`digital`, `white-<n>` at −n dBFS, `hum-<n>` n dB under the
speech); DTX on (as the page publishes: livekit-client's default) or off (the page's own room object publishes
the microphone again without); the browser's capture processing (noise suppression, echo cancellation, gain
control) on (as the page captures: livekit-client's default) or off (the page's getUserMedia asked for them
off: the floor reaches the encoder as it is). The page has no setting for either.

Per condition it prints: the pages that joined until one's browser had DTX as asked (livekit-client sometimes
misses it), RTP packets/s received (50 without DTX; fewer when DTX leaves silences unsent); for ears that
started hearing in a pause, the energy of the frames inside the pauses (dBFS min/median/max), what
the ears' `VoiceGate` called them (QUIET; GAP a dropout; VOICED noise taken for speech) and its noise floor
there, the clean pauses the pause detector (PAUSE_CUT_MS 120) cut and its cuts mid-word; for ears that started
hearing in the middle of a sentence, the pause frames that were GAP and the pauses cut.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from tests.browser import Browsers, missing_browser, web_server
from tests.dtx import FLOORS, MID_SPEECH, judge_received, microphone, record_page_speaker, write_microphone
from tests.livekit_server import INSTALL_HINT, LiveKitServer, find_binary

COLUMNS = ("floor", "processing", "dtx", "joins", "packets_per_s", "pause_frames", "db_min", "db_median",
           "db_max", "quiet", "gap", "voiced", "gate_floor_db", "pauses_found", "mid_word_cuts",
           "gap_mid_speech", "found_mid_speech")  # fmt: skip


async def run(
    server: LiveKitServer,
    workdir: Path,
    floors: list[str],
    dtx: list[bool],
    processing: list[bool],
    seconds: float,
) -> list[dict[str, Any]]:
    rows = []
    async with web_server(server, workdir / "web") as web, Browsers.open(workdir) as browsers:
        for floor in floors:
            mic = write_microphone(floor, workdir / f"{floor}.wav")
            for on in processing:
                for dtx_on in dtx:
                    room = f"room-dtx-{floor}-{'p' if on else 'raw'}-{'dtx' if dtx_on else 'nodtx'}"
                    got = await record_page_speaker(
                        server, web, browsers, mic, room, seconds, dtx=dtx_on, processing=on
                    )
                    heard = judge_received(floor, got.dtx, got.audio)
                    late = judge_received(floor, got.dtx, got.audio, MID_SPEECH)
                    row = {
                        "processing": "on" if on else "off",
                        "joins": got.joins,
                        "packets_per_s": round(got.packets_per_s, 1),
                        "gap_mid_speech": f"{late.voicing['gap']}/{len(late.energies)}",
                        "found_mid_speech": f"{late.pauses_found}/{late.pauses}",
                    }
                    rows.append(row := heard.figures() | row)
                    print(" ".join(f"{c}={row[c]}" for c in COLUMNS), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [" | ".join(COLUMNS)]
    lines += [" | ".join(f"{row.get(c, '-')!s:>{len(c)}}" for c in COLUMNS) for row in rows]
    return "\n".join(lines)


def on_off(parser: argparse.ArgumentParser, name: str, value: str) -> list[bool]:
    choices = {"on": True, "off": False}
    picked = value.split(",")
    if not picked or set(picked) - set(choices):
        parser.error(f"--{name}: on, off or on,off, not {value!r}")
    return [choices[v] for v in picked]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench dtx", description=__doc__)
    parser.add_argument("--floors", default=",".join(FLOORS), help=f"noise floors ({','.join(FLOORS)})")
    parser.add_argument("--dtx", default="on,off", help="DTX on, off or both (on,off)")
    parser.add_argument("--processing", default="on,off", help="the capture's processing (on,off)")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio recorded per condition (20)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    floors = args.floors.split(",")
    for floor in floors:
        try:
            microphone(floor)
        except ValueError as error:
            parser.error(f"--floors: {error}")
    if args.seconds < 12:
        parser.error("--seconds: at least 12 (3.5 s of warm-up, then a whole pause or more)")
    dtx, processing = on_off(parser, "dtx", args.dtx), on_off(parser, "processing", args.processing)
    binary = find_binary()
    if binary is None:
        raise SystemExit(INSTALL_HINT)
    if (missing := missing_browser()) is not None:
        raise SystemExit(missing)
    with tempfile.TemporaryDirectory(prefix="bench-dtx-") as tmp:
        server = LiveKitServer(binary, Path(tmp) / "livekit-server.log")
        server.start()
        try:
            rows = asyncio.run(run(server, Path(tmp), floors, dtx, processing, args.seconds))
        finally:
            server.stop()
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
