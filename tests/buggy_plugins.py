"""Plugins with a bug, injected where a test needs an error that is not a provider error.

A provider's faults come from the fakes at the wire; a *bug* cannot (the plugins turn everything a provider
sends into their own errors). These stand in for a plugin that raises something else: the loops must log it
with its traceback (messages withheld, since a bug's message may quote what was said) and not take it for an
outage. They are passed in where the code takes its providers (injection), never patched into our code.
"""

from __future__ import annotations

from typing import Any

from livekit.agents import APIConnectOptions, llm, stt, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer


class BuggySTT(stt.STT):
    """An STT whose streams fail with `error` as soon as they run; `streams` counts the streams opened."""

    def __init__(self, error: Exception) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True))
        self.error = error
        self.streams = 0

    @property
    def provider(self) -> str:
        return "buggy"

    async def _recognize_impl(
        self, buffer: AudioBuffer, *, language: NotGivenOr[str] = NOT_GIVEN, conn_options: APIConnectOptions
    ) -> stt.SpeechEvent:
        raise NotImplementedError("streaming only")

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        self.streams += 1
        return _FailingRecognizeStream(self, conn_options)


class _FailingRecognizeStream(stt.RecognizeStream):
    def __init__(self, owner: BuggySTT, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=owner, conn_options=conn_options)
        self._owner = owner

    async def _run(self) -> None:
        async for _ in self._input_ch:  # the bug shows once audio comes
            raise self._owner.error


class BuggyOnceTTS(tts.TTS):
    """Wraps a real TTS; the first stream opened fails with `error` (a bug, not an `APIError`), the others
    are the real TTS's."""

    def __init__(self, inner: tts.TTS, error: Exception) -> None:
        super().__init__(
            capabilities=inner.capabilities, sample_rate=inner.sample_rate, num_channels=inner.num_channels
        )
        self.inner = inner
        self.error = error
        self.streams = 0

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return self.inner.synthesize(text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.SynthesizeStream:
        self.streams += 1
        if self.streams == 1:
            return _FailingSynthesizeStream(self, conn_options)
        return self.inner.stream(conn_options=conn_options)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _FailingSynthesizeStream(tts.SynthesizeStream):
    def __init__(self, owner: BuggyOnceTTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=owner, conn_options=conn_options)
        self._owner = owner

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        async for _ in self._input_ch:  # the bug shows once text comes
            raise self._owner.error


class BrokenPluginError(RuntimeError):
    pass


class BrokenPlugin(llm.LLM):
    """An LLM plugin with a bug in its own code: every request fails with an error no provider sent."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    @property
    def provider(self) -> str:
        return "broken"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        self.requests += 1
        return _BrokenStream(self, chat_ctx=chat_ctx, tools=[], conn_options=conn_options)


class _BrokenStream(llm.LLMStream):
    async def _run(self) -> None:
        raise BrokenPluginError("a bug, not an outage")
