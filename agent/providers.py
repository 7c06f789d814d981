"""Builds the provider objects (real plugins and SDK) from settings. The loops get them injected.

Retries are kept in one place per provider: the framework's `APIConnectOptions` on each stream and
`llm.FallbackAdapter` across LLMs; the SDK's own retries are off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from cerebras.cloud import sdk as cerebras
from livekit.agents import (
    NOT_GIVEN,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    NotGivenOr,
    llm,
    stt,
    tts,
)
from livekit.agents.llm.fallback_adapter import DEFAULT_FALLBACK_API_CONNECT_OPTIONS, FallbackLLMStream
from livekit.agents.tokenize import SentenceStream, SentenceTokenizer, TokenData
from livekit.plugins import deepgram, openai

from . import metrics
from .cartesia_ws import CartesiaTTS, cartesia_session
from .cerebras_llm import CerebrasLLM
from .config import Settings
from .llm_replies import MAX_COMPLETION_TOKENS, describe_error
from .logs import redact_provider_logs

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


class LLMRefused(APIStatusError):
    """Every LLM refused the request (a status the framework does not retry: 400, 401, 403, 404, 422...):
    asking again cannot help. `refusals`: (provider, status) per LLM, in the adapter's order."""

    def __init__(self, refusals: list[tuple[str, int]]) -> None:
        named = ", ".join(f"{provider} {status}" for provider, status in refusals)
        super().__init__(
            f"every LLM refused the request ({named})", status_code=refusals[0][1], retryable=False
        )
        self.refusals = refusals


class LLMsUnavailable(APIConnectionError):
    """Every LLM failed a request with an error worth retrying (5xx, 429, a timeout, a connection
    error). `failures`: (provider, what failed: a status or the kind of error) per LLM, in order."""

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        named = ", ".join(f"{provider} {what}" for provider, what in failures)
        super().__init__(f"every LLM failed ({named})", retryable=True)
        self.failures = failures


class FallbackLLM(llm.FallbackAdapter):
    """The framework's `FallbackAdapter` that also closes the LLMs it was given (the adapter's own
    `aclose` leaves their HTTP clients, and so their sockets, open), and that says when every LLM
    refused a request: the adapter itself then raises a retryable `APIConnectionError("all LLMs failed")`
    whatever the causes, so a revoked key would look like an outage. Each LLM's latest error (from a
    request or a recovery probe; cleared when it answers) is kept, and when all of them are refusals
    (`APIStatusError.retryable` false), the request fails with `LLMRefused` instead; when one of them is
    not a provider error at all (a bug in a plugin or in `CerebrasLLM`), with that error, so it is not
    taken for an outage; otherwise with `LLMsUnavailable`, which names each LLM's failure.

    It overrides two methods of the framework's `FallbackLLMStream` (`_try_generate`, `_run`): the
    adapter offers no public hook that sees each LLM's error, and its public events say only that an
    LLM became unavailable. Kept small, and pinned by the tests of both paths (tests/test_faults.py)."""

    def __init__(self, instances: list[llm.LLM], *, names: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(instances, **kwargs)
        self._owned = list(instances)
        self._names = names or [instance.provider for instance in instances]  # for logs: "cerebras", "groq"
        self.last_errors: dict[int, BaseException] = {}  # by position in `instances`

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_FALLBACK_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _FallbackStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            parallel_tool_calls=parallel_tool_calls,
            tool_choice=tool_choice,
            extra_kwargs=extra_kwargs,
        )

    def refusals(self) -> list[tuple[str, int]] | None:
        """(provider, status) per LLM if every one's latest error is a refusal, else None."""
        refusals = []
        for i in range(len(self._owned)):
            error = self.last_errors.get(i)
            if not isinstance(error, APIStatusError) or error.retryable:
                return None
            refusals.append((self._names[i], error.status_code))
        return refusals

    def failures(self) -> list[tuple[str, str]]:
        """(provider, status or kind of error) for each LLM whose latest request failed."""
        return [(self._names[i], describe_error(error)) for i, error in sorted(self.last_errors.items())]

    def unexpected_error(self) -> BaseException | None:
        """An LLM's latest error if it is not a provider error (a bug), else None."""
        for error in self.last_errors.values():
            if not isinstance(error, APIError | TimeoutError):
                return error
        return None

    async def aclose(self) -> None:
        await super().aclose()
        for instance in self._owned:
            await instance.aclose()


class _FallbackStream(FallbackLLMStream):
    _adapter: FallbackLLM

    def __init__(self, adapter: FallbackLLM, **kwargs: Any) -> None:
        super().__init__(adapter, **kwargs)
        self._adapter = adapter
        self._replied = False  # an LLM's reply to this request has begun

    async def _try_generate(
        self, *, llm: llm.LLM, check_recovery: bool = False
    ) -> AsyncIterator[llm.ChatChunk]:
        i = self._adapter._owned.index(llm)
        try:
            async for chunk in super()._try_generate(llm=llm, check_recovery=check_recovery):
                self._adapter.last_errors.pop(i, None)
                if not check_recovery and chunk.has_response():
                    self._replied = True
                yield chunk
        except Exception as e:
            self._adapter.last_errors[i] = e
            raise
        self._adapter.last_errors.pop(i, None)

    async def _run(self) -> None:
        try:
            await super()._run()
        except APIConnectionError:
            if self._replied:
                raise  # a reply broke off (the adapter does not try another LLM then): the caller resumes it
            if (bug := self._adapter.unexpected_error()) is not None:
                raise bug from None
            refusals = self._adapter.refusals()
            if refusals is not None:
                raise LLMRefused(refusals) from None
            raise LLMsUnavailable(self._adapter.failures()) from None


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


def build_stt(settings: Settings, language: str, http_session: aiohttp.ClientSession | None) -> stt.STT:
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
        instances,
        names=[p.name for p in settings.llms],
        attempt_timeout=settings.llm_attempt_timeout_s,
        max_retry_per_llm=0,
        retry_interval=0.2,
    )
    for instance, p in zip(instances, settings.llms, strict=True):
        count_errors(instance, "llm")
        count_refusals(instance, p.name)
    quiet_fallback_logs()

    def on_availability(event: llm.AvailabilityChangedEvent) -> None:
        i = instances.index(event.llm)
        name = settings.llms[i].name
        if not event.available:
            metrics.LLM_FALLBACKS.labels(llm=event.llm.provider).inc()
            error = adapter.last_errors.get(i)
            what = describe_error(error) if error is not None else "error"
            logger.warning(
                "%s failed (%s): the next LLM takes over until a probe finds it answering",
                name,
                what,
                extra={"llm": name, "error": what},
            )
        else:
            logger.info("an LLM answers again", extra={"llm": name})

    adapter.on("llm_availability_changed", on_availability)
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


class QuietFallbackLogs(logging.Filter):
    """The framework's `FallbackAdapter` logs every LLM failure it sees, each request's and each
    recovery probe's, at WARNING or ERROR ("... failed, switching to next LLM", "all LLMs are unavailable,
    retrying.."): a dozen lines per utterance in an outage, each with the provider's error body. What
    they say is reported once here instead (the translator's outage, refusal and give-up lines, the
    fallback and refusal metrics), so they go down to DEBUG. Its "failed after sending chunk" record
    also carries the translation so far (`text_sent`): that field is withheld. Its "unexpected error"
    records (a bug) stay as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.module != "fallback_adapter" or record.exc_info:
            return True
        if "text_sent" in record.__dict__:
            record.text_sent = "<withheld>"
        if record.levelno in (logging.WARNING, logging.ERROR):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_quiet_filter = QuietFallbackLogs()


def quiet_fallback_logs() -> None:
    """Install `QuietFallbackLogs` on the framework's logger (once per process)."""
    framework = logging.getLogger("livekit.agents")
    if _quiet_filter not in framework.filters:
        framework.addFilter(_quiet_filter)


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
