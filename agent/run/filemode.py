"""File mode: `python -m agent interpret IN.wav --source en --target es --out OUT.wav`.

The very same three loops, with a WAV file as the speaker (paced in real time, like a live speaker)
and a recorder on the published source that writes what a listener would hear, aligned to the
input's timeline: silence where nothing is said, optionally the original on a second channel.
No LiveKit server is needed, only the provider keys (or base URLs of local fakes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from livekit import rtc

from agent.language.codes import AUTO, SUPPORTED_LANGUAGES, base_language, is_supported_language
from agent.loops.captions import CaptionLog
from agent.loops.ears.stt_link import SttFailure
from agent.loops.pipeline import Interpreter, PipelineOptions
from agent.providers.build import build_providers
from agent.settings.config import (
    ConfigError,
    Settings,
    can_detect_language,
    can_hear,
    load_settings,
    read_environment,
)
from agent.telemetry.latency import LatencyTracker, format_table
from agent.telemetry.usage import Usage

FRAME_S = 0.02
# How long the file mode waits for speech recognition that is down (unreachable, or failing) before it
# gives up: as long as the ears' replay buffer holds what is said meanwhile (30 s), so an outage it
# rides out loses nothing, and one it cannot ends the run (exit 1) instead of leaving a hole. A request
# Deepgram refuses (a wrong key: 401/403) ends it at once.
STT_GIVE_UP_S = 30.0


@dataclass(frozen=True, slots=True)
class Pcm:
    samples: np.ndarray  # int16, mono
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


class InputError(ValueError):
    """A file or argument the file mode cannot use; its message is one line for the user."""


_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_READABLE = {(_PCM, 8), (_PCM, 16), (_PCM, 24), (_PCM, 32), (_FLOAT, 32), (_FLOAT, 64)}  # (tag, bits)
_CONVERT = "convert it to WAV, e.g. `ffmpeg -i IN -ac 1 -c:a pcm_s16le OUT.wav`"


def _not_wav(path: Path, head: bytes) -> InputError:
    for magic, kind in ((b"fLaC", "FLAC"), (b"OggS", "Ogg"), (b"ID3", "MP3"), (b"\xff\xfb", "MP3")):
        if head.startswith(magic):
            return InputError(f"{path}: is {kind}, not WAV; {_CONVERT}")
    if head[4:8] == b"ftyp":
        return InputError(f"{path}: is MP4/M4A, not WAV; {_CONVERT}")
    return InputError(f"{path}: not a WAV file (no RIFF/WAVE header); {_CONVERT}")


def read_wav(path: Path) -> Pcm:
    """A WAV file as 16-bit mono: 8-, 16-, 24- and 32-bit PCM and 32- or 64-bit float are converted,
    channels are averaged. Anything else raises InputError with one line naming the file."""
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a WAV file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    if not raw:
        raise InputError(f"{path}: is empty")
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise _not_wav(path, raw[:12])
    fmt: bytes | None = None
    data: bytes | None = None
    pos = 12
    while pos + 8 <= len(raw):
        chunk_id, size = raw[pos : pos + 4], int.from_bytes(raw[pos + 4 : pos + 8], "little")
        body = raw[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            data = body  # a header that overstates the size (streamed WAVs) gets what is there
            break
        pos += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise InputError(f"{path}: broken WAV file (no format chunk)")
    tag = int.from_bytes(fmt[0:2], "little")
    channels = int.from_bytes(fmt[2:4], "little")
    rate = int.from_bytes(fmt[4:8], "little")
    bits = int.from_bytes(fmt[14:16], "little")
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = int.from_bytes(fmt[24:26], "little")  # the sub-format GUID starts with the format tag
    if channels < 1 or rate < 1:
        raise InputError(f"{path}: broken WAV file ({channels} channels at {rate} Hz)")
    width = bits // 8
    if (tag, bits) not in _READABLE:
        kind = {_PCM: "PCM", _FLOAT: "float"}.get(tag, f"format {tag:#x}")
        raise InputError(
            f"{path}: {bits}-bit {kind} WAV is not supported (8/16/24/32-bit PCM or float); {_CONVERT}"
        )
    if not data or len(data) < width * channels:
        raise InputError(f"{path}: has no audio")
    data = data[: len(data) // (width * channels) * width * channels]
    samples = _to_float(data, tag, bits).reshape(-1, channels).mean(axis=1)
    return Pcm(np.round(np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16), rate)


def _to_float(data: bytes, tag: int, bits: int) -> np.ndarray:
    """Samples in [-1, 1] (float may exceed it; the caller clips)."""
    if tag == _FLOAT:
        return np.frombuffer(data, dtype="<f4" if bits == 32 else "<f8").astype(np.float64)
    if bits == 8:  # unsigned, 128 is silence
        return (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128) / 127
    if bits == 16:
        return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32767
    if bits == 24:
        b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / ((1 << 23) - 1)
    return np.frombuffer(data, dtype="<i4").astype(np.float64) / ((1 << 31) - 1)


def write_wav(path: Path, channels: list[np.ndarray], sample_rate: int) -> None:
    length = max(len(c) for c in channels)
    stacked = np.zeros((length, len(channels)), dtype=np.int16)
    for i, c in enumerate(channels):
        stacked[: len(c), i] = c
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(stacked.tobytes())


def resample(pcm: Pcm, rate: int) -> np.ndarray:
    if pcm.sample_rate == rate:
        return pcm.samples
    n = round(len(pcm.samples) * rate / pcm.sample_rate)
    x = np.linspace(0, len(pcm.samples) - 1, n)
    return np.interp(x, np.arange(len(pcm.samples)), pcm.samples).astype(np.int16)


async def paced_frames(
    pcm: Pcm, *, started: asyncio.Future[float] | None = None
) -> AsyncIterator[rtc.AudioFrame]:
    """The file as a live speaker: 20 ms frames, each released when its audio has been 'spoken'."""
    step = int(pcm.sample_rate * FRAME_S)
    t0 = time.perf_counter()
    if started is not None and not started.done():
        started.set_result(t0)
    for i, start in enumerate(range(0, len(pcm.samples), step)):
        chunk = pcm.samples[start : start + step]
        if len(chunk) < step:
            chunk = np.pad(chunk, (0, step - len(chunk)))
        delay = t0 + (i + 1) * FRAME_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield rtc.AudioFrame(chunk.tobytes(), pcm.sample_rate, 1, step)


class RecordingOutput:
    """An `rtc.AudioSource` that also records what it plays, placed on the input's timeline."""

    def __init__(self, sample_rate: int, t0: asyncio.Future[float]) -> None:
        self._source = rtc.AudioSource(sample_rate, 1, queue_size_ms=200)
        self._t0 = t0
        self._chunks: list[tuple[int, np.ndarray]] = []  # (start sample, samples)
        self._cursor = 0  # first sample after what was recorded so far

    @property
    def sample_rate(self) -> int:
        return self._source.sample_rate

    @property
    def queued_duration(self) -> float:
        return self._source.queued_duration

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        # it will be heard after what is queued now; contiguous audio stays contiguous
        plays_at = time.perf_counter() - await self._t0 + self._source.queued_duration
        start = max(self._cursor, round(plays_at * self.sample_rate))
        samples = np.frombuffer(frame.data, dtype=np.int16).copy()
        self._chunks.append((start, samples))
        self._cursor = start + len(samples)
        await self._source.capture_frame(frame)

    def render(self, min_samples: int) -> np.ndarray:
        out = np.zeros(max(min_samples, self._cursor), dtype=np.int16)
        for start, samples in self._chunks:
            out[start : start + len(samples)] = samples
        return out

    async def aclose(self) -> None:
        await self._source.wait_for_playout()
        await self._source.aclose()


@dataclass(frozen=True, slots=True)
class FileResult:
    out_path: str
    input_s: float
    output_s: float
    utterances: int
    spoken: int
    failed: int
    latency_ms: dict[str, dict[str, float | int]]
    stt_failure: SttFailure | None = None  # speech recognition refused, or down too long
    usage: dict[str, Any] = field(default_factory=dict)  # what the providers were asked for, and its cost


async def interpret_file(
    settings: Settings,
    in_path: Path,
    out_path: Path,
    *,
    source: str,
    target: str,
    with_original: bool = False,
    captions_path: Path | None = None,
    tracker: LatencyTracker | None = None,
) -> FileResult:
    pcm = read_wav(in_path)
    tracker = tracker or LatencyTracker()
    usage = Usage(settings.prices)
    captions = CaptionLog()
    started: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    output = RecordingOutput(settings.tts.sample_rate, started)
    async with aiohttp.ClientSession() as http:
        providers = build_providers(
            settings, source_language=source, target_language=target, http_session=http
        )
        providers.prewarm()
        interpreter = Interpreter(
            providers=providers,
            frames=paced_frames(pcm, started=started),
            output=output,
            tracker=tracker,
            speaker=in_path.stem,
            source_language=source,
            target_language=target,
            captions=captions,
            options=replace(PipelineOptions.from_settings(settings), stt_give_up_after_s=STT_GIVE_UP_S),
            usage=usage,
        )
        try:
            await interpreter.run()
            await output.aclose()
        finally:
            await providers.aclose()

    rate = settings.tts.sample_rate
    heard = output.render(round(pcm.duration * rate))
    channels = [heard]
    if with_original:
        channels.append(resample(pcm, rate))
    write_wav(out_path, channels, rate)
    if captions_path is not None:
        text = json.dumps([asdict(c) for c in captions.captions], ensure_ascii=False, indent=1)
        await asyncio.to_thread(captions_path.write_text, text)
    return FileResult(
        out_path=str(out_path),
        input_s=round(pcm.duration, 3),
        output_s=round(len(heard) / rate, 3),
        utterances=interpreter.ears.utterances,
        spoken=tracker.spoken,
        failed=tracker.failed,
        latency_ms=tracker.summary_ms(),
        stt_failure=interpreter.ears.failure,
        usage=usage.summary(),
    )


def check_output(flag: str, path: Path) -> None:
    """Where a result goes must be writable before the run, not found broken after it."""
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a directory, not a file")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{flag} {path}: no such folder: {folder}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{flag} {path}: cannot be written (permission denied)")


def check_language(flag: str, code: str, *, auto: bool = False) -> None:
    """A supported language (or, with `auto`, `auto`: detected per utterance)."""
    if auto and code == AUTO:
        return
    if not is_supported_language(code):
        supported = ", ".join(sorted(SUPPORTED_LANGUAGES))
        raise InputError(f"{flag} {code}: not a supported language (supported: {supported})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agent interpret",
        description="Interpret a WAV file through the live pipeline (no LiveKit server needed).",
    )
    parser.add_argument("input", type=Path, help="WAV of the speaker (PCM or float, any rate, mono or not)")
    parser.add_argument(
        "--source",
        type=lambda code: AUTO if code.strip().lower() == AUTO else code,
        help="spoken language, or auto: detected per utterance (default: SOURCE_LANGUAGE, else auto)",
    )
    parser.add_argument("--target", help="language to interpret into (default: TARGET_LANGUAGE or es)")
    parser.add_argument("--out", type=Path, required=True, help="WAV to write what a listener hears")
    parser.add_argument("--with-original", action="store_true", help="put the original on channel 2")
    parser.add_argument("--captions", type=Path, help="write the captions as JSON here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    """Everything the run needs is checked before it starts: a bad file or path fails in a second,
    not after a whole real-time run."""
    read_wav(args.input)
    check_output("--out", args.out)
    if args.captions is not None:
        check_output("--captions", args.captions)
    for flag, code in (("--source", args.source), ("--target", args.target)):
        if code is not None:
            check_language(flag, code, auto=flag == "--source")


def _languages(args: argparse.Namespace, settings: Settings) -> tuple[str, str]:
    """The source and target languages (the arguments, else the settings), checked."""
    source = args.source or settings.source_language
    target = args.target or settings.target_language
    check_language("--source" if args.source else "SOURCE_LANGUAGE", source, auto=True)
    check_language("--target" if args.target else "TARGET_LANGUAGE", target)
    if source == AUTO and not can_detect_language(settings.stt.model):
        raise InputError(
            "--source auto needs DEEPGRAM_MODEL nova-3 or flux-general-multi (they detect the language), "
            f"not {settings.stt.model!r}"
        )
    if source != AUTO and not can_hear(settings.stt.model, source):
        raise InputError(f"DEEPGRAM_MODEL {settings.stt.model!r} does not transcribe --source {source}")
    if source != AUTO and base_language(source) == base_language(target):
        raise InputError(
            f"source {source} and target {target} are the same language: nothing would be interpreted"
        )
    return source, target


def _report(result: FileResult, args: argparse.Namespace) -> int:
    """The result on stdout (a summary and latency table, or JSON); the exit status."""
    if args.json:
        print(json.dumps(asdict(result), indent=1))
    else:
        failure = result.stt_failure
        print(
            f"wrote {result.out_path}: {result.output_s} s of audio for {result.input_s} s of input; "
            f"{result.spoken} utterances spoken, {result.failed} failed"
            + ("" if failure is None else f"; speech recognition failed ({failure.cause})")
        )
        print(format_table(result.latency_ms))
        usage = result.usage
        print(f"cost: ${usage['cost_usd']:.4f} by the price table of {usage['prices_date']}")
    if result.stt_failure is not None:
        return 1  # the ears logged why (provider and status or error), once
    if result.utterances == 0:
        print(f"no speech found in {args.input}: {result.out_path} is silence", file=sys.stderr)
        return 1
    return 0 if result.failed == 0 else 1


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        _check_arguments(args)
        env = read_environment()
        if args.source:  # the file's language is --source's, whatever SOURCE_LANGUAGE says
            env["SOURCE_LANGUAGE"] = args.source
        settings = load_settings(env, require_livekit=False)
        # logs go to stderr, the result to stdout; quiet (warnings and errors) unless LOG_LEVEL says
        logging.basicConfig(
            level=settings.log_level or logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
        )
        source, target = _languages(args, settings)
    except (InputError, ConfigError) as e:  # one line (or the list of settings problems) for the user
        print(e, file=sys.stderr)
        return 2
    result = asyncio.run(
        interpret_file(
            settings,
            args.input,
            args.out,
            source=source,
            target=target,
            with_original=args.with_original,
            captions_path=args.captions,
        )
    )
    return _report(result, args)
