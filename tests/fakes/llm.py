"""An OpenAI-compatible chat-completions server for hermetic tests, shaped for both the Cerebras SDK
(`AsyncCerebras(base_url=fake.base_url)`, path `/v1/chat/completions`) and the livekit openai plugin
pointed at Groq (`openai.LLM(base_url=fake.openai_base_url)`, path `/openai/v1/chat/completions`).

Any POST path ending in `/chat/completions` is served; GET `.../models` lists one model and
GET `/v1/tcp_warming` answers 200 (the Cerebras SDK's connection warm-up).

Refusals as the real APIs send them, before any fault is consumed: a body that is not a chat request
(not JSON, no `model` string, no `messages` list) gets 400; with `api_key` set, any other key gets 401;
with `models` set, any other model gets 404. Their bodies follow each API's documented error shape:
`{"error": {"message", "type", "param", "code"}}` on the OpenAI-compatible path (Groq), the same fields at
the top level on Cerebras' `/v1/...` path. A reply longer than the request's `max_completion_tokens`
(or `max_tokens`), or than the fake's own `max_tokens`, is cut there with `finish_reason: "length"`
(content pieces stand for tokens), and a cut by the request's limit reports that limit as its
`completion_tokens`, as a real cut does.

Errors inside an open stream (`error_next_after`): after the 200 headers and some content, an event
`data: {"error": {"message", "type", "param", "code"}}` and the end of the stream, as OpenAI-compatible
APIs send it; both SDKs (openai's and Cerebras') raise on exactly this shape (a `data` object with an
`error` member), so the fake sends it on both paths.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes._server import FakeServer, abort_connection
from tests.fakes.latency_model import Delay

logger = logging.getLogger(__name__)

Message = dict[str, Any]
Responder = Callable[[list[Message]], str]


@dataclass(frozen=True)
class LLMRequest:
    """One chat-completions request as the fake received it."""

    path: str
    model: str | None
    messages: list[Message]
    reasoning_effort: str | None
    stream: bool
    authorization: str | None
    body: dict[str, Any]
    fault: str | None = None  # "fail" | "hang" | "drop" | "cut" | "error" when a scripted fault answered it
    status: int = 200  # the HTTP status it answered with
    finish_reason: str | None = None  # of a reply it sent to the end ("stop", or "length" when cut)
    ttft_s: float = 0.0  # the time to first token (or to the whole non-streamed reply) the fake waited
    reply: str = ""  # the reply content it answered with (for "drop", the part sent before the drop)


@dataclass(frozen=True)
class _Fail:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class _Hang:
    send_headers: bool


@dataclass(frozen=True)
class _DropAfter:
    tokens: int


@dataclass(frozen=True)
class _CutAfter:
    tokens: int


@dataclass(frozen=True)
class _ErrorAfter:
    tokens: int
    error: dict[str, Any]


_Fault = _Fail | _Hang | _DropAfter | _CutAfter | _ErrorAfter
_FAULT_NAMES = {_Fail: "fail", _Hang: "hang", _DropAfter: "drop", _CutAfter: "cut", _ErrorAfter: "error"}


def message_text(message: Message) -> str:
    """The text of a chat message whose content is a string or a list of `{"type": "text"}` parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def last_user_text(messages: list[Message]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def split_tokens(text: str, max_chars: int = 4) -> list[str]:
    """Token-like pieces of at most `max_chars` visible characters that join back to `text`."""
    return re.findall(rf"\s*\S{{1,{max_chars}}}|\s+$", text)


class FakeLLM(FakeServer):
    """Replies with `responder(messages)`; by default with the first `translations` value whose key
    occurs in the last user message, else `"[translated] <last user message>"`.

    Time to first token: `ttft` sampled per request with the fake's `random.Random(seed)` when given, else
    `ttft_for(messages)` when given, else `ttft_s`; then one content piece every `1 / tokens_per_s`.
    """

    def __init__(
        self,
        *,
        translations: Mapping[str, str] | None = None,
        responder: Responder | None = None,
        ttft_s: float = 0.0,
        ttft_for: Callable[[list[Message]], float] | None = None,
        tokens_per_s: float | None = None,
        reasoning: str | None = None,
        max_token_chars: int = 4,
        ttft: Delay | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.translations = dict(translations or {})
        self.responder: Responder = responder or self._translate
        self.ttft_s = ttft_s
        self.ttft_for = ttft_for  # per-request time to first token, from the request's messages
        self.ttft = ttft
        self.rng = random.Random(seed)
        self.tokens_per_s = tokens_per_s
        self.reasoning = reasoning
        self.resume_repeats = False  # asked to continue, start over (as some models do)
        self.outage_status: int | None = None  # while set, every request fails with it (an outage)
        self.whole_reply = False  # stream the reply as one content chunk (as some providers may)
        self.api_key: str | None = None  # when set, any other key is refused (401)
        self.models: set[str] | None = None  # when set, any other model is refused (404)
        self.max_tokens: int | None = None  # when set, replies stop after this many content pieces ("length")
        self.max_token_chars = max_token_chars
        self.requests: list[LLMRequest] = []
        self.usage_sent: list[dict[str, Any]] = []  # the token counts of every usage field sent (billed)
        self._faults: deque[_Fault] = deque()

    def _setup(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

    @property
    def base_url(self) -> str:
        """Root URL, for `AsyncCerebras(base_url=...)`."""
        return self.root_url

    @property
    def openai_base_url(self) -> str:
        """Groq-style URL, for `livekit.plugins.openai.LLM(base_url=...)`."""
        return f"{self.root_url}/openai/v1"

    def _translate(self, messages: list[Message]) -> str:
        """The scripted translation of the speech; asked to continue a reply that broke off (an
        assistant turn after the speech, then a plain user turn), the rest of it after that part,
        or the whole of it again when `resume_repeats` (a model that starts over)."""
        speech = next(
            (i for i in range(len(messages) - 1, -1, -1) if "<speech" in message_text(messages[i])), None
        )
        text = message_text(messages[speech]) if speech is not None else last_user_text(messages)
        full = next((t for s, t in self.translations.items() if s in text), f"[translated] {text}")
        said = [m for m in messages[(speech or 0) + 1 :] if m.get("role") == "assistant"]
        if not said or self.resume_repeats:
            return full
        prefix = message_text(said[-1]).strip()
        return full[len(prefix) :].strip() if full.startswith(prefix) else full

    # faults, consumed one per chat-completions request, in the order they were scripted

    def fail_next(self, status: int, n: int = 1, body: dict[str, Any] | None = None) -> None:
        """Answer the next `n` requests with HTTP `status` and a JSON error body, before any token."""
        error = body or {
            "error": {"message": "scripted failure", "type": "server_error", "code": str(status)}
        }
        self._faults.extend(_Fail(status, error) for _ in range(n))

    def hang_next(self, n: int = 1, *, send_headers: bool = False) -> None:
        """Accept the next `n` requests and then send nothing (optionally after the 200 headers)
        until the client gives up."""
        self._faults.extend(_Hang(send_headers) for _ in range(n))

    def drop_next_after(self, tokens: int, n: int = 1) -> None:
        """Stream `tokens` content chunks of the next `n` replies, then abort the connection."""
        self._faults.extend(_DropAfter(tokens) for _ in range(n))

    def cut_next_after(self, tokens: int, n: int = 1) -> None:
        """End the next `n` replies after `tokens` content chunks with `finish_reason: "length"` (the
        token limit reached)."""
        self._faults.extend(_CutAfter(tokens) for _ in range(n))

    def error_next_after(self, tokens: int, n: int = 1, *, code: str = "internal_server_error") -> None:
        """Stream `tokens` content chunks of the next `n` replies (0: none), then an error object
        inside the open stream, then end it."""
        error = {"message": "The server had an error while processing your request.", "type": "server_error"}
        self._faults.extend(
            _ErrorAfter(tokens, {"error": {**error, "param": None, "code": code}}) for _ in range(n)
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.endswith("/chat/completions") and request.method == "POST":
            return await self._chat(request)
        if path.endswith("/models") and request.method == "GET":
            return web.json_response(
                {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "fake"}]}
            )
        if path.endswith("/tcp_warming"):
            return web.Response(text="OK")
        return web.json_response({"error": {"message": "not found", "type": "not_found"}}, status=404)

    def _sample_ttft(self, messages: list[Message]) -> float:
        if self.ttft is not None:
            return self.ttft.sample(self.rng)
        if self.ttft_for is not None:
            return max(0.0, self.ttft_for(messages))
        return max(0.0, self.ttft_s)

    def _refusal(self, request: web.Request, body: Any) -> _Fail | None:
        """The API's answer to a request it refuses (see the module's docstring), else None."""

        def refuse(status: int, message: str, kind: str, code: str | None, param: str | None = None) -> _Fail:
            error = {"message": message, "type": kind, "param": param, "code": code}
            return _Fail(status, error if request.path.startswith("/v1/") else {"error": error})

        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return refuse(400, "'model' is a required property", "invalid_request_error", None, "model")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return refuse(
                400, "'messages' must be a non-empty array", "invalid_request_error", None, "messages"
            )
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return refuse(401, "Invalid API Key", "invalid_request_error", "invalid_api_key")
        if self.models is not None and body["model"] not in self.models:
            message = f"The model `{body['model']}` does not exist or you do not have access to it."
            return refuse(404, message, "invalid_request_error", "model_not_found")
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            parsed: Any = await request.json()
        except ValueError:
            parsed = None
        refused = self._refusal(request, parsed)
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        if refused is not None:
            self.requests.append(
                LLMRequest(
                    path=request.path,
                    model=body.get("model") if isinstance(body.get("model"), str) else None,
                    messages=list(body.get("messages") or [])
                    if isinstance(body.get("messages"), list)
                    else [],
                    reasoning_effort=body.get("reasoning_effort"),
                    stream=bool(body.get("stream", False)),
                    authorization=request.headers.get("Authorization"),
                    body=body,
                    status=refused.status,
                )
            )
            logger.info("fake llm: refusing a request with %d", refused.status)
            return web.json_response(refused.body, status=refused.status)
        fault = self._faults.popleft() if self._faults else None
        if self.outage_status is not None:
            fault = _Fail(self.outage_status, {"error": {"message": "outage", "type": "server_error"}})
        stream = bool(body.get("stream", False))
        messages: list[Message] = list(body.get("messages", []))
        ttft_s, reply = 0.0, ""
        if not isinstance(fault, _Fail | _Hang):
            reply = self.responder(messages)
            ttft_s = self._sample_ttft(messages)
        limit = self._limit(body)
        stop_after: int | None = None  # content pieces sent before the reply ends as `ending` says
        ending = "stop"
        if isinstance(fault, _DropAfter | _ErrorAfter | _CutAfter):
            stop_after, ending = (
                fault.tokens,
                {_DropAfter: "drop", _ErrorAfter: "error", _CutAfter: "length"}[type(fault)],
            )
        elif fault is None and limit is not None and len(split_tokens(reply, self.max_token_chars)) > limit:
            stop_after, ending = limit, "length"
        finish_reason = (
            ending if ending in ("stop", "length") and not isinstance(fault, _Fail | _Hang) else None
        )
        sent = reply
        if stop_after is not None:
            sent = "".join(split_tokens(reply, self.max_token_chars)[:stop_after])
        self.requests.append(
            LLMRequest(
                path=request.path,
                model=body.get("model"),
                messages=messages,
                reasoning_effort=body.get("reasoning_effort"),
                stream=stream,
                authorization=request.headers.get("Authorization"),
                body=body,
                fault=_FAULT_NAMES[type(fault)] if fault else None,
                status=fault.status if isinstance(fault, _Fail) else 200,
                finish_reason=finish_reason,
                ttft_s=ttft_s,
                reply=sent if stream or finish_reason == "length" else reply,
            )
        )
        if isinstance(fault, _Fail):
            logger.info("fake llm: failing a request with %d", fault.status)
            return web.json_response(fault.body, status=fault.status)
        if isinstance(fault, _Hang):
            logger.info("fake llm: hanging a request")
            return await self._hang(request, fault)

        if not stream:
            await asyncio.sleep(ttft_s)
            return web.json_response(self._completion(body, reply, limit))
        error = fault.error if isinstance(fault, _ErrorAfter) else None
        request_limit = self._request_limit(body)
        # a cut by the token limit the request asked for used all of it (a scripted cut stands for one)
        cut_by_request = ending == "length" and (isinstance(fault, _CutAfter) or limit == request_limit)
        used = request_limit if cut_by_request else None
        try:
            return await self._stream(request, body, reply, stop_after, ttft_s, ending, error, used)
        except ConnectionError:  # the client went away mid-stream
            return web.Response(status=499)

    def _request_limit(self, body: dict[str, Any]) -> int | None:
        for key in ("max_completion_tokens", "max_tokens"):
            value = body.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    def _limit(self, body: dict[str, Any]) -> int | None:
        """Content pieces a reply may have: the request's limit and the fake's own, the lower."""
        limits = [x for x in (self._request_limit(body), self.max_tokens) if x is not None]
        return min(limits) if limits else None

    async def _hang(self, request: web.Request, fault: _Hang) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        if fault.send_headers:
            await response.prepare(request)
        await self._wait_until_client_gone(request)
        return response if fault.send_headers else web.Response(status=504)

    def _completion(self, body: dict[str, Any], reply: str, limit: int | None) -> dict[str, Any]:
        pieces = split_tokens(reply, self.max_token_chars)
        finish_reason = "length" if limit is not None and len(pieces) > limit else "stop"
        if finish_reason == "length":
            reply = "".join(pieces[:limit])
        message: dict[str, Any] = {"role": "assistant", "content": reply}
        if self.reasoning:
            message["reasoning"] = self.reasoning
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "fake-model",
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": self._usage(body, len(split_tokens(reply, self.max_token_chars))),
        }

    def _usage(self, body: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
        prompt_tokens = sum(len(message_text(m).split()) for m in body.get("messages", []))
        reasoning_tokens = len(split_tokens(self.reasoning, self.max_token_chars)) if self.reasoning else 0
        completion_tokens += reasoning_tokens
        self.usage_sent.append({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens})
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        }

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        reply: str,
        stop_after: int | None,
        ttft_s: float,
        ending: str = "stop",
        error: dict[str, Any] | None = None,
        used_tokens: int | None = None,
    ) -> web.StreamResponse:
        """`stop_after`: content pieces sent before the reply ends as `ending` says: "drop" (the
        connection aborted), "error" (`error` sent inside the stream, then its end), "length"
        (`finish_reason: "length"`); "stop" sends the whole reply. `used_tokens`: the usage's
        completion tokens, when not the pieces sent."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model") or "fake-model",
            "system_fingerprint": "fp_fake",
        }

        async def send(payload: dict[str, Any]) -> None:
            await response.write(f"data: {json.dumps({**base, **payload})}\n\n".encode())

        def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

        await asyncio.sleep(ttft_s)
        pieces = [("reasoning", p) for p in split_tokens(self.reasoning or "", self.max_token_chars)]
        whole = self.whole_reply and reply and (stop_after is None or ending != "length")
        content = [reply] if whole else split_tokens(reply, self.max_token_chars)
        pieces += [("content", p) for p in content]
        sent_content = 0
        for i, (kind, piece) in enumerate(pieces):
            if kind == "content" and stop_after is not None and sent_content >= stop_after:
                break
            if i and self.tokens_per_s:
                await asyncio.sleep(1 / self.tokens_per_s)
            delta: dict[str, Any] = {kind: piece}
            if i == 0:
                delta["role"] = "assistant"
            await send(choice(delta))
            if kind == "content":
                sent_content += 1
        if ending == "drop":
            logger.info("fake llm: dropping a stream after %d content chunks", sent_content)
            abort_connection(request)
            return response
        if ending == "error":
            logger.info("fake llm: an error inside the stream after %d content chunks", sent_content)
            await response.write(f"data: {json.dumps(error)}\n\n".encode())
            await response.write_eof()
            return response

        completion_tokens = sent_content if used_tokens is None else used_tokens
        await send(choice({} if pieces else {"role": "assistant", "content": ""}, ending))
        await send({"choices": [], "usage": self._usage(body, completion_tokens)})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
