"""The soak's fake providers, in a process of their own (`soak_fakes`, through `provider_process`; the child
is `python -m bench.soak.fakes CONFIG_JSON`): quick, jittered answers, and a 'translation' of the numbered
words the fake STT hears; and the worker settings pointing at them (`soak_settings`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from agent.settings.config import Settings
from bench.harness.modelled_providers import SPEECH_RE
from bench.harness.provider_process import provider_process, serve_main
from bench.harness.session import ENDPOINTING_MS, bench_settings
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM, numbered_words
from tests.fakes.latency_model import Delay
from tests.fakes.llm import Message, last_user_text, message_text


def soak_reply(messages: list[Message]) -> str:
    """A 'translation': the source's numbered words renamed, a comma every few words (several clauses)."""
    speech = next((message_text(m) for m in reversed(messages) if "<speech" in message_text(m)), "")
    match = SPEECH_RE.search(speech or last_user_text(messages))
    words = (match.group(1) if match else "w0").strip().rstrip(".").split() or ["w0"]
    out = [
        f"t{w.lstrip('w')}" + ("," if i % 4 == 3 and i < len(words) - 1 else "") for i, w in enumerate(words)
    ]
    return " ".join(out) + "."


@dataclass(frozen=True)
class FakeLatency:
    stt_ms: float = 20.0
    llm_ttft_ms: float = 30.0
    llm_tps: float = 0.0  # 0: all tokens at once after the first
    tts_ttfb_ms: float = 30.0
    jitter: float = 0.3  # standard deviation as a fraction of the mean


def _delay(ms: float, jitter: float) -> Delay:
    return Delay(ms / 1000, ms / 1000 * jitter) if ms > 0 else Delay()


class SoakFakes:
    """The fake Deepgram, LLM and Cartesia on `latency` (in the child process)."""

    def __init__(self, latency: FakeLatency) -> None:
        self.deepgram = FakeDeepgram(
            [], transcript_for=numbered_words(), finalize_delay=_delay(latency.stt_ms, latency.jitter), seed=1
        )
        self.llm = FakeLLM(
            responder=soak_reply,
            ttft=_delay(latency.llm_ttft_ms, latency.jitter),
            tokens_per_s=latency.llm_tps or None,
            seed=2,
        )
        self.cartesia = FakeCartesia(ttfb=_delay(latency.tts_ttfb_ms, latency.jitter), seed=3)

    async def start(self) -> dict[str, str]:
        for fake in (self.deepgram, self.llm, self.cartesia):
            await fake.start()
        return {
            "deepgram": self.deepgram.base_url,
            "cerebras": self.llm.base_url,
            "groq": self.llm.openai_base_url,
            "cartesia": self.cartesia.base_url,
        }

    async def aclose(self) -> None:
        for fake in (self.deepgram, self.llm, self.cartesia):
            await fake.aclose()


@contextlib.asynccontextmanager
async def soak_fakes(latency: FakeLatency) -> AsyncIterator[dict[str, str]]:
    """The fakes in a child process; yields their URLs and the child's `pid`."""
    async with provider_process("bench.soak.fakes", asdict(latency)) as urls:
        yield urls


def from_config(config: dict[str, Any]) -> SoakFakes:
    return SoakFakes(FakeLatency(**config))


def soak_settings(urls: dict[str, str], **overrides: str) -> Settings:
    # the worker's default cuts long speech with Finalize when the ears see 1 s of it; with audio
    # arriving faster than real time where that cut lands depends on timing, so it is off by default
    # here and every burst is exactly one utterance (`--set STT_MAX_SEGMENT_S=1.0` to soak cuts too)
    return bench_settings(urls, STT_ENDPOINTING_MS=str(ENDPOINTING_MS), STT_MAX_SEGMENT_S="0", **overrides)


if __name__ == "__main__":
    serve_main(from_config)
