"""Signed invite links and host keys: who may join a room of the page, in which role, until when.

An invite is `base64url(JSON {"room", "role", "exp", "language"?}) + "." + base64url(HMAC-SHA256)`, without
padding. The room is the full LiveKit room name (the page's prefix included), the role `listener`, `speaker`
or `host`, `exp` unix seconds, `language` (a listener's link only) the language the page picks first. The
page reads it from the link's fragment (`/#invite=…`: a fragment is never sent to a server, so it is in no
`Referer` nor any proxy's log) and posts it to `/api/token`, which takes the room and role from it alone.

A host key is the same shape, signed with another key: the page gets one with a host's join token and sends
it as `Authorization: Bearer` to the host's endpoints (`agent/run/web_host.py`). A host key is not an invite,
nor an invite a host key: each key is derived for its one use.

The keys are derived from `WEB_INVITE_SECRET`, else from `LIVEKIT_API_SECRET` (no new secret to keep;
rotating either revokes every link and host key): HMAC-SHA256(secret, "interpreter-invite-v1") for invites,
(secret, "interpreter-host-v1") for host keys. Signatures are compared in constant time, before the payload
is even parsed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Literal

from agent.language.codes import SUPPORTED_LANGUAGES

Role = Literal["listener", "speaker", "host"]
ROLES: tuple[Role, ...] = ("listener", "speaker", "host")
ROOM_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a room's name under the prefix
MAX_INVITE_CHARS = 1024
MIN_INVITE_S, MAX_INVITE_S = 60, 30 * 24 * 3600  # a link lasts a minute to 30 days
HOST_KEY_TTL_S = (
    12 * 3600
)  # a host key outlasts the longest meeting; the join token does not (WEB_TOKEN_TTL_S)
INVITE_PURPOSE, HOST_PURPOSE = b"interpreter-invite-v1", b"interpreter-host-v1"


class BadInvite(Exception):
    """Why an invite (or a host key) is refused: `reason` for the log, the message for the person."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Invite:
    room: str  # the full room name, the prefix included
    role: Role
    exp: int  # unix seconds
    language: str | None = None  # a listener's link: the language the page picks first


def derive_key(secret: str, purpose: bytes) -> bytes:
    return hmac.new(secret.encode(), purpose, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: bytes, invite: Invite) -> str:
    payload = {"room": invite.room, "role": invite.role, "exp": invite.exp}
    if invite.language is not None:
        payload["language"] = invite.language
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return body + "." + _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


def in_prefix(room: str, prefix: str) -> bool:
    """`room` is one of the page's own: its prefix, then a room name."""
    return room.startswith(prefix) and ROOM_NAME_RE.fullmatch(room[len(prefix) :]) is not None


def verify(key: bytes, text: object, *, now_s: float, prefix: str, what: str = "invite link") -> Invite:
    """The invite `text` carries, if `key` signed it, it has not expired, and its room is under `prefix`;
    else `BadInvite` naming why."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_INVITE_CHARS or text.count(".") != 1:
        raise BadInvite(f"the {what} is malformed: copy the whole link", "invite malformed")
    body, signature = text.split(".")
    try:
        given = _unb64(signature)
    except (ValueError, binascii.Error):
        raise BadInvite(f"the {what} is malformed: copy the whole link", "invite malformed") from None
    if not hmac.compare_digest(given, hmac.new(key, body.encode(), hashlib.sha256).digest()):
        raise BadInvite(f"the {what} is not valid: ask the host for a new one", "invite forged")
    try:  # signed by us: what follows only guards against our own mistakes
        payload = json.loads(_unb64(body))
        room, role, exp = payload["room"], payload["role"], payload["exp"]
        language = payload.get("language")
    except (ValueError, binascii.Error, TypeError, KeyError):
        raise BadInvite(f"the {what} is malformed: copy the whole link", "invite malformed") from None
    if not isinstance(room, str) or role not in ROLES or not isinstance(exp, int):
        raise BadInvite(f"the {what} is malformed: copy the whole link", "invite malformed")
    if language is not None and language not in SUPPORTED_LANGUAGES:
        raise BadInvite(f"the {what} is malformed: copy the whole link", "invite malformed")
    if exp <= now_s:
        raise BadInvite(f"the {what} has expired: ask the host for a new one", "invite expired")
    if not in_prefix(room, prefix):
        raise BadInvite(f"the {what} is for a room this page does not serve", "invite room outside prefix")
    return Invite(room=room, role=role, exp=exp, language=language)
