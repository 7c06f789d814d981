"""`python -m agent local`: what it says before starting anything (missing provider keys, no livekit-server),
and the whole thing run as a person would: the real livekit-server in dev mode, the worker and the page, a
speaker joining with a token from the page's endpoint, the interpreter coming in, then Ctrl-C (SIGINT) and
every process gone; and a server that dies takes the rest down with exit code 1. On the terminal: log lines a
person reads (the worker's JSON made readable), and no warning about the dev keys' length."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from aiohttp import ClientSession

from agent.run.filemode import read_wav
from agent.run.local import plan
from agent.run.local_log import ReadableFormatter, readable
from tests.conftest import ONE_SENTENCE, Fakes, start_room_fakes, stop_fakes
from tests.livekit_server import INSTALL_HINT, find_binary, free_port
from tests.loopback import eventually
from tests.participants import Listener, Speaker

ROOT = Path(__file__).parent.parent
URL_LINE = re.compile(r"^The page: (http://127\.0\.0\.1:\d+/) \(LiveKit at (ws://127\.0\.0\.1:\d+)\)")
# a log line on local's terminal: its time, then its level, logger, message and fields as key=value
LOG_LINE = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
PROVIDER_KEYS = ("DEEPGRAM_API_KEY", "CEREBRAS_API_KEY", "GROQ_API_KEY", "CARTESIA_API_KEY")


def base_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """A clean environment: no .env (the working directory is `tmp_path`), no keys, no server on PATH."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), **env}


def fake_server(tmp_path: Path) -> tuple[Path, Path]:
    """An executable standing in for livekit-server that leaves a mark when it is run."""
    mark, binary = tmp_path / "started", tmp_path / "livekit-server"
    binary.write_text(f"#!/bin/sh\ntouch {mark}\nsleep 60\n")
    binary.chmod(0o755)
    return binary, mark


def run_local(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "local"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_missing_provider_key_is_named_before_anything_starts(tmp_path: Path) -> None:
    binary, mark = fake_server(tmp_path)
    done = run_local(tmp_path, base_env(tmp_path, LIVEKIT_SERVER=str(binary), GROQ_API_KEY="gq"))
    assert done.returncode == 2, done.stderr
    assert "DEEPGRAM_API_KEY is missing" in done.stderr and "CARTESIA_API_KEY is missing" in done.stderr
    assert "CEREBRAS_API_KEY" not in done.stderr  # Groq alone is enough
    assert "LIVEKIT" not in done.stderr  # local brings its own server and keys
    assert not mark.exists() and done.stdout == ""

    done = run_local(tmp_path, base_env(tmp_path, LIVEKIT_SERVER=str(binary)))
    assert done.returncode == 2
    assert "CEREBRAS_API_KEY and GROQ_API_KEY are both missing" in done.stderr
    assert not mark.exists()


def test_without_livekit_server_it_says_how_to_install_it(tmp_path: Path) -> None:
    keys = {name: "k" for name in PROVIDER_KEYS}
    done = run_local(tmp_path, base_env(tmp_path, **keys))  # not in $LIVEKIT_SERVER, PATH or the cache
    assert done.returncode == 2
    assert "livekit-server not found" in done.stderr and "./scripts/install-livekit-server" in done.stderr
    # with keys missing too, both are said at once
    done = run_local(tmp_path, base_env(tmp_path, LIVEKIT_SERVER=str(tmp_path / "nowhere")))
    assert done.returncode == 2
    assert "DEEPGRAM_API_KEY is missing" in done.stderr and "livekit-server not found" in done.stderr
    bad_port = run_local(tmp_path, base_env(tmp_path, **keys, LOCAL_LIVEKIT_PORT="seventy"))
    assert bad_port.returncode == 2 and "LOCAL_LIVEKIT_PORT='seventy' is malformed" in bad_port.stderr


def test_a_json_log_record_reads_as_a_line_and_anything_else_passes_as_it_is() -> None:
    record = {
        "message": "draining 100% of the room",
        "level": "ERROR",
        "name": "agent.worker",
        "speaker": "3f2a9c1e",
        "languages": ["es", "fr"],
        "reason": "two words",
        "identities_hidden": True,
        "exc_info": 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad',
        "pid": 4107,
        "code.file.path": "/x.py",
        "code.function.name": "close",
        "code.line.number": 9,
        "timestamp": "2026-01-02T10:00:00.250000+00:00",
    }
    line = readable(json.dumps(record), ReadableFormatter())
    first, *traceback = line.splitlines()
    assert re.fullmatch(
        LOG_LINE
        + r"ERROR agent\.worker draining 100% of the room "
        + r'speaker=3f2a9c1e languages=\["es","fr"\] reason="two words"',
        first,
    ), first
    assert first.startswith(datetime.fromtimestamp(1767348000.25).strftime("%Y-%m-%d %H:%M:%S,250 ERROR "))
    assert traceback == ["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: bad"]
    for other in ("  return self._jws.encode(", "[1, 2]", '{"no": "message"}', "not JSON {"):
        assert readable(other, ReadableFormatter()) == other


def test_the_worker_hears_no_warning_about_the_dev_keys_length_and_keeps_its_own_filters() -> None:
    env = {name: "k" for name in PROVIDER_KEYS} | {"LIVEKIT_SERVER": sys.executable}
    plain, own = plan(env, {}), plan(env, {"PYTHONWARNINGS": "error::DeprecationWarning"})
    for made in (plain, own):
        shutil.rmtree(made.run_dir)
    assert plain.worker_env["PYTHONWARNINGS"] == "ignore:The HMAC key is:UserWarning"
    # the person's own filters kept; the last one wins
    assert own.worker_env["PYTHONWARNINGS"] == "error::DeprecationWarning,ignore:The HMAC key is:UserWarning"


def three_free_ports() -> int:
    """A port whose next two are free as well (the server's TCP and UDP media ports)."""
    for _ in range(50):
        port = free_port()
        if port + 2 > 65535:
            continue
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as a,
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as b,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c,
            ):
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
                c.bind(("127.0.0.1", port + 2))
        except OSError:
            continue
        return port
    raise AssertionError("no three free ports in a row")


@dataclass
class Running:
    proc: asyncio.subprocess.Process
    page: str
    livekit_url: str
    errors: Path  # its stderr (the worker's output passes through it)
    children: list[psutil.Process]

    def log(self) -> str:
        return self.errors.read_text(errors="replace")


@asynccontextmanager
async def local(tmp_path: Path, fakes: Fakes, *, deaf_server: bool = False) -> AsyncIterator[Running]:
    """`python -m agent local` on free ports, until it printed the page's URL. `deaf_server`: its
    livekit-server ignores SIGTERM (a shell that ignores it, running the real server)."""
    binary = find_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(INSTALL_HINT, pytrace=False)
        pytest.skip(INSTALL_HINT)
    if deaf_server:
        wrapper = tmp_path / "deaf-livekit-server"
        wrapper.write_text(f"#!/bin/sh\ntrap '' TERM\n'{binary}' \"$@\"\n")
        wrapper.chmod(0o755)
        binary = str(wrapper)
    env = base_env(
        tmp_path,
        **fakes.env(),
        LIVEKIT_SERVER=binary,
        LOCAL_LIVEKIT_PORT=str(three_free_ports()),
        WEB_PORT=str(free_port()),
        HEALTH_PORT=str(free_port()),
        PROMETHEUS_PORT=str(free_port()),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        DRAIN_TIMEOUT_S="2",
        TMPDIR=str(tmp_path),  # where local keeps the server's log
        PYTHONDEVMODE="1",
    )
    errors = tmp_path / "local.stderr"
    with errors.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            "local",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            stdin=asyncio.subprocess.DEVNULL,
        )
    seen: list[psutil.Process] = []  # everything it started, killed at the end if still running
    try:
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
        except TimeoutError:
            line = ""
        match = URL_LINE.match(line)
        assert match, f"no page URL line: {line!r}\n{errors.read_text(errors='replace')[-6000:]}"
        seen += psutil.Process(proc.pid).children(recursive=True)
        yield Running(proc, match[1], match[2], errors, list(seen))
    finally:
        with contextlib.suppress(psutil.Error):
            seen += psutil.Process(proc.pid).children(recursive=True)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for child in seen:  # nothing left behind by a failed test (psutil checks it is still that process)
            with contextlib.suppress(psutil.Error):
                child.kill()


def server_log_kept(output: str) -> bool | None:
    """Whether the server's log that `local` named is still there (None: it named none)."""
    named = re.search(r"log: (\S+/livekit-server\.log)", output)
    return None if named is None else Path(named[1]).exists()


def gone(children: list[psutil.Process]) -> bool:
    def alive(p: psutil.Process) -> bool:
        with contextlib.suppress(psutil.Error):
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        return False

    return not any(alive(p) for p in children)


async def test_local_runs_server_worker_and_page_and_stops_all_three_on_ctrl_c(tmp_path: Path) -> None:
    fakes = await start_room_fakes()
    speaker, listener = Speaker("speaker"), Listener("listener")
    try:
        async with local(tmp_path, fakes) as running:
            names = {" ".join(p.cmdline()[:4]) for p in running.children}
            assert any("--dev" in name for name in names), names  # livekit-server
            assert any(name.endswith("-m agent start") for name in names), names  # the worker
            async with ClientSession() as http:
                async with http.get(running.page + "api/config") as response:
                    assert response.status == 200 and (await response.json())["access_code_required"] is False

                async def token(**body: str) -> dict[str, str]:
                    request = {"room": "local-test", "name": "Sam", **body}
                    async with http.post(running.page + "api/token", json=request) as response:
                        assert response.status == 200, await response.text()
                        answer: dict[str, str] = await response.json()
                        return answer

                as_speaker = await token(role="speaker", language="en")
                as_listener = await token(role="listener", language="es")
            assert as_speaker["url"] == as_listener["url"] == running.livekit_url
            await speaker.connect(as_speaker["url"], as_speaker["token"])
            await speaker.publish()
            await listener.connect(as_listener["url"], as_listener["token"])
            await eventually(
                lambda: listener.agent() is not None, within_s=90, what="the interpreter to join"
            )
            speaker.say(read_wav(ONE_SENTENCE.wav))
            await eventually(
                lambda: listener.final_captions(translated=True, language="es") != [],
                within_s=60,
                what=f"a translated caption\n{running.log()[-6000:]}",
            )
            assert listener.audio("interpretation-es").any()  # the translation was heard, not only captioned
            await speaker.aclose()
            await listener.aclose()

            children = psutil.Process(running.proc.pid).children(recursive=True)  # the room's job too
            running.proc.send_signal(signal.SIGINT)  # Ctrl-C
            assert await asyncio.wait_for(running.proc.wait(), 90) == 0, running.log()[-6000:]
            await eventually(lambda: gone(children), within_s=10, what="every child to be gone")
            log = running.log()
            assert "stopped" in log and " killed (" not in log
            assert server_log_kept(log) is False  # removed after a clean run
            # lines to read, the worker's (its job's included) as local's own, and no JSON
            assert [line for line in log.splitlines() if line.startswith("{")] == [], log[-6000:]
            for logged in (
                r"INFO livekit\.agents registered worker agent_name=interpreter .* protocol=\d+$",  # worker
                r"INFO agent\.session interpretation track published language=es ",  # its job's
                r"INFO agent\.web token issued role=speaker tokens_issued=1$",  # local's own (the page)
            ):
                assert re.search(LOG_LINE + logged, log, re.M), (logged, log[-6000:])
            assert "code.file.path" not in log  # nor the process id: the worker's line ends as its JSON
            # the dev keys are short by design: the JWT library's warning about it is silenced here
            assert "HMAC key" not in log, log[-6000:]
    finally:
        await speaker.aclose()
        await listener.aclose()
        await stop_fakes(fakes)


async def test_when_the_server_dies_local_stops_the_rest_and_exits_1(tmp_path: Path) -> None:
    fakes = await start_room_fakes()
    try:
        async with local(tmp_path, fakes) as running:
            server = next(p for p in running.children if "--dev" in p.cmdline())
            server.kill()
            assert await asyncio.wait_for(running.proc.wait(), 90) == 1
            await eventually(lambda: gone(running.children), within_s=10, what="every child to be gone")
            log = running.log()
            assert re.search(r"livekit-server exited with code -9 \(its log: \S+\)", log), log[-6000:]
            assert server_log_kept(log) is True  # kept after a failure
    finally:
        await stop_fakes(fakes)


async def test_a_child_that_does_not_stop_is_killed_at_once_on_a_second_ctrl_c(tmp_path: Path) -> None:
    fakes = await start_room_fakes()
    try:
        async with local(tmp_path, fakes, deaf_server=True) as running:
            children = psutil.Process(running.proc.pid).children(recursive=True)
            running.proc.send_signal(signal.SIGINT)
            await eventually(lambda: "stopping" in running.log(), within_s=30, what="local to start stopping")
            running.proc.send_signal(signal.SIGINT)  # impatient: kill what is left
            assert await asyncio.wait_for(running.proc.wait(), 60) == 0, running.log()[-6000:]
            await eventually(lambda: gone(children), within_s=10, what="every child to be gone")
            assert "livekit-server killed (a second signal)" in running.log()
    finally:
        await stop_fakes(fakes)
