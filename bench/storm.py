"""`python -m bench storm`: one participant storms a real room's contract; what the others see, in figures.

The real LiveKit server (`livekit-server`, as the real-room tests find it), the real worker and the fake
providers on 127.0.0.1. Alice speaks (the three-sentence dialogue), bob listens in Spanish; mallory asks for
dozens of languages and sends `--changes` attribute changes as fast as the server takes them (bad codes,
60 KB values, language lists), then renames herself "Alice". In the middle of the storm bob switches to
Italian: the time until the Italian track is published is what another participant's change waits.

Prints: the storm's rate, the tracks the worker published and removed, the changes it coalesced, bob's
captions of alice (of 3) and the names they carried, and bob's switch time. (`MAX_LANGUAGES=6`, so that
bob's Italian has a place whatever mallory asks for.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.run.filemode import read_wav
from tests.conftest import DIALOGUE, start_room_fakes, stop_fakes
from tests.livekit_server import INSTALL_HINT, LiveKitServer, find_binary
from tests.loopback import eventually
from tests.participants import Speaker
from tests.real_room import real_room

DOZENS = "de,fr,ja,ko,nl,pl,ru,sv,da,fi,uk,cs,el,hu,ro,bg,hr,sk,id,ms,vi,th,ta,te,bn,mr,gu,kn,pa,he,tl"
VALUES = [DOZENS, "klingon,xx,,", "ES", "es_MX,zh-Hant-TW,pt-br", "x" * 60_000, "<script>" * 500, "de,fr"]


async def storm(mallory: Speaker, changes: int, halfway: asyncio.Event) -> tuple[int, float]:
    """The changes the server took, and how long they took (s)."""
    started, taken = time.perf_counter(), 0
    for n in range(changes):
        if n == changes // 2:
            halfway.set()
        attributes = {"interpret_to": VALUES[n % len(VALUES)], "junk": str(n)}
        try:
            await mallory.room.local_participant.set_attributes(attributes)
            taken += 1
        except Exception:  # a value the server refuses is refused: the storm goes on
            continue
    elapsed = time.perf_counter() - started
    await mallory.room.local_participant.set_name("Alice")
    return taken, elapsed


async def run(changes: int, server: LiveKitServer, workdir: Path) -> dict[str, Any]:
    fakes = await start_room_fakes()
    fakes.deepgram.scripts["en"] = list(DIALOGUE.transcripts)
    try:
        async with real_room(server, fakes, workdir, STT_ENDPOINTING_MS="600", MAX_LANGUAGES="6") as room:
            alice = await room.speaker(
                "alice", attributes={"language": "en"}, dispatch=room.dispatch(), name="Alice"
            )
            bob = await room.listener("bob", attributes={"interpret_to": "es"}, name="Bob")
            mallory = await room.speaker("mallory", attributes={"interpret_to": DOZENS}, name="Mallory")
            await room.agent_tracks(bob, "interpretation-es", "interpretation-en", "interpretation-de",
                                    "interpretation-fr", within_s=60)  # fmt: skip
            halfway = asyncio.Event()
            stormed = asyncio.create_task(storm(mallory, changes, halfway))
            alice.say(read_wav(DIALOGUE.wav))
            await halfway.wait()
            asked = time.perf_counter()
            await bob.room.local_participant.set_attributes({"interpret_to": "it"})
            await eventually(lambda: "interpretation-it" in bob.agent_tracks(), within_s=120, what="Italian")
            switch_s = time.perf_counter() - asked
            taken, storm_s = await stormed
            await eventually(lambda: len(bob.final_captions(translated=True, language="es")) >= 3,
                             within_s=120, what="alice's sentences")  # fmt: skip
            output = room.worker.output()
            spanish = bob.final_captions(translated=True, language="es")
            return {
                "changes_taken": taken,
                "storm_s": round(storm_s, 1),
                "changes_per_s": round(taken / storm_s, 1) if storm_s else None,
                "tracks_published": output.count("interpretation track published"),
                "tracks_removed": output.count("interpretation track removed"),
                "coalesced_logged": sum(int(n) for n in re.findall(r'"coalesced": (\d+)', output)),
                "bob_switch_s": round(switch_s, 2),
                "bob_spanish_captions_of_alice": sum(
                    c.attributes.get("interpreter.speaker") == "alice" for c in spanish
                ),
                "caption_names": sorted({c.attributes.get("interpreter.speaker_name", "-") for c in spanish}),
            }
    finally:
        await stop_fakes(fakes)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench storm", description=__doc__)
    parser.add_argument("--changes", type=int, default=300, help="attribute changes in the storm (300)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    binary = find_binary()
    if binary is None:
        raise SystemExit(INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        server = LiveKitServer(binary, Path(tmp) / "livekit-server.log")
        server.start()
        try:
            figures = asyncio.run(run(args.changes, server, Path(tmp) / "worker"))
        finally:
            server.stop()
    for key, value in figures.items():
        print(f"{key:>32}: {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
