"""The worker's entry point as an operator meets it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
