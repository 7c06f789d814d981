"""Cartesia's websocket error frames, made visible to the Cartesia plugin.

Cartesia documents an error on the websocket as `{"type": "error", "done": true, "status_code",
"error_code", "title", "message", "request_id", "context_id"}`, `done` always true. The 1.8.9 plugin
reads `done` before `type`: an error frame ends the clause's stream as if it were complete. Before any
audio the framework then sees a stream with no audio and retries it, but after some audio the rest of
the clause is lost without a trace: the clause counts as spoken, its audio cut short.

`CartesiaSocket` (the `ws_response_class` of the session the plugin is given, a public aiohttp hook)
hands the plugin each error frame without `done`, so the plugin raises its `APIError` for it: the
framework retries a clause that produced no audio, and the brain synthesizes again a clause that broke
off after some (the listener hears it once, counted in `interpreter_tts_clause_retries_total`), or fails
the utterance (counted, the `tts` fault shown, the caption published in full). The frame keeps its codes
and ids and loses Cartesia's `title` and `message`, which the plugin would log and which may quote the
request.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from livekit.plugins import cartesia

_KEPT = ("type", "status_code", "error_code", "request_id", "context_id")


class CartesiaSocket(aiohttp.ClientWebSocketResponse):
    async def receive(self, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (aiohttp's signature)
        msg = await super().receive(timeout)
        if msg.type is aiohttp.WSMsgType.TEXT and isinstance(msg.data, str) and "error" in msg.data:
            try:
                data = json.loads(msg.data)
            except ValueError:
                return msg
            if isinstance(data, dict) and data.get("type") == "error":
                return msg._replace(data=json.dumps({k: data[k] for k in _KEPT if k in data}))
        return msg


def cartesia_session(shared: aiohttp.ClientSession | None) -> aiohttp.ClientSession:
    """A session for the Cartesia plugin whose websockets are `CartesiaSocket`s; it uses `shared`'s
    connection pool when given (and leaves it open), else its own."""
    if shared is not None:
        return aiohttp.ClientSession(
            connector=shared.connector, connector_owner=False, ws_response_class=CartesiaSocket
        )
    return aiohttp.ClientSession(ws_response_class=CartesiaSocket)


class CartesiaTTS(cartesia.TTS):
    """The Cartesia plugin on a `cartesia_session`, closed with it."""

    def __init__(self, *, http_session: aiohttp.ClientSession, **kwargs: Any) -> None:
        super().__init__(http_session=http_session, **kwargs)
        self._own_session = http_session

    async def aclose(self) -> None:
        await super().aclose()
        await self._own_session.close()
