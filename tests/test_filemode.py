"""`python -m agent interpret` end to end, as a user runs it, against the fake providers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import wave
from pathlib import Path

import numpy as np

from agent.filemode import read_wav
from tests.conftest import DIALOGUE, ONE_SENTENCE, Fakes

ROOT = Path(__file__).parent.parent


async def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "interpret",
        *args,
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def onsets(samples: np.ndarray, rate: int, *, window_s: float = 0.01) -> list[float]:
    """Start times (s) of each run of sound after at least 0.3 s of silence."""
    n = int(rate * window_s)
    loud = [np.abs(samples[i : i + n].astype(np.int32)).max() > 1000 for i in range(0, len(samples) - n, n)]
    starts, quiet = [], 1e9
    for k, is_loud in enumerate(loud):
        if is_loud and quiet * window_s >= 0.3:
            starts.append(k * window_s)
        quiet = 0 if is_loud else quiet + 1
    return starts


async def test_interpret_writes_an_aligned_interpretation(dialogue_fakes: Fakes, tmp_path: Path):
    out, captions = tmp_path / "out.wav", tmp_path / "captions.json"
    args = [str(DIALOGUE.wav), "--source", "en", "--target", "es", "--out", str(out)]
    code, stdout, stderr = await run_cli(
        [*args, "--with-original", "--captions", str(captions), "--json"], dialogue_fakes.env(), tmp_path
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["utterances"] == 3 and result["spoken"] == 3 and result["failed"] == 0
    assert result["latency_ms"]["end_to_end"]["count"] == 3
    for stage in ("p50", "p90", "p95", "p99"):
        assert result["latency_ms"]["end_to_end"][stage] > 0

    with wave.open(str(out)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 24000
        frames = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
    interpretation, original = frames[:, 0], frames[:, 1]
    assert len(frames) / 24000 >= read_wav(DIALOGUE.wav).duration

    # each translation starts after its sentence ends in the input, and soon after
    starts = onsets(interpretation, 24000)
    assert len(starts) == 3, starts
    for start, speech_end in zip(starts, DIALOGUE.speech_ends, strict=True):
        assert speech_end < start < speech_end + 2.0, (starts, DIALOGUE.speech_ends)
    # the original is on channel 2, on the same timeline: the first word starts at 0.5 s
    assert abs(onsets(original, 24000)[0] - 0.5) < 0.03

    written = json.loads(captions.read_text())
    assert [c["text"] for c in written if c["final"] and not c["translated"]] == DIALOGUE.transcripts
    translated = [c["text"] for c in written if c["final"] and c["translated"]]
    assert translated == list(DIALOGUE.translations.values())


async def test_interpret_names_every_missing_key(tmp_path: Path):
    code, _, stderr = await run_cli([str(DIALOGUE.wav), "--out", str(tmp_path / "o.wav")], {}, tmp_path)
    assert code == 2
    for name in ("DEEPGRAM_API_KEY", "CEREBRAS_API_KEY", "GROQ_API_KEY", "CARTESIA_API_KEY"):
        assert name in stderr
    assert "LIVEKIT" not in stderr


async def test_interpret_runs_whatever_the_workers_prometheus_dir_says(
    one_sentence_fakes: Fakes, tmp_path: Path
):
    """The worker's PROMETHEUS_MULTIPROC_DIR exported (a folder that does not exist here): the file mode
    serves no metrics, runs anyway, and leaves no metric files behind in a folder a worker may share."""
    missing = tmp_path / "no" / "such" / "folder"
    out = tmp_path / "out.wav"
    env = one_sentence_fakes.env(PROMETHEUS_MULTIPROC_DIR=str(missing))
    code, _, stderr = await run_cli([str(ONE_SENTENCE.wav), "--out", str(out), "--json"], env, tmp_path)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert out.exists() and not missing.exists()


async def test_interpret_with_both_llms_refusing_ends_with_its_input_non_zero(
    dialogue_fakes: Fakes, tmp_path: Path
):
    for fake in (dialogue_fakes.cerebras, dialogue_fakes.groq):
        fake.api_key = "a-key-other-than-ours"  # both keys revoked: 401
    args = [str(DIALOGUE.wav), "--source", "en", "--target", "es", "--out", str(tmp_path / "o.wav")]
    start = asyncio.get_running_loop().time()
    code, stdout, stderr = await run_cli([*args, "--json"], dialogue_fakes.env(), tmp_path)
    elapsed = asyncio.get_running_loop().time() - start

    assert code == 1, stderr
    result = json.loads(stdout)
    assert result["utterances"] == 3 and result["spoken"] == 0 and result["failed"] == 3
    # retried as an outage, the run would never end; refused, it ends soon after its input does
    assert elapsed < read_wav(DIALOGUE.wav).duration + 5, elapsed
    refused = [line for line in stderr.splitlines() if "agent.translate" in line]
    assert (
        refused
        == [
            "ERROR agent.translate: the LLM refused the request (cerebras 401, groq 401): "
            "this utterance is not translated"
        ]
        * 3
    ), stderr
    for fake in (dialogue_fakes.cerebras, dialogue_fakes.groq):
        assert {r.status for r in fake.requests} == {401}
