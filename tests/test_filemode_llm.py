"""`python -m agent interpret` when neither LLM can translate: it ends with its input, non-zero, and says
why in one line per utterance, without the framework's per-attempt warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import DIALOGUE, Fakes
from tests.test_filemode import run_cli


def _refuse(fakes: Fakes) -> None:
    for fake in (fakes.cerebras, fakes.groq):
        fake.api_key = "a-key-other-than-ours"  # both keys revoked: 401


def _down(fakes: Fakes) -> None:
    for fake in (fakes.cerebras, fakes.groq):
        fake.outage_status = 503  # both down for the whole run: worth retrying, but never back


CASES = {
    "refused": (
        _refuse,
        "ERROR agent.translate: the LLM refused the request (cerebras 401, groq 401): "
        "this utterance is not translated",
    ),
    "down": (
        _down,
        "ERROR agent.translate: no LLM answered in time (cerebras 503, groq 503): "
        "this utterance is not translated",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_interpret_with_no_llm_translating_ends_non_zero_one_line_per_utterance(
    dialogue_fakes: Fakes, tmp_path: Path, case: str
):
    fault, line = CASES[case]
    fault(dialogue_fakes)
    args = [str(DIALOGUE.wav), "--source", "en", "--target", "es", "--out", str(tmp_path / "o.wav"), "--json"]
    # retried without a bound, the run would never end: run_cli's 60 s limit would fail this test
    code, stdout, stderr = await run_cli(args, dialogue_fakes.env(STALE_AFTER_S="2"), tmp_path)

    assert code == 1, stderr
    result = json.loads(stdout)
    assert result["utterances"] == 3 and result["spoken"] == 0 and result["failed"] == 3
    lines = stderr.splitlines()
    assert [x for x in lines if x.startswith("ERROR agent.") and "every LLM is failing" not in x] == [
        line
    ] * 3
    # the framework's fallback adapter logs each failed attempt and probe: not a user's concern here
    assert not [x for x in lines if "livekit.agents" in x], stderr
