"""Builds the provider objects (real plugins and SDK) from settings. The loops get them injected.

Retries are kept in one place per provider: the framework's `APIConnectOptions` on each stream and
`FallbackLLM` across LLMs (`agent/providers/fallback_llm.py`); the SDK's own retries are off.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from cerebras.cloud import sdk as cerebras
from livekit.agents import (
    APIConnectOptions,
    APIStatusError,
    llm,
    stt,
    tts,
)
from livekit.agents.tokenize import SentenceStream, SentenceTokenizer, TokenData
from livekit.plugins import deepgram, openai

from agent.language.codes import AUTO, MULTI, base_language
from agent.providers.cartesia_ws import CartesiaTTS, cartesia_session
from agent.providers.cerebras_llm import CerebrasLLM
from agent.providers.fallback_llm import FallbackLLM
from agent.providers.llm_replies import MAX_COMPLETION_TOKENS
from agent.settings.config import Settings
from agent.telemetry import metrics
from agent.telemetry.logs import redact_provider_logs

logger = logging.getLogger("agent.providers")

# STT streams get no framework retries: the ears reconnect themselves and replay buffered audio.
STT_CONN_OPTIONS = APIConnectOptions(max_retry=0, timeout=5.0)
TTS_CONN_OPTIONS = APIConnectOptions(max_retry=2, retry_interval=0.2, timeout=5.0)


class Closable(Protocol):
    async def aclose(self) -> None: ...


async def close_stream(stream: Closable, patience_s: float = 1.0) -> None:
    """Close a provider stream, even one caught connecting. The plugins connect inside
    `asyncio.wait_for`, which on Python 3.11 can lose a cancellation that lands as the connection
    completes; the stream's `aclose` then waits forever on a task that was never cancelled (seen in the
    tests with Cartesia). A second `aclose` cancels it again."""
    first = asyncio.ensure_future(stream.aclose())
    try:
        await asyncio.wait_for(asyncio.shield(first), patience_s)
    except TimeoutError:
        logger.warning("a provider stream ignored its cancellation; cancelling it again")
        await stream.aclose()
        await first


@dataclass(slots=True)
class Providers:
    stt: stt.STT
    llm: llm.LLM
    tts: tts.TTS

    def prewarm(self) -> None:
        """Open connections early without blocking the event loop."""
        self.llm.prewarm()
        self.tts.prewarm()

    async def aclose(self) -> None:
        await self.llm.aclose()
        await self.tts.aclose()
        await self.stt.aclose()


class ClauseTokenizer(SentenceTokenizer):
    """Hands each pushed text to the TTS as one unit, at once.

    The brain already cuts the translation into clauses; the plugin's default sentence tokenizer
    would hold a sentence back until the next one starts. Being a `SentenceTokenizer`, it also makes
    the Cartesia plugin send `max_buffer_delay_ms: 0`, so Cartesia starts on each clause at once.
    """

    def tokenize(self, text: str, *, language: str | None = None) -> list[str]:
        return [text] if text.strip() else []

    def stream(self, *, language: str | None = None) -> SentenceStream:
        return _ClauseStream()


class _ClauseStream(SentenceStream):
    def push_text(self, text: str) -> None:
        self._check_not_closed()
        if text.strip():
            self._event_ch.send_nowait(TokenData(token=text.strip()))

    def flush(self) -> None:
        pass

    def end_input(self) -> None:
        self._do_close()

    async def aclose(self) -> None:
        self._do_close()


def stt_language(language: str) -> str:
    """The `language` a Deepgram stream is asked for: `multi` (code switching) for `auto`."""
    return MULTI if language == AUTO else language


def build_stt(settings: Settings, language: str, http_session: aiohttp.ClientSession | None) -> stt.STT:
    if settings.stt.turn_based:
        return _build_flux(settings, language, http_session)
    language = stt_language(language)
    instance = deepgram.STT(
        api_key=settings.stt.api_key,
        base_url=settings.stt.base_url,
        model=settings.stt.model,
        language=language,
        interim_results=True,
        punctuate=True,
        smart_format=False,
        endpointing_ms=settings.stt.endpointing_ms,
        vad_events=True,
        sample_rate=16000,
        http_session=http_session,
    )
    count_errors(instance, "stt")
    return instance


def _build_flux(settings: Settings, language: str, http_session: aiohttp.ClientSession | None) -> stt.STT:
    """Deepgram Flux (`STTv2`): it ends turns itself; `flux-general-multi` is hinted a known language."""
    flux = settings.stt.flux
    options: dict[str, Any] = {
        k: v
        for k, v in (
            ("eot_threshold", flux.eot_threshold),
            ("eager_eot_threshold", flux.eager_eot_threshold),
            ("eot_timeout_ms", flux.eot_timeout_ms),
        )
        if v is not None
    }
    if settings.stt.model == "flux-general-multi" and language != AUTO:
        options["language_hint"] = [base_language(language)]
    instance = deepgram.STTv2(
        api_key=settings.stt.api_key,
        base_url=settings.stt.url,
        model=settings.stt.model,
        sample_rate=16000,
        audio_chunk_duration_ms=80,  # Deepgram advises ~80 ms chunks for Flux
        http_session=http_session,
        **options,
    )
    count_errors(instance, "stt")
    return instance


def ends_turns(instance: stt.STT) -> bool:
    """An STT that ends turns itself and cannot be asked to finalize (Deepgram Flux): the ears cut its
    turns into pieces themselves (`agent/loops/ears/turns.py`)."""
    return isinstance(instance, deepgram.STTv2)


def build_llm(settings: Settings) -> llm.LLM:
    redact_provider_logs()  # the SDKs log whole requests at DEBUG
    instances: list[llm.LLM] = []
    for p in settings.llms:
        if p.name == "cerebras":
            client = cerebras.AsyncCerebras(
                api_key=p.api_key, base_url=p.base_url, max_retries=0, warm_tcp_connection=False
            )
            instances.append(
                CerebrasLLM(
                    client=client,
                    model=p.model,
                    reasoning_effort=p.reasoning_effort,
                    max_completion_tokens=MAX_COMPLETION_TOKENS,
                )
            )
        else:
            instances.append(
                openai.LLM(
                    model=p.model,
                    api_key=p.api_key,
                    base_url=p.base_url,
                    reasoning_effort=p.reasoning_effort,  # type: ignore[arg-type]
                    temperature=0.2,
                    max_completion_tokens=MAX_COMPLETION_TOKENS,  # a cut by it shows in the usage
                    max_retries=0,
                )
            )
    adapter = FallbackLLM(
        instances, names=[p.name for p in settings.llms], attempt_timeout=settings.llm_attempt_timeout_s
    )
    for instance, p in zip(instances, settings.llms, strict=True):
        count_errors(instance, "llm")
        count_refusals(instance, p.name)
    return adapter


def count_errors(provider: llm.LLM | stt.STT | tts.TTS, kind: str) -> None:
    """Count a provider's errors in Prometheus (they carry no user content)."""

    def on_error(error: Any) -> None:
        recoverable = "true" if getattr(error, "recoverable", False) else "false"
        metrics.PROVIDER_ERRORS.labels(kind=kind, recoverable=recoverable).inc()

    provider.on("error", on_error)


def count_refusals(instance: llm.LLM, name: str) -> None:
    """Count the requests `instance` (called `name`: "cerebras", "groq") refused, by status."""

    def on_error(event: llm.LLMError) -> None:
        error = event.error
        if isinstance(error, APIStatusError) and 400 <= error.status_code < 500 and not error.retryable:
            metrics.LLM_REFUSALS.labels(llm=name, status=str(error.status_code)).inc()

    instance.on("error", on_error)


def build_tts(
    settings: Settings, language: str, http_session: aiohttp.ClientSession | None, voice: str | None = None
) -> tts.TTS:
    kwargs = {}
    if voice or settings.tts.voice:
        kwargs["voice"] = voice or settings.tts.voice
    redact_provider_logs()  # the framework's TTS retry warning would log the translation
    instance = CartesiaTTS(
        api_key=settings.tts.api_key,
        base_url=settings.tts.base_url,
        model=settings.tts.model,
        language=language,
        sample_rate=settings.tts.sample_rate,
        encoding="pcm_s16le",
        word_timestamps=False,
        tokenizer=ClauseTokenizer(),
        http_session=cartesia_session(http_session),  # Cartesia's error frames seen as errors
        **kwargs,
    )
    count_errors(instance, "tts")
    return instance


def build_providers(
    settings: Settings,
    *,
    source_language: str,
    target_language: str,
    http_session: aiohttp.ClientSession | None = None,
) -> Providers:
    return Providers(
        stt=build_stt(settings, source_language, http_session),
        llm=build_llm(settings),
        tts=build_tts(settings, target_language, http_session),
    )
