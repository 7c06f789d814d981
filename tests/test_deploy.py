"""Deployment checked here, without a Docker engine or a LiveKit server: fly.toml and the Dockerfile
against the code, the image's environment built the way the Dockerfile builds it, and a started
worker's health and metrics endpoints read over HTTP."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from agent.run.capacity import CpuSampler
from agent.settings.config import ConfigError, load_server_settings
from agent.settings.web import load_web_settings
from tests.livekit_server import free_port
from tests.room_worker import start_unregistered_worker

ROOT = Path(__file__).parent.parent
FLY = tomllib.loads((ROOT / "fly.toml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
START = "python -m agent start"
WEB = "python -m agent web"


def test_fly_toml_matches_the_code():
    server = load_server_settings({})
    # a deploy or scale-down lets running interpretations drain: Fly waits longer than the worker drains
    assert server.drain_timeout_s < FLY["kill_timeout"] <= 300  # 300 s is Fly's maximum
    assert FLY["kill_signal"] in {"SIGTERM", "SIGINT"}  # both make the worker drain
    checks = list(FLY["checks"].values())
    assert checks and all(c["port"] == server.health_port == 8081 for c in checks)
    assert FLY["processes"] == {"worker": START, "web": WEB}
    assert all(c["processes"] == ["worker"] for c in checks)  # the page has its own check
    # nothing would ever start a stopped worker again (no service for Fly's proxy to wake it)
    assert [(r["policy"], r["processes"]) for r in FLY["restart"]] == [("always", ["worker"])]
    # Fly scrapes the worker's metrics (the page serves none)
    assert FLY["metrics"] == [{"port": server.prometheus_port, "path": "/metrics", "processes": ["worker"]}]
    assert sorted(p for vm in FLY["vm"] for p in vm["processes"]) == ["web", "worker"]
    assert "services" not in FLY  # the worker dials out; the page is the one public service


def test_the_page_is_the_apps_public_https_service_with_its_own_health_check():
    secrets = {"LIVEKIT_URL": "wss://x", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"}
    with pytest.raises(ConfigError):  # public on Fly: the page does not start open by accident
        load_web_settings(secrets)
    web = load_web_settings({**secrets, **FLY["env"], "WEB_ACCESS_CODE": "c"})  # as docs/deploying.md sets it
    assert web.client_ip_header == "Fly-Client-IP"  # the token limits count per client, not per Fly proxy
    service = FLY["http_service"]
    assert service["processes"] == ["web"]  # never the worker
    assert service["internal_port"] == web.port == 8080 and web.host == "0.0.0.0"  # Fly's proxy reaches it
    assert service["force_https"] is True  # a browser gives the microphone to secure pages only
    assert [(c["method"], c["path"]) for c in service["checks"]] == [("GET", "/healthz")]
    exposed = next(line for line in DOCKERFILE.splitlines() if line.startswith("EXPOSE ")).split()[1:]
    assert {"8080", "8081"} <= set(exposed)
    text = (ROOT / "fly.toml").read_text()
    assert "API_KEY" not in text and "SECRET" not in text  # secrets go in with `fly secrets set`


def test_dockerfile_builds_the_locked_environment_as_a_non_root_user():
    assert "uv sync --locked --no-dev" in DOCKERFILE
    assert "UV_COMPILE_BYTECODE=1" in DOCKERFILE
    assert "RUN python -m livekit.agents download-files" in DOCKERFILE  # the framework's own, not deprecated
    users = [line.split()[1] for line in DOCKERFILE.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    cmd = json.loads(next(line for line in DOCKERFILE.splitlines() if line.startswith("CMD "))[4:])
    assert " ".join(cmd) == START
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "tests", ".venv"} <= set(ignored)


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_the_image_environment_builds_from_the_lock_and_runs_the_entry_point(tmp_path: Path):
    # the same steps as the Dockerfile's build stage, in a clean directory
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / ".venv"), "UV_COMPILE_BYTECODE": "1"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        ["uv", "sync", "--locked", "--no-dev", "--no-install-project", "--quiet"],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=300,
    )
    shutil.copytree(ROOT / "agent", tmp_path / "agent")
    python = tmp_path / ".venv" / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "agent", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "start" in result.stdout and "download-files" in result.stdout
    has_pytest = subprocess.run([str(python), "-c", "import pytest"], capture_output=True)
    assert has_pytest.returncode != 0  # only what the worker needs

    # the page's process, from the same copy: it serves the committed bundle (agent/run/web_static/)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LIVEKIT_URL": "wss://example.livekit.cloud",
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": "secret",
        "WEB_PORT": str(port),
        "WEB_HOST": "127.0.0.1",
    }
    web = subprocess.Popen(
        [str(python), "-m", "agent", "web"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert web.stdout is not None and web.stdout.readline().startswith("the page: ")
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, "OK")
        built = (ROOT / "agent" / "run" / "web_static" / "index.html").exists()
        assert get(f"http://127.0.0.1:{port}/")[0] == (200 if built else 503)
    finally:
        web.terminate()
        assert web.wait(30) == 0


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_worker_against_an_unreachable_livekit_serves_health_and_metrics(tmp_path: Path):
    health, prom = free_port(), free_port()
    proc = start_unregistered_worker(
        tmp_path,
        LIVEKIT_API_SECRET="secret-value-not-to-be-logged",
        DEEPGRAM_API_KEY="dg-secret-value",
        CEREBRAS_API_KEY="cb-secret-value",
        GROQ_API_KEY="gq-secret-value",
        CARTESIA_API_KEY="ct-secret-value",
        HEALTH_PORT=str(health),
        PROMETHEUS_PORT=str(prom),
    )
    try:
        deadline = time.monotonic() + 45
        status = body = None
        while time.monotonic() < deadline:
            try:
                status, body = get(f"http://127.0.0.1:{health}/")
                metrics_status, metrics = get(f"http://127.0.0.1:{prom}/metrics")
                if "interpreter_active_sessions" in metrics:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        assert status in {200, 503}, (status, body)  # up; 503 once it gives up on LiveKit
        assert metrics_status == 200
        for name in (
            "interpreter_active_sessions",
            "interpreter_active_speakers",
            "interpreter_queued_utterances",
        ):
            assert name in metrics, name
        worker_status, worker = get(f"http://127.0.0.1:{health}/worker")
        assert worker_status == 200 and json.loads(worker)["agent_name"] == "interpreter"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    # production logs are JSON lines, and no secret reaches them
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)
    assert "secret-value" not in output


def test_the_worker_scoped_cpu_counts_the_workers_own_processes_only() -> None:
    """LOAD_CPU=worker: a busy child of this process counts, a busy process elsewhere does not."""
    spin = [sys.executable, "-c", "while True: pass"]
    # a neighbour on the machine: started through a shell that exits at once, so it is not our child
    started = subprocess.run(
        ["sh", "-c", f"{shlex.join(spin)} >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    outsider = int(started.stdout)
    try:
        sampler = CpuSampler("worker")
        sampler()
        time.sleep(2.5)
        alone = sampler.value
        child = subprocess.Popen(spin)
        try:
            time.sleep(2.5)
            with_child = sampler.value
        finally:
            child.kill()
            child.wait()
    finally:
        os.kill(outsider, signal.SIGKILL)
    cores = psutil.cpu_count() or 1
    assert alone < 0.5 / cores, alone  # the neighbour's full core is not ours
    assert with_child > 0.2 / cores, with_child  # our child's is (a shared machine may give it less than all)
