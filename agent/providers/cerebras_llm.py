"""Cerebras through its own SDK (`AsyncCerebras`), wrapped as a `livekit.agents.llm.LLM`.

Wrapping it as a framework LLM lets it compose with `FallbackLLM` (Cerebras first, Groq next).
Retries live in the framework's `APIConnectOptions` and in `FallbackLLM`: the client is built with
`max_retries=0`, and SDK errors are mapped onto the framework's retryable error hierarchy.

The SDK's `warm_tcp_connection=True` makes a blocking synchronous request in its constructor (and in
every `with_options()`), stalling the event loop and leaving the async pool cold. Build the client
with `warm_tcp_connection=False` and call `prewarm()`, which warms the async pool without blocking.
"""

from __future__ import annotations

from typing import Any

import httpx
from cerebras.cloud import sdk as cerebras
from livekit.agents import (
    NOT_GIVEN,
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    NotGivenOr,
    llm,
)
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from agent.providers.llm_replies import FINISH_REASON, MAX_COMPLETION_TOKENS


class CerebrasLLM(llm.LLM):
    def __init__(
        self,
        *,
        client: cerebras.AsyncCerebras,
        model: str = "gpt-oss-120b",
        reasoning_effort: str | None = "low",
        temperature: float | None = 0.2,
        max_completion_tokens: int = MAX_COMPLETION_TOKENS,
    ) -> None:
        super().__init__()
        self._client = client
        # the SDK imports its chat resources (~35 ms of module and model set-up) on first use: do it
        # now, at start-up, rather than on the event loop in the middle of the first translation
        self._completions = client.chat.completions
        self._model = model
        self._reasoning_effort = reasoning_effort
        self._temperature = temperature
        self._max_completion_tokens = max_completion_tokens

    @property
    def model(self) -> str:
        return self._model

    @property
    def provider(self) -> str:
        return "cerebras"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> CerebrasLLMStream:
        if tools:
            raise ValueError("CerebrasLLM here translates text; tools are not supported")
        return CerebrasLLMStream(self, chat_ctx=chat_ctx, conn_options=conn_options)

    async def _prewarm_impl(self) -> None:
        # one cheap request through the async pool: DNS + TLS + a kept-alive connection
        await self._client.get("/v1/tcp_warming", cast_to=str, options={"timeout": 2.0, "max_retries": 0})

    async def aclose(self) -> None:
        await super().aclose()
        await self._client.close()


class CerebrasLLMStream(llm.LLMStream):
    def __init__(
        self, cerebras_llm: CerebrasLLM, *, chat_ctx: llm.ChatContext, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(cerebras_llm, chat_ctx=chat_ctx, tools=[], conn_options=conn_options)
        self._cerebras = cerebras_llm

    async def _run(self) -> None:
        opts = self._cerebras
        messages, _ = self._chat_ctx.to_provider_format(format="openai")
        kwargs: dict[str, Any] = {"max_completion_tokens": opts._max_completion_tokens}
        if opts._reasoning_effort:
            kwargs["reasoning_effort"] = opts._reasoning_effort
        if opts._temperature is not None:
            kwargs["temperature"] = opts._temperature
        retryable = True  # false once content was emitted: a retry would repeat it
        try:
            stream: Any = await opts._completions.create(
                messages=messages,  # type: ignore[arg-type]
                model=opts._model,
                stream=True,
                stream_options={"include_usage": True},
                timeout=httpx.Timeout(self._conn_options.timeout),
                **kwargs,
            )
            async for chunk in stream:
                chunk_id = getattr(chunk, "id", "") or ""
                for choice in getattr(chunk, "choices", None) or []:
                    content = choice.delta.content if choice.delta else None
                    finish_reason = getattr(choice, "finish_reason", None)
                    if content or finish_reason == "length":  # a reply cut by the token limit says so
                        retryable = retryable and not content
                        extra = {FINISH_REASON: finish_reason} if finish_reason == "length" else None
                        self._event_ch.send_nowait(
                            llm.ChatChunk(
                                id=chunk_id,
                                delta=llm.ChoiceDelta(role="assistant", content=content, extra=extra),
                            )
                        )
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    self._event_ch.send_nowait(
                        llm.ChatChunk(
                            id=chunk_id,
                            usage=llm.CompletionUsage(
                                completion_tokens=usage.completion_tokens or 0,
                                prompt_tokens=usage.prompt_tokens or 0,
                                total_tokens=usage.total_tokens or 0,
                            ),
                        )
                    )
        except (cerebras.APITimeoutError, httpx.TimeoutException) as e:
            raise APITimeoutError(retryable=retryable) from e
        except cerebras.APIStatusError as e:
            # also an error object inside the open stream (then with the stream's status, 200)
            raise APIStatusError(
                "cerebras request failed",
                status_code=e.status_code,
                request_id=e.response.headers.get("x-request-id"),
                body=None,  # the body may echo the prompt: keep it out of errors and logs
                retryable=retryable,
            ) from None
        except (cerebras.APIError, httpx.HTTPError, OSError) as e:
            # the connection failed or broke off, or a reply the SDK could not read; anything else is a
            # bug (here or in the SDK) and is raised as it is, not taken for an outage
            raise APIConnectionError("cerebras connection failed", retryable=retryable) from e
