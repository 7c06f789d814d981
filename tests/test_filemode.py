"""`python -m agent interpret` end to end, as a user runs it, against the fake providers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.run.filemode import STT_GIVE_UP_S, read_wav
from agent.settings.prices import load_prices
from tests.conftest import DIALOGUE, ONE_SENTENCE, Fakes
from tests.fakes import Delay, FluxTiming
from tests.harness import spoken_text
from tests.livekit_server import free_port

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

    # what it cost: each provider's usage as the fakes took and reported it, priced by the bundled table
    usage = {(line["provider"], line["item"]): line for line in result["usage"]["lines"]}
    sent = sum(c.audio_s for c in dialogue_fakes.deepgram.connections)
    assert usage[("deepgram", "audio_seconds")]["amount"] == pytest.approx(sent, abs=0.01)
    reported = dialogue_fakes.cerebras.usage_sent
    assert len(reported) == 3
    assert usage[("cerebras", "input_tokens")]["amount"] == sum(u["prompt_tokens"] for u in reported)
    assert usage[("cerebras", "output_tokens")]["amount"] == sum(u["completion_tokens"] for u in reported)
    assert usage[("cerebras", "input_tokens")]["language"] == "es"
    # (the text of each clause; the plugin adds a space after it, and a space to end the context)
    sent_text = [text.strip() for texts in dialogue_fakes.cartesia.contexts.values() for text in texts]
    assert usage[("cartesia", "characters")]["amount"] == sum(map(len, sent_text)) > 0
    prices = load_prices()
    expected = sum(
        prices.cost(line["provider"], line["model"], line["item"], line["amount"]) for line in usage.values()
    )
    assert result["usage"]["cost_usd"] == pytest.approx(expected, rel=1e-3) and expected > 0
    assert result["usage"]["prices_date"] == prices.date


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
    code, stdout, stderr = await run_cli([*args, "--json"], dialogue_fakes.env(), tmp_path)

    assert code == 1, stderr
    result = json.loads(stdout)
    assert result["utterances"] == 3 and result["spoken"] == 0 and result["failed"] == 3
    # retried as an outage, the run would never end: run_cli's 60 s limit would fail this test
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


# -- speech recognition that never works ends the run, non-zero, saying why ------------------------------


def lines_naming(stderr: str, *words: str) -> list[str]:
    return [line for line in stderr.splitlines() if all(word in line for word in words)]


async def test_interpret_with_a_wrong_deepgram_key_gives_up_at_once_and_says_why(
    dialogue_fakes: Fakes, tmp_path: Path
):
    """Deepgram answers the handshake 401: not retried (once is enough), exit 1, one line naming it; no
    "0 utterances spoken, 0 failed" passed off as success, no "no speech found"."""
    dialogue_fakes.deepgram.api_key = "another-key"
    args = [str(DIALOGUE.wav), "--source", "en", "--target", "es", "--out", str(tmp_path / "o.wav")]
    code, stdout, stderr = await run_cli([*args, "--json"], dialogue_fakes.env(), tmp_path)

    assert code == 1, stderr
    assert dialogue_fakes.deepgram.refusals == [401]  # given up at once: no second attempt
    result = json.loads(stdout)
    assert result["stt_failure"] == {
        "provider": "deepgram", "status": 401, "error": "APIStatusError", "refused": True
    }  # fmt: skip
    assert result["utterances"] == 0
    assert lines_naming(stderr, "deepgram 401") == [
        "ERROR agent.ears: speech recognition refused (deepgram 401): not retried; "
        "no longer listening to this speaker"
    ], stderr
    assert "Traceback" not in stderr and "no speech found" not in stderr

    code, stdout, stderr = await run_cli(
        args, dialogue_fakes.env(), tmp_path
    )  # the plain summary says it too
    assert code == 1 and "speech recognition failed (deepgram 401)" in stdout, stdout


async def test_interpret_with_deepgram_unreachable_ends_non_zero_and_says_why(
    one_sentence_fakes: Fakes, tmp_path: Path
):
    """Nothing listening at the Deepgram URL (connection refused): the short input ends while the link is
    still down, so what was said cannot be heard: exit 1 and a line naming the provider and error."""
    env = one_sentence_fakes.env(DEEPGRAM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1/listen")
    args = [str(ONE_SENTENCE.wav), "--source", "en", "--target", "es", "--out", str(tmp_path / "o.wav")]
    code, stdout, stderr = await run_cli([*args, "--json"], env, tmp_path)

    assert code == 1, stderr
    result = json.loads(stdout)
    assert result["stt_failure"] == {
        "provider": "deepgram", "status": None, "error": "ClientConnectorError", "refused": False
    }  # fmt: skip
    [ended] = lines_naming(stderr, "unrecognized audio remains")
    assert ended.startswith("ERROR agent.ears:") and "(deepgram ClientConnectorError)" in ended, stderr
    assert "Traceback" not in stderr and "no speech found" not in stderr


async def test_interpret_gives_up_on_an_stt_unreachable_for_longer_than_its_bound(
    one_sentence_fakes: Fakes, tmp_path: Path
):
    """A long input with Deepgram unreachable: the run does not go on to the end of the input without
    speech recognition; it gives up once the link has been down for STT_GIVE_UP_S (30 s)."""
    assert STT_GIVE_UP_S == 30.0
    silence = write_pcm(tmp_path / "long.wav", np.zeros(16000 * 50, np.int16))  # 50 s: run_cli allows 60
    env = one_sentence_fakes.env(DEEPGRAM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1/listen")
    args = [str(silence), "--source", "en", "--target", "es", "--out", str(tmp_path / "o.wav"), "--json"]
    code, stdout, stderr = await run_cli(args, env, tmp_path)

    assert code == 1, stderr
    assert json.loads(stdout)["stt_failure"]["error"] == "ClientConnectorError"
    [gave_up] = lines_naming(stderr, "given up")
    assert gave_up.startswith("ERROR agent.ears: speech recognition given up: deepgram unreachable for 3"), (
        stderr
    )  # 30 s or a little more, never the whole input
    assert gave_up.endswith("(ClientConnectorError)")


# -- bad input is refused up front, one line each -------------------------------------------------------

# keys that would work, providers that are not there: every refusal below comes before any connection
NO_PROVIDERS = {
    name: value
    for key in ("DEEPGRAM", "CEREBRAS", "GROQ", "CARTESIA")
    for name, value in ((f"{key}_API_KEY", "test-key"), (f"{key}_BASE_URL", "http://127.0.0.1:9"))
}


def write_pcm(path: Path, samples: np.ndarray, rate: int = 16000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(samples.dtype.itemsize)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def write_float_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """WAVE_FORMAT_IEEE_FLOAT (3), which the stdlib `wave` module cannot write or read."""
    data = samples.astype("<f4").tobytes()
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little")
    fmt += (rate * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt
    body += b"data" + len(data).to_bytes(4, "little") + data
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    return path


def refused(code: int, stderr: str, *words: str) -> None:
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


async def test_interpret_refuses_what_is_not_a_wav_file(tmp_path: Path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    flac = tmp_path / "talk.flac"
    flac.write_bytes(b"fLaC\x00\x00\x00\x22" + bytes(64))
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    no_audio = write_pcm(tmp_path / "no_audio.wav", np.zeros(0, np.int16))
    cases = [
        (text, "not a WAV file"),
        (empty, "empty"),
        (flac, "FLAC"),
        (folder, "directory"),
        (no_audio, "no audio"),
        (tmp_path / "missing.wav", "no such file"),
    ]
    for path, problem in cases:
        out = tmp_path / "out.wav"
        code, _, stderr = await run_cli(
            [str(path), "--source", "en", "--target", "es", "--out", str(out)], NO_PROVIDERS, tmp_path
        )
        refused(code, stderr, str(path), problem)
        assert not out.exists()


async def test_interpret_refuses_an_output_it_could_not_write_before_the_run(tmp_path: Path):
    for flag in ("--out", "--captions"):
        missing = tmp_path / "no" / "such" / "folder" / "x.out"
        args = [str(ONE_SENTENCE.wav), "--source", "en", "--target", "es", "--out", str(tmp_path / "o.wav")]
        code, _, stderr = await run_cli([*args, flag, str(missing)], NO_PROVIDERS, tmp_path)
        # no provider keys are set: an error about the folder, not the keys, means it was checked first
        refused(code, stderr, str(missing.parent), "no such folder")
    code, _, stderr = await run_cli(
        [str(ONE_SENTENCE.wav), "--source", "en", "--target", "es", "--out", str(tmp_path)],
        NO_PROVIDERS,
        tmp_path,
    )
    refused(code, stderr, str(tmp_path), "directory")


async def test_interpret_refuses_unsupported_or_identical_languages(tmp_path: Path):
    out = tmp_path / "o.wav"
    for source, target, problem in [
        ("xx", "es", "--source xx"),
        ("en", "tlh", "--target tlh"),
        ("en", "en", "same language"),
        ("en-GB", "en-US", "same language"),
    ]:
        args = [str(ONE_SENTENCE.wav), "--source", source, "--target", target, "--out", str(out)]
        code, _, stderr = await run_cli(args, NO_PROVIDERS, tmp_path)
        refused(code, stderr, problem)
        assert not out.exists()
    code, _, stderr = await run_cli(
        [str(ONE_SENTENCE.wav), "--out", str(out)],
        {**NO_PROVIDERS, "SOURCE_LANGUAGE": "en", "TARGET_LANGUAGE": "en"},  # (auto, the default, differs)
        tmp_path,
    )
    assert code == 2 and "Traceback" not in stderr and "same language" in stderr, stderr


def test_read_wav_converts_8_bit_float_and_stereo(tmp_path: Path):
    ramp = np.linspace(-1, 1, 201)
    expected = np.round(ramp * 32767).astype(np.int16)

    eight = write_pcm(tmp_path / "u8.wav", np.round(ramp * 127 + 128).astype(np.uint8), rate=8000)
    pcm = read_wav(eight)
    assert pcm.sample_rate == 8000 and pcm.samples.dtype == np.int16
    assert np.abs(pcm.samples.astype(np.int32) - expected).max() <= 256 + 1

    floats = read_wav(write_float_wav(tmp_path / "f32.wav", ramp, rate=22050))
    assert floats.sample_rate == 22050 and floats.samples.dtype == np.int16
    assert np.abs(floats.samples.astype(np.int32) - expected).max() <= 1
    # beyond full scale is clipped, not wrapped around
    assert list(read_wav(write_float_wav(tmp_path / "loud.wav", np.array([1.5, -1.5]))).samples) == [
        32767,
        -32767,
    ]

    # 24-bit: three little-endian bytes a sample (the stdlib writes what it is given)
    as24 = np.round(ramp * (2**23 - 1)).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
    with wave.open(str(tmp_path / "s24.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(48000)
        w.writeframes(as24.tobytes())
    pcm = read_wav(tmp_path / "s24.wav")
    assert pcm.sample_rate == 48000 and np.abs(pcm.samples.astype(np.int32) - expected).max() <= 1

    left, right = expected, np.zeros_like(expected)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    pcm = read_wav(write_pcm(tmp_path / "stereo.wav", stereo, channels=2))
    assert len(pcm.samples) == len(expected)
    assert np.abs(pcm.samples.astype(np.int32) - expected // 2).max() <= 1


async def test_interpret_of_pure_silence_says_no_speech_was_found(one_sentence_fakes: Fakes, tmp_path: Path):
    silence = write_pcm(tmp_path / "silence.wav", np.zeros(16000, np.int16))
    out = tmp_path / "out.wav"
    args = [str(silence), "--source", "en", "--target", "es", "--out", str(out)]
    code, _, stderr = await run_cli(args, one_sentence_fakes.env(), tmp_path)
    assert code == 1, stderr
    assert "Traceback" not in stderr
    assert f"no speech found in {silence}" in stderr, stderr
    assert out.exists()


async def test_interpret_on_deepgram_flux_with_drafts(dialogue_fakes: Fakes, tmp_path: Path):
    """`DEEPGRAM_MODEL=flux-general-en` with eager ends of turn: Flux's turns are the utterances, each
    translated once (a draft the end of turn confirmed, or its own request), in order."""
    fake = dialogue_fakes.deepgram
    fake.flux_timing = FluxTiming(eot_delay=Delay(0.35), eager_lead=Delay(0.2))  # no jitter
    out, captions = tmp_path / "out.wav", tmp_path / "captions.json"
    env = dialogue_fakes.env(DEEPGRAM_MODEL="flux-general-en", DEEPGRAM_EAGER_EOT_THRESHOLD="0.5")
    args = [str(DIALOGUE.wav), "--source", "en", "--target", "es", "--out", str(out)]
    code, _, stderr = await run_cli([*args, "--captions", str(captions), "--json"], env, tmp_path)

    assert code == 0, stderr
    assert [c.query.get("model") for c in fake.connections] == ["flux-general-en"]
    assert [t.transcript for t in fake.flux_turns] == DIALOGUE.transcripts
    assert fake.flux_eager_sent >= 3
    written = json.loads(captions.read_text())
    assert [c["text"] for c in written if c["final"] and not c["translated"]] == DIALOGUE.transcripts
    translated = [c["text"] for c in written if c["final"] and c["translated"]]
    assert translated == list(DIALOGUE.translations.values())
    spoken = [spoken_text(t) for t in dialogue_fakes.cartesia.contexts.values()]
    assert spoken == list(DIALOGUE.translations.values()), "each translated once, no draft spoken"
