"""SIGTERM drains the worker: what was already heard is still interpreted (and heard in the room), then
everything closes, with nothing left pending or unclosed.

One worker process is run through a SIGTERM (module fixture, ~20 s); the tests read what happened.

What is real and what is simulated (details in tests/shutdown_worker.py):
- real: a separate worker process started the way production starts it (`python -m agent start`'s
  code path: our `build_server` and the framework's CLI, its SIGTERM handler, `drain()` bounded by
  DRAIN_TIMEOUT_S, `aclose()`), a forkserver job process with our real `prewarm` and `entrypoint`, the
  framework's job shutdown sequence (ShutdownRequest → `on_session_end` → room disconnect → shutdown
  callbacks → process exit, killed past `shutdown_process_timeout`), the provider plugins talking over
  HTTP/websockets to the fake Deepgram, Cerebras/Groq and Cartesia servers run by this test, real
  signals, and real interpreter warnings (the worker runs in Python's development mode);
- simulated: the LiveKit server (the worker cannot register; the job comes from the framework's own
  `simulate_job`, as in console mode) and the room (a fake in which the framework's connect/disconnect
  calls land; a speaker says a WAV through a local loopback track, a listener records the agent's
  track; audio that arrives after its track was unpublished, or after the disconnect, counts as unheard).

DRAIN_TIMEOUT_S is 1 s here (270 s in production), so the drain times out while the utterance is still
being interpreted and the job is told to shut down: the hardest case, where the job itself must finish
what was heard, within its bound, before it lets go of the room.

The SIGTERM goes to the worker process only, as Fly, Docker and Kubernetes send it. Sent to the whole
process group instead (systemd's default KillMode, `kill -- -PGID`), it kills the job processes at once:
in livekit-agents 1.8.9 on Linux they do not ignore SIGTERM (see the report's `signals`).

Two more checks: the last translation is heard to its end before its track goes (the 200 ms still queued
in the source play out), and the worst-case shutdown fits in Fly's kill_timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_server_settings
from agent.mouth import OUTPUT_QUEUE_MS
from agent.worker import JOB_CLOSE_TIMEOUT_S, SESSION_DRAIN_TIMEOUT_S, build_server
from tests.conftest import ONE_SENTENCE
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.loopback import eventually

ROOT = Path(__file__).parent.parent
TRANSLATION = ONE_SENTENCE.translations["camera"]
# what must never show in the worker's output: asyncio, aiohttp or interpreter complaints about a task or
# a connection left behind, the framework killing or giving up on a job's shutdown, or the agent trying
# to use the room after the framework disconnected it
FORBIDDEN = (
    "Task was destroyed but it is pending",
    "Unclosed client session",
    "Unclosed connector",
    "unclosed transport",
    "ResourceWarning",
    "was never awaited",
    "Traceback",
    "did not ack shutdown in time",
    "did not exit in time",
    "killing process",
    "on_session_end timed out",
    "error while",
    "did not drain in time",
    "could not publish to the room",
)


@dataclass
class Run:
    returncode: int
    sigterm_at: float  # time.monotonic(), the same clock in every process of this machine
    exit_s: float
    report: dict[str, Any]
    output: str  # the worker's stdout and stderr (the job process logs through the worker)
    sent_audio_s: float  # what the fake Cartesia synthesized
    stt_streams_closed: list[bool]

    def context(self) -> str:
        at = {
            k: round(v - self.sigterm_at, 3)
            for k, v in self.report.items()
            if k.endswith("_at") and isinstance(v, float) and v
        }
        tail = "\n".join(self.output.splitlines()[-40:])
        return f"seconds from SIGTERM: {at}\nreport: {json.dumps(self.report)[:4000]}\n{tail}"

    def heard_s(self, track: str) -> float:
        return float(sum(run["seconds"] for run in self.report["audio"].get(track, [])))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env(
    tmp: Path, deepgram: FakeDeepgram, llms: list[FakeLLM], cartesia: FakeCartesia
) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        # development mode (inherited by the forkserver and the job processes): ResourceWarnings shown,
        # asyncio debug mode (never-awaited coroutines reported with where they were made)
        "PYTHONDEVMODE": "1",
        "LIVEKIT_URL": "ws://127.0.0.1:9",  # nothing listens there: no LiveKit server can run here
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": "secret",
        "DEEPGRAM_API_KEY": "dg-test-key",
        "DEEPGRAM_BASE_URL": deepgram.base_url,
        "CEREBRAS_API_KEY": "cb-test-key",
        "CEREBRAS_BASE_URL": llms[0].base_url,
        "GROQ_API_KEY": "gq-test-key",
        "GROQ_BASE_URL": llms[1].openai_base_url,
        "CARTESIA_API_KEY": "ct-test-key",
        "CARTESIA_BASE_URL": cartesia.base_url,
        "STT_ENDPOINTING_MS": "300",
        "STT_MAX_SEGMENT_S": "0",
        "HEALTH_PORT": str(free_port()),
        "PROMETHEUS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
        "DRAIN_TIMEOUT_S": "1",
        "SHUTDOWN_TEST_REPORT": str(tmp / "report.json"),
        "SHUTDOWN_TEST_WAV": str(ONE_SENTENCE.wav),
    }


async def run_worker_through_sigterm(tmp: Path) -> Run:
    deepgram = FakeDeepgram(ONE_SENTENCE.transcripts)
    llms = [FakeLLM(translations=ONE_SENTENCE.translations) for _ in range(2)]
    # 0.12 s of audio per character: the translation takes 3.6 s to play, well past the drain timeout
    cartesia = FakeCartesia(freq_for=ONE_SENTENCE.freq_for, seconds_per_char=0.12)
    fakes = [deepgram, *llms, cartesia]
    for fake in fakes:
        await fake.start()
    out_path, err_path = tmp / "stdout.txt", tmp / "stderr.txt"
    try:
        with out_path.open("w") as out, err_path.open("w") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from tests.shutdown_worker import main; raise SystemExit(main())",
                cwd=tmp,  # no .env from the repository
                env=worker_env(tmp, deepgram, llms, cartesia),
                stdout=out,
                stderr=err,
            )
        try:
            # the utterance has been heard (its final transcript is out), not yet translated or played
            await eventually(lambda: bool(deepgram.finals), within_s=45, what="the final transcript")
            sigterm_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)  # to the worker process, as Fly, Docker and Kubernetes do
            returncode = await asyncio.wait_for(proc.wait(), 60)
            exit_s = time.monotonic() - sigterm_at
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        for fake in fakes:
            await fake.aclose()
    output = out_path.read_text() + err_path.read_text()
    report_path = tmp / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {"missing": True}
    return Run(
        returncode=returncode,
        sigterm_at=sigterm_at,
        exit_s=exit_s,
        report=report,
        output=output,
        sent_audio_s=sum(cartesia.audio_s.values()),
        stt_streams_closed=[c.closed for c in deepgram.connections],
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    yield asyncio.run(run_worker_through_sigterm(tmp_path_factory.mktemp("shutdown")))


def test_sigterm_finishes_what_was_heard_then_closes_cleanly(run: Run) -> None:
    report, context = run.report, run.context()
    assert "missing" not in report, f"the job wrote no report\n{context}"
    # the worker exited by itself, cleanly, within a generous bound (drain 1 s + the job's own bound)
    assert run.returncode == 0, context
    assert run.exit_s < 45, context
    assert report["watch_completed"] and report["errors"] == [], context

    captions = report["captions"]
    heard = [c["text"] for c in captions if c["final"] and not c["translated"]]
    assert heard == ONE_SENTENCE.transcripts, context
    translated = [c for c in captions if c["final"] and c["translated"]]
    assert [c["text"] for c in translated] == [TRANSLATION], context
    [caption] = translated
    # SIGTERM came before the translation was done, and the job's shutdown (not the drain) finished it,
    assert run.sigterm_at < report["aclose_started_at"] < caption["at"], context
    # while the room was still connected: the caption was sent and the audio was heard
    assert caption["at"] < report["disconnected_at"], context
    assert run.sent_audio_s > 3.0, context
    heard_s = run.heard_s("interpretation-es")
    # (all but the last OUTPUT_QUEUE_MS: see test_the_whole_translation_is_heard_before_the_track_goes)
    assert heard_s >= run.sent_audio_s - OUTPUT_QUEUE_MS / 1000 - 0.1, f"heard {heard_s:.2f} s\n{context}"
    assert report["audio"]["interpretation-en"] == [], context  # English is not interpreted into English

    # then the streams closed: both tracks unpublished before the disconnect, the STT stream closed
    assert sorted(report["unpublished_at"]) == ["interpretation-en", "interpretation-es"], context
    assert max(report["unpublished_at"].values()) < report["disconnected_at"], context
    assert run.stt_streams_closed and all(run.stt_streams_closed), context
    # and nothing the job started is still running once its shutdown callbacks are done
    assert report["pending_tasks"] == [], context
    for complaint in FORBIDDEN:
        assert complaint not in run.output, f"{complaint!r} in the worker's output\n{context}"


def test_the_whole_translation_is_heard_before_the_track_goes(run: Run) -> None:
    heard_s = run.heard_s("interpretation-es")
    assert heard_s >= run.sent_audio_s - 0.05, f"heard {heard_s:.2f} s of {run.sent_audio_s:.2f} s"


def test_the_worst_case_shutdown_fits_in_flys_kill_timeout() -> None:
    settings = load_server_settings({})
    server = build_server(settings)
    # what the framework is told (livekit-agents 1.8.9 keeps them private)
    assert server._drain_timeout == settings.drain_timeout_s
    assert server._session_end_timeout == SESSION_DRAIN_TIMEOUT_S
    assert server._shutdown_process_timeout == JOB_CLOSE_TIMEOUT_S
    # SIGTERM → the drain (jobs go on as usual) → each job: `on_session_end` (our drain), then the
    # disconnect, the shutdown callbacks and the exit, killed (SIGUSR1, 0.5 s, SIGKILL) past its timeout
    worst_s = settings.drain_timeout_s + SESSION_DRAIN_TIMEOUT_S + JOB_CLOSE_TIMEOUT_S + 0.5
    kill_timeout = tomllib.loads((ROOT / "fly.toml").read_text())["kill_timeout"]
    assert worst_s < kill_timeout
