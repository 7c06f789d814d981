"""Own-voice clones left behind (issue 21): the worker's sweep (agent/run/clone_sweep.py) against the fake
Cartesia's paginated `GET /voices` and `DELETE /voices/{id}`; then a real worker in a real room whose job
process is SIGKILLed mid-meeting, its clone left at Cartesia, and the sweep deleting it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from agent.room.cloning import ATTR_OWN_VOICE, ATTR_VOICE, CLONE_TAG
from agent.run.clone_sweep import DELETE_ATTEMPTS, PAGE_LIMIT, CloneSweep
from agent.run.filemode import read_wav
from agent.settings.config import CloneSweepSettings, load_server_settings
from tests.conftest import DIALOGUE, start_room_fakes, stop_fakes
from tests.fakes.cartesia import FakeCartesia
from tests.livekit_server import LiveKitServer
from tests.loopback import eventually
from tests.real_room import real_room

MAX_AGE_S = 3600.0
OLD = datetime.now(UTC) - timedelta(hours=2)


@pytest.fixture
async def cartesia() -> AsyncIterator[FakeCartesia]:
    fake = FakeCartesia()
    await fake.start()
    yield fake
    await fake.aclose()


@contextlib.asynccontextmanager
async def sweeper(cartesia: FakeCartesia) -> AsyncIterator[CloneSweep]:
    """A started sweep (its first sweep runs at once); the interval long enough that a test sweeps again
    only by calling `sweep`."""
    sweep = CloneSweep(CloneSweepSettings("ct-key", cartesia.base_url, 3600.0, MAX_AGE_S))
    sweep.start()
    try:
        yield sweep
    finally:
        await sweep.aclose()


def ours(n: int) -> str:
    return f"interp-{n:012x}"


async def test_the_sweep_pages_through_the_voices_and_deletes_only_old_clones_of_ours(
    cartesia: FakeCartesia, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    old_ours = [cartesia.add_voice(ours(i), CLONE_TAG, created_at=OLD)["id"] for i in range(230)]
    legacy = cartesia.add_voice(ours(999), "", created_at=OLD)["id"]  # made before the tag: ours too
    kept = [
        cartesia.add_voice(ours(1000), CLONE_TAG)["id"],  # young: a meeting may still use it
        cartesia.add_voice("interp-team", CLONE_TAG, created_at=OLD)["id"],  # not our name pattern
        cartesia.add_voice(ours(1001), "my own voice", created_at=OLD)["id"],  # someone else's description
        cartesia.add_voice("Alice's voice", "", created_at=OLD)["id"],  # the account's own voice
        cartesia.add_voice(ours(1002), CLONE_TAG, created_at=OLD, is_owner=False)["id"],  # not the account's
    ]
    async with sweeper(cartesia) as sweep:
        await eventually(lambda: sweep.last is not None, what="the start-up sweep")
    assert sweep.last is not None
    assert sorted(cartesia.deleted_voices) == sorted([*old_ours, legacy])
    assert cartesia.voices == set(kept)
    # every page of 100 (the owner's voices only), each after the last id of the one before
    pages = cartesia.list_requests
    assert len(pages) == 3 and all(p["limit"] == str(PAGE_LIMIT) and p["is_owner"] == "true" for p in pages)
    assert "starting_after" not in pages[0] and pages[1]["starting_after"] and pages[2]["starting_after"]
    counts = sweep.last.__dict__
    assert counts == dict(listed=235, ours=232, old=231, deleted=231, refused=0, failed=0, skipped=0)
    (line,) = [r for r in caplog.records if r.name == "agent.clone_sweep" and "deleted" in r.getMessage()]
    assert line.__dict__["deleted"] == 231
    logged = " ".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert not any(voice_id in logged for voice_id in old_ours + kept)
    assert "interp-" not in logged and "ct-key" not in logged


async def test_a_refused_delete_is_not_asked_again_and_a_failed_one_is_retried_next_sweep(
    cartesia: FakeCartesia, caplog: pytest.LogCaptureFixture
) -> None:
    refused = cartesia.add_voice(ours(1), CLONE_TAG, created_at=OLD)["id"]
    cartesia.refuse_deletes(403)
    async with sweeper(cartesia) as sweep:
        await eventually(lambda: sweep.last is not None, what="the start-up sweep")
        assert sweep.last is not None and (sweep.last.refused, cartesia.delete_requests) == (1, 1)
        counts = await sweep.sweep()  # not asked again
        assert (counts.skipped, counts.refused, cartesia.delete_requests) == (1, 0, 1)
        assert cartesia.voices == {refused}
        warned = [r for r in caplog.records if r.name == "agent.clone_sweep" and r.levelno == logging.WARNING]
        assert len(warned) == 1 and warned[0].__dict__["refused"] == 1  # said once, not every sweep

        cartesia.refuse_deletes(None)
        failing = cartesia.add_voice(ours(2), CLONE_TAG, created_at=OLD)["id"]
        cartesia.fail_deletes(DELETE_ATTEMPTS)  # every attempt of this sweep answers 500
        counts = await sweep.sweep()
        assert (counts.failed, cartesia.delete_requests) == (1, 1 + DELETE_ATTEMPTS)
        counts = await sweep.sweep()  # the next sweep tries again
        assert counts.deleted == 1 and cartesia.deleted_voices == [failing]


async def test_a_listing_that_fails_is_tried_again_at_the_next_sweep(cartesia: FakeCartesia) -> None:
    await cartesia.aclose()  # Cartesia unreachable
    sweep = CloneSweep(CloneSweepSettings("ct-key", cartesia.base_url, 1.0, MAX_AGE_S))
    sweep.start()
    try:
        await eventually(lambda: sweep.sweeps >= 2, what="a second sweep after the first failed")
        assert sweep.last is None
    finally:
        await sweep.aclose()


def test_the_sweep_settings_default_to_an_hour_and_twelve_hours_and_need_the_key() -> None:
    settings = load_server_settings({"CARTESIA_API_KEY": "k"}).clone_sweep
    assert settings is not None and (settings.interval_s, settings.max_age_s) == (3600.0, 43200.0)
    assert load_server_settings({}).clone_sweep is None  # no key: nothing to sweep with
    assert load_server_settings({"CARTESIA_API_KEY": "k", "CLONE_SWEEP_INTERVAL_S": "0"}).clone_sweep is None


# -- a job process killed mid-meeting ---------------------------------------------------------------------


def job_process_talking_to(worker_pid: int, port: int) -> psutil.Process:
    """The worker's job process with a connection to `port` (the fake Cartesia: the room's TTS)."""
    for child in psutil.Process(worker_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(c.raddr and c.raddr.port == port for c in child.net_connections("tcp")):
                return child
    raise AssertionError("no job process talks to the fake Cartesia")


async def test_a_clone_left_by_a_killed_job_process_is_deleted_by_the_sweep(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    fakes = await start_room_fakes()
    cartesia = fakes.cartesia
    try:
        # a sweep every second, clones older than an hour are orphans (the test ages them at the fake)
        env = {"CLONE_SWEEP_INTERVAL_S": "1", "CLONE_MAX_AGE_S": str(int(MAX_AGE_S))}
        async with real_room(livekit_server, fakes, tmp_path, STT_ENDPOINTING_MS="600", **env) as room:
            alice = await room.speaker(
                "alice", attributes={"language": "en", ATTR_VOICE: "own"}, dispatch=room.dispatch()
            )
            listener = await room.listener("lena", attributes={"language": "es"})
            await room.agent_tracks(alice, "interpretation-es", "interpretation-en")
            for _ in range(3):  # about 8 s of voiced speech: past the 5 s a clone is made from
                await alice.say(read_wav(DIALOGUE.wav))
                if cartesia.voices:
                    break
            await eventually(lambda: len(cartesia.voices) == 1, within_s=60, what="the clone made")
            (clone,) = cartesia.voices
            shown = '["alice"]'
            await eventually(lambda: listener.agent_attribute(ATTR_OWN_VOICE) == shown, what="own voice")
            listed = len(cartesia.list_requests)
            await eventually(lambda: len(cartesia.list_requests) > listed + 1, what="sweeps in the meeting")
            assert cartesia.voices == {clone}  # a young clone, in use: never swept

            assert room.worker.proc is not None
            job = job_process_talking_to(room.worker.proc.pid, cartesia.port)
            os.kill(job.pid, signal.SIGKILL)  # mid-meeting: no drain, no delete
            await asyncio.to_thread(job.wait, 10)
            listed = len(cartesia.list_requests)
            await eventually(lambda: len(cartesia.list_requests) > listed + 1, what="sweeps after the kill")
            assert cartesia.voices == {clone} and cartesia.delete_requests == 0  # the orphan, left behind

            cartesia.age_voices(2 * MAX_AGE_S)  # the longest meeting has passed
            await eventually(lambda: cartesia.deleted_voices == [clone], within_s=30, what="the orphan swept")
            assert cartesia.voices == set()
            await eventually(lambda: "clone sweep: old clones deleted" in room.worker.output(), what="logged")
            assert clone not in room.worker.output()
    finally:
        await stop_fakes(fakes)
