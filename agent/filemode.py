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
import sys
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import numpy as np
from livekit import rtc

from .captions import CaptionLog
from .config import ConfigError, Settings, load_settings, read_environment
from .latency import LatencyTracker, format_table
from .pipeline import Interpreter, PipelineOptions
from .providers import build_providers

FRAME_S = 0.02


@dataclass(frozen=True, slots=True)
class Pcm:
    samples: np.ndarray  # int16, mono
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def read_wav(path: Path) -> Pcm:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        channels = w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        rate = w.getframerate()
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return Pcm(data, rate)


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
            options=PipelineOptions.from_settings(settings),
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
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent interpret",
        description="Interpret a WAV file through the live pipeline (no LiveKit server needed).",
    )
    parser.add_argument("input", type=Path, help="16-bit PCM WAV of the speaker")
    parser.add_argument("--source", help="spoken language (default: SOURCE_LANGUAGE or en)")
    parser.add_argument("--target", help="language to interpret into (default: TARGET_LANGUAGE or es)")
    parser.add_argument("--out", type=Path, required=True, help="WAV to write what a listener hears")
    parser.add_argument("--with-original", action="store_true", help="put the original on channel 2")
    parser.add_argument("--captions", type=Path, help="write the captions as JSON here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    try:
        settings = load_settings(read_environment(), require_livekit=False)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    # logs go to stderr, the result to stdout; quiet (warnings and errors) unless LOG_LEVEL says
    logging.basicConfig(
        level=settings.log_level or logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.input.exists():
        print(f"no such file: {args.input}", file=sys.stderr)
        return 2
    result = asyncio.run(
        interpret_file(
            settings,
            args.input,
            args.out,
            source=args.source or settings.source_language,
            target=args.target or settings.target_language,
            with_original=args.with_original,
            captions_path=args.captions,
        )
    )
    if args.json:
        print(json.dumps(asdict(result), indent=1))
    else:
        print(
            f"wrote {result.out_path}: {result.output_s} s of audio for {result.input_s} s of input; "
            f"{result.spoken} utterances spoken, {result.failed} failed"
        )
        print(format_table(result.latency_ms))
    return 0 if result.failed == 0 else 1
