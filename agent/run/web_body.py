"""A token request's body, read as the page sends it, and refused before it costs anything when it is not:
JSON by its Content-Type (415 otherwise: a cross-site form cannot post JSON without the browser asking this
server first), never compressed (415: a few MB of gzip are gigabytes inflated, and aiohttp inflates even a
body left unread, reading what a handler left before it closes the connection; `create_app` turns inflating
off), at most MAX_BODY_BYTES (413: never read further), whole within BODY_TIMEOUT_S (408: a body that
trickles in does not hold its request open), readable (400: a client gone mid-body) and valid JSON (400).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

MAX_BODY_BYTES = 16 * 1024
# a token request's body is a few hundred bytes: one that has not come whole by then never will
BODY_TIMEOUT_S = 10.0


class Refused(Exception):
    """A request answered with `status` and `{"error": message}`; `reason` is what the log says."""

    def __init__(self, status: int, message: str, reason: str, *, retry_after_s: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.retry_after_s = retry_after_s  # a 429's Retry-After


async def read_json_body(request: web.Request) -> object:
    """The request's JSON body, or `Refused` naming what is wrong with it."""
    if request.content_type != "application/json":
        raise Refused(415, "the body must be JSON (Content-Type: application/json)", "not JSON content")
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise Refused(415, "the body must not be compressed", "body compressed")
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(413, f"the body must be at most {MAX_BODY_BYTES} bytes", "body too large") from None
    except TimeoutError:
        raise Refused(408, "the body came too slowly", "body too slow") from None
    except (web.RequestPayloadError, ConnectionError):  # a bad chunked encoding, a client gone mid-body
        raise Refused(400, "the body could not be read", "body unreadable") from None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused(400, "the body must be JSON", "body not JSON") from None
