"""Log hygiene: no participant identity in the logs (a pseudonym instead), and LOG_LEVEL obeyed everywhere."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from livekit.agents.cli.log import JsonFormatter

from agent.telemetry.logs import AGENT_LOGGERS, PseudonymizeIdentities, pseudonym
from tests.conftest import ONE_SENTENCE, Fakes
from tests.livekit_server import free_port
from tests.loopback import eventually
from tests.room_worker import start_unregistered_worker
from tests.test_filemode import run_cli
from tests.test_room import RoomHarness, harness  # noqa: F401  (the fake room harness fixture)

ROOT = Path(__file__).parent.parent
IDENTITY = "mallory.example"  # what must never be logged


def test_a_pseudonym_is_8_hex_digits_stable_in_a_process_and_salted_per_process():
    assert re.fullmatch(r"[0-9a-f]{8}", pseudonym(IDENTITY))
    assert pseudonym(IDENTITY) == pseudonym(IDENTITY) != pseudonym("alice")
    script = f"from agent.telemetry.logs import pseudonym; print(pseudonym({IDENTITY!r}))"
    other_process = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{8}", other_process) and other_process != pseudonym(IDENTITY)


def test_the_filter_hides_identities_in_speaker_participant_and_utterance_id_fields():
    def filtered(**extra: object) -> logging.LogRecord:
        record = logging.makeLogRecord({"msg": "m", **extra})
        assert PseudonymizeIdentities().filter(record)
        return record

    p = pseudonym(IDENTITY)
    record = filtered(speaker=IDENTITY, participant=IDENTITY, utterance_id=f"{IDENTITY}-3")
    fields = vars(record)
    assert (fields["speaker"], fields["participant"], fields["utterance_id"]) == (p, p, f"{p}-3")
    assert vars(filtered(utterance_id=f"{IDENTITY}.2-0"))["utterance_id"] == f"{p}.2-0"  # a restarted stream
    # a record handled twice (a job process's, again in the worker) is not hashed twice
    assert PseudonymizeIdentities().filter(record) and fields["speaker"] == p
    # the page's client address (a refused token request) is personal data too
    assert vars(filtered(client="203.0.113.9"))["client"] == pseudonym("203.0.113.9")


def test_every_agent_logger_hides_identities_once_an_entry_point_is_imported():
    in_source = set()
    for path in (ROOT / "agent").rglob("*.py"):
        in_source |= set(re.findall(r'getLogger\("(agent\.[a-z_]+)"\)', path.read_text()))
    assert in_source == set(AGENT_LOGGERS)
    for entry in ("agent.run.worker", "agent.run.filemode", "agent.room.session"):
        script = (
            f"import logging, {entry}\n"
            "from agent.telemetry.logs import AGENT_LOGGERS, PseudonymizeIdentities\n"
            "for name in AGENT_LOGGERS:\n"
            "    filters = logging.getLogger(name).filters\n"
            "    assert any(isinstance(f, PseudonymizeIdentities) for f in filters), name\n"
        )
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, (entry, done.stderr)


async def test_no_identity_in_any_log_record_of_a_room(
    harness: RoomHarness,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
):
    """A speaker with an unsupported language (logged with the participant) whose translation cannot be
    spoken (logged with the utterance id), who then leaves (logged with the speaker)."""
    caplog.set_level(logging.DEBUG)
    room, session = harness.room, harness.session
    harness.fakes.cartesia.error_next(3)
    # (the room default is auto: the speaker is heard with language=multi, the detection logged too)
    harness.fakes.deepgram.scripts["multi"] = list(ONE_SENTENCE.transcripts)
    await session.start()
    speaker = room.join(IDENTITY, attributes={"language": "xx-unsupported"})
    harness.speak(speaker, ONE_SENTENCE.wav)
    await eventually(lambda: len(harness.captions(translated=True)) == 1, what="the translated caption")
    await session.aclose()

    agent_records = [r for r in caplog.records if r.name.startswith("agent.")]
    logged = {
        name for r in agent_records for name in ("speaker", "participant", "utterance_id") if hasattr(r, name)
    }
    assert logged == {"speaker", "participant", "utterance_id"}  # the test sees every kind of field
    for record in caplog.records:
        assert IDENTITY not in record.getMessage(), record.getMessage()
        for name, value in vars(record).items():
            assert IDENTITY not in str(value), (record.name, record.getMessage(), name, value)
    assert any(getattr(r, "speaker", None) == pseudonym(IDENTITY) for r in agent_records)
    # and as production writes them: one JSON line per record, `extra` fields and tracebacks included
    lines = production_lines(caplog.records)
    assert leaking(lines, IDENTITY) == []
    assert any(json.loads(line).get("speaker") == pseudonym(IDENTITY) for line in lines)


def production_lines(records: list[logging.LogRecord]) -> list[str]:
    """The records as `python -m agent start` writes them: the framework's JSON formatter (livekit-agents'
    production log set-up), one line each, with every `extra` field, the traceback and the job's fields."""
    formatter = JsonFormatter()
    return [formatter.format(record) for record in records]


def leaking(lines: list[str], text: str) -> list[str]:
    """The lines that carry `text` anywhere (the formatter writes non-ASCII as is: no escape hides it)."""
    return [line for line in lines if text in line]


def test_the_leak_check_reads_extra_fields_and_tracebacks_of_the_json_line():
    """The check above can fail: an identity in an `extra` field, or in an exception's message in the
    traceback, is in the formatted line although the message is clean."""
    in_extra = logging.makeLogRecord({"msg": "speaker left", "name": "agent.x", "who": IDENTITY})
    try:
        raise ValueError(f"no track for {IDENTITY}")
    except ValueError:
        in_traceback = logging.makeLogRecord({"msg": "failed", "name": "agent.x", "exc_info": sys.exc_info()})
    clean = logging.makeLogRecord({"msg": "speaker left", "name": "agent.x", "speaker": pseudonym(IDENTITY)})
    for record in (in_extra, in_traceback, clean):
        assert IDENTITY not in record.getMessage()
    assert leaking(production_lines([in_extra, in_traceback, clean]), IDENTITY) == production_lines(
        [in_extra, in_traceback]
    )


# -- LOG_LEVEL: the level of every `agent.*` logger, in the worker, its job processes and the file mode -----

PROBE = ROOT / "tests" / "log_probe"  # logs "log probe: info/warning from pid N" in every process


def run_worker_until_probed(tmp_path: Path, log_level: str | None) -> list[str]:
    """`python -m agent start` (against an unreachable LiveKit) until the main process and a job process
    have logged their probe warnings; its output lines."""
    proc = start_unregistered_worker(
        tmp_path,
        pythonpath=(PROBE,),
        DEEPGRAM_API_KEY="dg",
        CEREBRAS_API_KEY="cb",
        CARTESIA_API_KEY="ct",
        HEALTH_PORT=str(free_port()),
        PROMETHEUS_PORT=str(free_port()),
        DRAIN_TIMEOUT_S="1",
        environment={"LOG_LEVEL": log_level} if log_level else None,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out: list[str] = []
    probed: set[str] = set()  # pids that logged the probe warning
    deadline = time.monotonic() + 40
    try:
        while len(probed) < 2 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                line = lines.get(timeout=0.5)
                out.append(line)
                if found := re.search(r"log probe: warning from pid (\d+)", line):
                    probed.add(found[1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session: it and its job processes
            proc.wait()
        reader.join(5)
    while not lines.empty():
        out.append(lines.get())
    assert len(probed) == 2, "".join(out)  # the worker and a job process logged
    return out


def test_log_level_warning_silences_info_in_the_worker_and_its_job_processes(tmp_path: Path):
    quiet = run_worker_until_probed(tmp_path, "WARNING")
    assert not [line for line in quiet if '"level": "INFO"' in line or "log probe: info" in line]
    assert any('"level": "WARNING"' in line and "failed to connect" in line for line in quiet)


def test_without_log_level_the_worker_logs_info(tmp_path: Path):
    default = run_worker_until_probed(tmp_path, None)
    pids = {m[1] for line in default if (m := re.search(r"log probe: info from pid (\d+)", line))}
    # INFO, in the worker and in its job processes (the framework may have started a second one by then)
    assert len(pids) >= 2, "".join(default)


@pytest.mark.parametrize(("log_level", "info_shown"), [("INFO", True), ("WARNING", False), (None, False)])
async def test_log_level_sets_the_file_modes_level(
    one_sentence_fakes: Fakes, tmp_path: Path, log_level: str | None, info_shown: bool
):
    env = one_sentence_fakes.env(**({"LOG_LEVEL": log_level} if log_level else {}))
    env["PYTHONPATH"] = os.pathsep.join([str(PROBE), str(ROOT)])
    code, _, stderr = await run_cli([str(ONE_SENTENCE.wav), "--out", str(tmp_path / "o.wav")], env, tmp_path)
    assert code == 0, stderr
    assert "WARNING agent.session: log probe: warning" in stderr  # the probe ran
    assert ("INFO agent.session: log probe: info" in stderr) == info_shown, stderr
