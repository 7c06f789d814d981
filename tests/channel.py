"""One channel (brain + mouth) on the real plugins and SDK against the fake providers, fed utterances
directly and playing into an output that does not pace in real time: faults and bad input cost
little test time here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import numpy as np
from livekit import rtc
from livekit.agents import llm as lk_llm
from livekit.agents import tts as lk_tts

from agent.loops.captions import CaptionLog
from agent.loops.models import Utterance
from agent.loops.pipeline import Channel, PipelineOptions
from agent.providers.build import build_llm, build_tts
from agent.settings.config import Settings
from agent.telemetry.latency import LatencyTracker
from tests.conftest import Fakes


class CollectingOutput:
    """An `AudioOutput` that keeps every frame and never paces (optionally held shut by `gate`)."""

    sample_rate = 24000
    queued_duration = 0.0

    def __init__(self) -> None:
        self.frames: list[rtc.AudioFrame] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await self.gate.wait()
        self.frames.append(frame)

    def audio(self) -> np.ndarray:
        if not self.frames:
            return np.zeros(0, np.int16)
        return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in self.frames])

    @property
    def seconds(self) -> float:
        return sum(f.samples_per_channel for f in self.frames) / self.sample_rate


@dataclass
class ChannelRun:
    fakes: Fakes
    channel: Channel
    output: CollectingOutput
    tracker: LatencyTracker
    captions: CaptionLog
    llm: lk_llm.LLM
    faults: list[tuple[str, bool]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    _n: int = 0

    def say(self, text: str, speaker: str = "ann") -> None:
        now = self.tracker.clock()
        i, self._n = self._n, self._n + 1
        utterance = Utterance(
            id=f"{speaker}-{i}", speaker=speaker, text=text, language="en",
            audio_start=2.0 * i, audio_end=2.0 * i + 1.5, speech_end_at=now, final_at=now,
        )  # fmt: skip
        self.channel.put_nowait(utterance)

    async def finish(self, within_s: float = 30.0) -> None:
        self.channel.close()
        assert self.task is not None
        try:
            await asyncio.wait_for(asyncio.shield(self.task), within_s)
        except TimeoutError:
            stuck = [
                f"{t.get_name()}: {' -> '.join(_awaiting(t.get_coro()))}"
                for t in asyncio.all_tasks()
                if not t.done() and t is not asyncio.current_task()
            ]
            raise AssertionError("the channel did not finish; tasks:\n" + "\n".join(stuck)) from None

    def translated(self) -> list[str]:
        return [c.text for c in self.captions.finals(translated=True)]

    def expected_seconds(self, clauses: list[str]) -> float:
        return sum(self.fakes.cartesia.duration_for(c) for c in clauses)


def _awaiting(coro: object) -> list[str]:
    """Where a coroutine is suspended: its chain of awaits, outermost first."""
    out = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            out.append(repr(coro)[:80])
            break
        out.append(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return out


@contextlib.asynccontextmanager
async def channel_run(
    fakes: Fakes,
    wrap_tts: Callable[[lk_tts.TTS], lk_tts.TTS] | None = None,
    options: Callable[[Settings], PipelineOptions] | None = None,
    **env: str,
) -> AsyncIterator[ChannelRun]:
    """One Spanish channel on the real plugins and SDK against `fakes`, running until the test ends;
    `wrap_tts` may wrap the real TTS (a plugin with a bug); `options` makes the pipeline options from the
    settings (default: only `stale_after_s` taken from them)."""
    servers = (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia)
    for server in servers:
        await server.start()
    settings = fakes.settings(**env)
    async with aiohttp.ClientSession() as http:
        llm, tts = build_llm(settings), build_tts(settings, "es", http)
        if wrap_tts is not None:
            tts = wrap_tts(tts)
        output, tracker, captions = CollectingOutput(), LatencyTracker(), CaptionLog()
        faults: list[tuple[str, bool]] = []
        channel = Channel(
            llm=llm, tts=tts, output=output, tracker=tracker, language="es", captions=captions,
            options=options(settings) if options else PipelineOptions(stale_after_s=settings.stale_after_s),
            on_fault=lambda kind, active: faults.append((kind, active)),
        )  # fmt: skip
        r = ChannelRun(fakes, channel, output, tracker, captions, llm, faults)
        r.task = asyncio.create_task(channel.run())
        try:
            yield r
        finally:
            if not r.task.done():
                r.task.cancel()
            await asyncio.gather(r.task, return_exceptions=True)
            await llm.aclose()
            await tts.aclose()
            for server in servers:
                await server.aclose()
