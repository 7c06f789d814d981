"""LLMs in order of preference (Cerebras, then Groq), as one framework LLM, on the framework's public
plugin interface (an `llm.LLM` whose stream implements `_run`).

- A request goes to the first LLM that is available. One that fails before its reply begins (an
  `APIError` or a timeout: 5xx, 429, a refusal, no answer within `attempt_timeout`) is marked
  unavailable (`llm_availability_changed`, logged once) and the next is asked. An unavailable LLM is
  probed in the background with the request it missed, and is available again once it answers.
  When every LLM is unavailable, each is asked again in order.
- A reply that breaks off after it began is not asked of another LLM here (that would repeat it): the
  error is raised, and the translator continues the reply from what was said (`loops/brain/translate.py`).
- When every LLM failed a request, the error says why: `LLMRefused` when each one's latest error is a
  refusal (an `APIStatusError` the framework calls not retryable: 400, 401, 403, 404, 422...), asking
  again cannot help; else `LLMsUnavailable`, an outage worth waiting out, naming each LLM's failure.
- An error that is not a provider's (a bug in a plugin) is raised as itself at once, never taken for an
  outage or hidden behind another LLM's answer.

It replaces the framework's `llm.FallbackAdapter`, which ends every failed request with a retryable
`APIConnectionError("all LLMs failed")` whatever the causes (a revoked key looked like an outage),
offers no public way to see each LLM's error, logs every failed attempt and probe at WARNING (a dozen
lines per utterance in an outage) and puts the reply so far (`text_sent`) in a log record.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from livekit.agents import (
    NOT_GIVEN,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    NotGivenOr,
    llm,
)

from agent.providers.llm_replies import describe_error
from agent.telemetry import metrics
from agent.telemetry.usage import count_llm

logger = logging.getLogger("agent.providers")

DEFAULT_CONN_OPTIONS = APIConnectOptions(max_retry=0, timeout=10.0)  # retries are across LLMs


class LLMRefused(APIStatusError):
    """Every LLM refused the request (a status the framework does not retry: 400, 401, 403, 404, 422...):
    asking again cannot help. `refusals`: (provider, status) per LLM, in order."""

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


def _is_provider_error(error: BaseException) -> bool:
    return isinstance(error, APIError | TimeoutError)


class FallbackLLM(llm.LLM[Literal["llm_availability_changed"]]):
    """`instances` in order of preference, named `names` in logs and metrics ("cerebras", "groq").
    Each attempt gets `attempt_timeout` (the plugins' read timeout: no token within it fails it)."""

    def __init__(
        self, instances: list[llm.LLM], *, names: list[str] | None = None, attempt_timeout: float = 5.0
    ) -> None:
        if not instances:
            raise ValueError("at least one LLM is needed")
        super().__init__()
        self.instances = list(instances)
        self.names = names or [instance.provider for instance in instances]
        self._attempt = APIConnectOptions(max_retry=0, timeout=attempt_timeout)
        self.available = [True] * len(instances)
        self.last_errors: dict[int, BaseException] = {}  # each LLM's latest error, until it answers
        self._probes: list[asyncio.Task[None] | None] = [None] * len(instances)
        for instance in self.instances:
            instance.on("metrics_collected", self._forward_metrics)

    @property
    def model(self) -> str:
        return self.instances[self._next()].model

    @property
    def provider(self) -> str:
        return self.instances[self._next()].provider

    def _next(self) -> int:
        return next((i for i, up in enumerate(self.available) if up), 0)

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_CONN_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        if tools:
            raise ValueError("FallbackLLM here translates text; tools are not supported")
        return _FallbackStream(self, chat_ctx=chat_ctx, conn_options=conn_options)

    def prewarm(self, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Warm the first LLM's connection (the others serve only when it fails)."""
        self.instances[0].prewarm(loop=loop)

    def attempt(self, i: int, chat_ctx: llm.ChatContext) -> llm.LLMStream:
        return self.instances[i].chat(chat_ctx=chat_ctx, conn_options=self._attempt)

    def count(self, i: int, chunk: llm.ChatChunk) -> None:
        """LLM `i`'s usage, as its provider reported it (its last chunk), in the channel asking."""
        if chunk.usage is not None:
            usage = chunk.usage
            count_llm(self.names[i], self.instances[i].model, usage.prompt_tokens, usage.completion_tokens)

    def answered(self, i: int) -> None:
        self.last_errors.pop(i, None)
        if not self.available[i]:
            self.available[i] = True
            logger.info("%s answers again", self.names[i], extra={"llm": self.names[i]})
            self.emit("llm_availability_changed", llm.AvailabilityChangedEvent(self.instances[i], True))

    def failed(self, i: int, error: BaseException) -> None:
        self.last_errors[i] = error
        if self.available[i]:
            self.available[i] = False
            what = describe_error(error)
            metrics.LLM_FALLBACKS.labels(llm=self.names[i]).inc()
            logger.warning(
                "%s failed (%s): not asked again until a probe finds it answering",
                self.names[i],
                what,
                extra={"llm": self.names[i], "error": what},
            )
            self.emit("llm_availability_changed", llm.AvailabilityChangedEvent(self.instances[i], False))

    def probe(self, i: int, chat_ctx: llm.ChatContext) -> None:
        """Ask the unavailable LLM `i` a request in the background (one probe at a time)."""
        task = self._probes[i]
        if task is None or task.done():
            self._probes[i] = asyncio.create_task(self._probe(i, chat_ctx), name=f"llm-probe-{self.names[i]}")

    async def _probe(self, i: int, chat_ctx: llm.ChatContext) -> None:
        try:
            async with self.attempt(i, chat_ctx) as stream:
                async for chunk in stream:
                    self.count(i, chunk)  # a probe is billed too
        except Exception as e:  # still failing (noted); the next request that skips it probes again
            self.last_errors[i] = e
            return
        self.answered(i)

    def all_failed(self) -> Exception:
        """The error for a request every LLM failed (each one's latest error says why)."""
        errors = [self.last_errors.get(i) for i in range(len(self.instances))]
        refusals = [
            (self.names[i], e.status_code)
            for i, e in enumerate(errors)
            if isinstance(e, APIStatusError) and not e.retryable
        ]
        if len(refusals) == len(self.instances):
            return LLMRefused(refusals)
        return LLMsUnavailable(
            [(self.names[i], describe_error(e)) for i, e in enumerate(errors) if e is not None]
        )

    def _forward_metrics(self, *args: Any, **kwargs: Any) -> None:
        self.emit("metrics_collected", *args, **kwargs)

    async def aclose(self) -> None:
        probes = [task for task in self._probes if task is not None]
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        for instance in self.instances:
            instance.off("metrics_collected", self._forward_metrics)
            await instance.aclose()


class _FallbackStream(llm.LLMStream):
    def __init__(
        self, fallback: FallbackLLM, *, chat_ctx: llm.ChatContext, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(fallback, chat_ctx=chat_ctx, tools=[], conn_options=conn_options)
        self._fallback = fallback

    async def _run(self) -> None:
        fallback = self._fallback
        everyone_down = not any(fallback.available)
        for i in range(len(fallback.instances)):
            if not (fallback.available[i] or everyone_down):
                fallback.probe(i, self._chat_ctx)
                continue
            replied = False
            try:
                async with fallback.attempt(i, self._chat_ctx) as stream:
                    async for chunk in stream:
                        replied = replied or chunk.has_response()
                        fallback.count(i, chunk)
                        self._event_ch.send_nowait(chunk)
            except Exception as e:
                if not _is_provider_error(e):
                    raise  # a bug: surfaced as itself, not taken for an outage
                fallback.failed(i, e)
                if replied:
                    raise  # the reply broke off: continued by the caller, not repeated by another LLM
                if not everyone_down:  # (when every LLM is down, each request asks each of them)
                    fallback.probe(i, self._chat_ctx)
                continue
            fallback.answered(i)
            return
        raise fallback.all_failed()
