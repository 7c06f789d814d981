"""The worker's entry point as an operator meets it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from agent.run.health import Registration
from tests.livekit_server import INSTALL_HINT, LiveKitServer, find_binary, free_port
from tests.loopback import eventually
from tests.room_worker import WorkerProcess, start_unregistered_worker

ROOT = Path(__file__).parent.parent


def run_agent(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_the_framework_commands(tmp_path: Path):
    result = run_agent("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("start", "dev", "connect", "download-files"):
        assert command in result.stdout


def test_start_without_configuration_names_every_missing_variable(tmp_path: Path):
    result = run_agent(
        "start", cwd=tmp_path, env={"GROQ_API_KEY": "gq-secret-value", "STT_ENDPOINTING_MS": "x"}
    )
    assert result.returncode == 2
    for name in (
        "LIVEKIT_URL",
        "LIVEKIT_API_KEY",
        "LIVEKIT_API_SECRET",
        "DEEPGRAM_API_KEY",
        "CARTESIA_API_KEY",
        "STT_ENDPOINTING_MS",
    ):
        assert name in result.stderr
    assert "CEREBRAS_API_KEY" not in result.stderr  # Groq alone is enough to run
    assert "gq-secret-value" not in result.stderr + result.stdout


def test_env_file_is_read_from_the_working_directory(tmp_path: Path):
    (tmp_path / ".env").write_text("LIVEKIT_URL=not-a-url\n")
    result = run_agent("start", cwd=tmp_path)
    assert "LIVEKIT_URL='not-a-url' is malformed" in result.stderr


# -- reaching LiveKit: health says whether the worker is registered; rejected credentials, giving up: exit 1

PROVIDER_KEYS = {
    "DEEPGRAM_API_KEY": "dg-secret-value",
    "CEREBRAS_API_KEY": "cb-secret-value",
    "CARTESIA_API_KEY": "ct-secret-value",
}
WRONG_SECRET = "wrong-secret-value-never-logged"


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def health(port: int | str, path: str = "/") -> tuple[int, str]:
    """The status and body the worker's health endpoint answers (0: nothing listens yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


async def health_answers(port: int | str, status: int, within_s: float = 60.0) -> str:
    """Wait until the health endpoint answers `status`; its body."""
    answers: list[tuple[int, str]] = []

    def answered() -> bool:
        answers.append(health(port))
        return answers[-1][0] == status

    try:
        await eventually(answered, within_s=within_s, what=f"health {status}")
    except AssertionError as e:
        raise AssertionError(f"{e}; it last answered {answers[-1:]}") from None
    return answers[-1][1]


def finish(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The worker's whole output once it exited by itself (killed, and the test failed, if it did not)."""
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise AssertionError(f"the worker did not exit within {timeout_s} s\n{output[-4000:]}") from None
    return output


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM (as Fly sends it); the exit code and the output."""
    proc.send_signal(signal.SIGTERM)
    output = finish(proc, 30)
    return proc.returncode, output


@pytest.fixture
def server_binary() -> str:
    binary = find_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(INSTALL_HINT, pytrace=False)
        pytest.skip(INSTALL_HINT)
    return binary


@pytest.mark.parametrize("log_level", [None, "ERROR"])
def test_credentials_livekit_rejects_are_one_error_line_and_exit_1(
    livekit_server: LiveKitServer, tmp_path: Path, log_level: str | None
):
    """The real server answers the worker's registration with 401: one error naming the cause, no retries
    for two minutes, exit 1 (so Fly restarts it, and a deploy with a bad secret shows the error). With
    LOG_LEVEL=ERROR too, where the framework's retry warnings (what the worker learns the 401 from) are not
    printed."""
    proc = start_unregistered_worker(
        tmp_path,
        LIVEKIT_URL=livekit_server.url,
        LIVEKIT_API_KEY="devkey",
        LIVEKIT_API_SECRET=WRONG_SECRET,
        HEALTH_PORT=str(free_port()),
        PROMETHEUS_PORT=str(free_port()),
        environment={**PROVIDER_KEYS, **({"LOG_LEVEL": log_level} if log_level else {})},
    )
    output = finish(proc, 60)
    assert proc.returncode == 1, output[-4000:]
    errors = [line for line in json_lines(output) if line["level"] in {"ERROR", "CRITICAL"}]
    assert len(errors) == 1, errors
    assert "rejected" in errors[0]["message"] and "401" in errors[0]["message"], errors[0]
    assert errors[0].get("status") == 401
    assert "LIVEKIT_API_SECRET" in errors[0]["message"]  # what to check
    assert WRONG_SECRET not in output and "secret-value" not in output
    if log_level == "ERROR":
        assert {line["level"] for line in json_lines(output)} == {"ERROR"}, output[-4000:]


async def test_health_is_unhealthy_while_livekit_is_unreachable_and_stopping_still_exits_0(tmp_path: Path):
    """Nothing listens at LIVEKIT_URL: once the grace period is over, health answers 503 while the framework
    keeps retrying (the worker serves `/worker` and metrics all the same); SIGTERM then is a normal stop."""
    port = free_port()
    proc = start_unregistered_worker(
        tmp_path,
        HEALTH_PORT=str(port),
        PROMETHEUS_PORT=str(free_port()),
        HEALTH_GRACE_S="0",
        environment=PROVIDER_KEYS,
    )
    try:
        body = await health_answers(port, 503)
        assert "not registered" in body
        status, worker = health(port, "/worker")
        assert status == 200 and json.loads(worker)["agent_name"] == "interpreter"
    finally:
        code, output = stop(proc)
    assert code == 0, output[-4000:]


def test_a_worker_that_gives_up_reaching_livekit_exits_1(tmp_path: Path):
    """After the framework's retries (CONNECT_RETRIES, 16 by default: about 2 minutes) the worker exits 1,
    not 0: Fly's restart policy, and any supervisor, sees a failure."""
    proc = start_unregistered_worker(
        tmp_path,
        HEALTH_PORT=str(free_port()),
        PROMETHEUS_PORT=str(free_port()),
        CONNECT_RETRIES="1",
        environment=PROVIDER_KEYS,
    )
    output = finish(proc, 60)
    assert proc.returncode == 1, output[-4000:]
    errors = [line for line in json_lines(output) if line["level"] in {"ERROR", "CRITICAL"}]
    # CONNECT_RETRIES=1: the first attempt and one retry
    assert any("could not connect to LiveKit after 2 attempts" in line["message"] for line in errors), errors


async def test_health_follows_the_registration_with_a_real_livekit_server(server_binary: str, tmp_path: Path):
    """Healthy once registered; unhealthy as soon as the server goes away (the worker keeps retrying), with
    no new grace period."""
    server = LiveKitServer(server_binary, tmp_path / "livekit-server.log")
    server.start()
    worker = WorkerProcess(server, PROVIDER_KEYS, tmp_path / "worker", HEALTH_GRACE_S="60")
    try:
        await worker.start()
        port = worker.env["HEALTH_PORT"]
        assert health(port) == (200, "OK")
        server.stop()
        body = await health_answers(port, 503)
        assert "not registered" in body, worker.tail()
    finally:
        server.stop()
        await worker.aclose()
    # the worker runs in Python's development mode: its health server, too, is closed on the way out
    assert "ResourceWarning" not in worker.output(), worker.tail()


def handshake_refused(status: int) -> aiohttp.WSServerHandshakeError:
    """What aiohttp raises when LiveKit answers the worker's websocket handshake with `status`."""
    url = URL("ws://127.0.0.1:7880/agent")
    info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)
    return aiohttp.WSServerHandshakeError(info, (), status=status, message="Invalid response status")


def test_health_before_during_and_after_registration():
    now = [0.0]
    registration = Registration(grace_s=20, clock=lambda: now[0])
    assert registration.health()[0] == 200  # starting
    registration.connection_failed(ConnectionRefusedError())
    assert registration.health()[0] == 200 and not registration.failed  # still within the grace period
    now[0] = 20.0
    assert registration.health() == (503, "not registered with LiveKit (1 connection attempts failed)")
    registration.registered_now("AW_1", object())
    assert registration.health() == (200, "OK")
    now[0] = 1.0  # a lost connection is unhealthy at once, whatever the grace period
    registration.connection_failed(aiohttp.ClientConnectionError())
    assert registration.health()[0] == 503 and not registration.failed
    registration.registered_now("AW_1", object())
    registration.draining = True  # SIGTERM: registered still, but taking no new rooms
    assert registration.health() == (503, "draining: taking no new rooms") and not registration.failed


def test_credentials_refused_once_call_back_once_and_fail():
    registration = Registration(grace_s=60)
    refused: list[int] = []
    registration.on_rejected(refused.append)
    registration.connection_failed(handshake_refused(502))  # a proxy's error: LiveKit did not refuse
    assert refused == [] and registration.health()[0] == 200
    registration.connection_failed(handshake_refused(401))
    registration.connection_failed(handshake_refused(401))
    assert refused == [401] and registration.failed
    assert registration.health() == (503, "LiveKit rejected the worker's credentials (HTTP 401)")


def test_a_worker_that_cannot_start_exits_1(tmp_path: Path):
    """Its health port taken (another worker on the machine, say): the worker cannot run, and says so with
    its exit code, not only in its log."""
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        proc = start_unregistered_worker(
            tmp_path,
            HEALTH_PORT=str(taken.getsockname()[1]),
            PROMETHEUS_PORT=str(free_port()),
            environment=PROVIDER_KEYS,
        )
        output = finish(proc, 60)
    assert proc.returncode == 1, output[-4000:]
    assert "cannot listen on HEALTH_PORT" in output and "worker failed" not in output
