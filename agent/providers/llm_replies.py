"""What an LLM's reply and errors say, in terms every provider shares.

- A reply cut by the token limit: the OpenAI-compatible APIs end it with `finish_reason: "length"`.
  `CerebrasLLM` passes that on in the chunk's `delta.extra`; the openai plugin (Groq) drops
  `finish_reason`, but a cut by the limit we asked for (`MAX_COMPLETION_TOKENS`, sent with every
  request) shows in the usage: all of those tokens used. (A cut for another reason, the model's context
  running out, is seen only from Cerebras.)
- A failure, described for a log line: the HTTP status, or what kind of failure it was. Never the
  error's message or body (they may echo the request, and so what was said).
"""

from __future__ import annotations

from livekit.agents import APIConnectionError, APIStatusError, APITimeoutError, llm

MAX_COMPLETION_TOKENS = 1024  # per request, reasoning included: far above a translated utterance's
FINISH_REASON = "finish_reason"  # the key in a chunk's `delta.extra` that carries it


def reply_was_cut(chunk: llm.ChatChunk) -> bool:
    """True if this chunk says its reply was cut by the token limit."""
    if chunk.delta is not None and chunk.delta.extra and chunk.delta.extra.get(FINISH_REASON) == "length":
        return True
    return chunk.usage is not None and chunk.usage.completion_tokens >= MAX_COMPLETION_TOKENS


def describe_error(error: BaseException) -> str:
    """`503`, `timeout`, `connection error`, or the error's type: what a log line may say about it."""
    if isinstance(error, APIStatusError):
        return str(error.status_code)
    if isinstance(error, APITimeoutError | TimeoutError):
        return "timeout"
    if isinstance(error, APIConnectionError):
        return "connection error"
    return type(error).__name__
