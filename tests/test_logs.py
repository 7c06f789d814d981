"""Log hygiene: no participant identity in the logs (a pseudonym instead)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.logs import AGENT_LOGGERS, PseudonymizeIdentities, pseudonym
from tests.conftest import ONE_SENTENCE
from tests.loopback import eventually
from tests.test_room import RoomHarness, harness  # noqa: F401  (the fake room harness fixture)

ROOT = Path(__file__).parent.parent
IDENTITY = "mallory.example"  # what must never be logged


def test_a_pseudonym_is_8_hex_digits_stable_in_a_process_and_salted_per_process():
    assert re.fullmatch(r"[0-9a-f]{8}", pseudonym(IDENTITY))
    assert pseudonym(IDENTITY) == pseudonym(IDENTITY) != pseudonym("alice")
    script = f"from agent.logs import pseudonym; print(pseudonym({IDENTITY!r}))"
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
    assert (record.speaker, record.participant, record.utterance_id) == (p, p, f"{p}-3")
    assert filtered(utterance_id=f"{IDENTITY}.2-0").utterance_id == f"{p}.2-0"  # a restarted stream
    # a record handled twice (a job process's, again in the worker) is not hashed twice
    assert PseudonymizeIdentities().filter(record) and record.speaker == p


def test_every_agent_logger_hides_identities_once_an_entry_point_is_imported():
    in_source = set()
    for path in (ROOT / "agent").glob("*.py"):
        in_source |= set(re.findall(r'getLogger\("(agent\.[a-z_]+)"\)', path.read_text()))
    assert in_source == set(AGENT_LOGGERS)
    for entry in ("agent.worker", "agent.filemode", "agent.session"):
        script = (
            f"import logging, {entry}\n"
            "from agent.logs import AGENT_LOGGERS, PseudonymizeIdentities\n"
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
    harness.fakes.deepgram.scripts["en"] = list(ONE_SENTENCE.transcripts)
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
