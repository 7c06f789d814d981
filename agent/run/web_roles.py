"""Who may have which join token from the page: roles, their grants, and what admits a request.

- **Admission**: a signed invite link (`agent/run/invites.py`) fixes the room and the role; else, with
  `WEB_ACCESS_CODE` set, the code is the host's: who has it may take any role in any room of the page; else
  (a page on loopback, or `WEB_OPEN=true`) anyone may, knowingly. A refusal is a 403 with the reason.
- **Rooms**: only the page's own, `WEB_ROOM_PREFIX` + a name; a name given with the prefix already is kept
  as it is. Never another room of the LiveKit project.
- **Grants**: a listener subscribes and updates its own attributes (`interpret_to`), never publishes; a
  speaker also publishes its microphone, nothing else; a host has the speaker's grants and nothing more
  (no room admin: its controls go through the web server, `agent/run/web_host.py`). Nobody publishes data.
"""

from __future__ import annotations

import datetime
import hmac
import time
from dataclasses import dataclass

from livekit import api

from agent.language.codes import AUTO
from agent.run.invites import (
    HOST_KEY_TTL_S,
    HOST_PURPOSE,
    INVITE_PURPOSE,
    ROLES,
    BadInvite,
    Invite,
    Role,
    derive_key,
    in_prefix,
    sign,
    verify,
)
from agent.run.web_body import Refused
from agent.settings.web import WebSettings

PUBLISHING_ROLES = ("speaker", "host")


@dataclass(frozen=True, slots=True)
class TokenRequest:
    room: str  # the full room name, the prefix included
    name: str
    role: Role
    language: str  # a listener's: the language it hears; a speaker's: the one they speak, or AUTO
    hear: str | None = None  # a speaker's: the language they hear (`interpret_to`); None: the one they speak


@dataclass(frozen=True, slots=True)
class Admission:
    """What a request may ask for: `room` fixed by an invite (None: any of the page's), one of `roles`."""

    roles: tuple[Role, ...] = ROLES
    room: str | None = None


OPEN = Admission()  # no invite, and no code needed (or the code given)


def invite_key(settings: WebSettings) -> bytes:
    return derive_key(settings.invite_secret or settings.livekit.api_secret, INVITE_PURPOSE)


def host_key(settings: WebSettings) -> bytes:
    return derive_key(settings.invite_secret or settings.livekit.api_secret, HOST_PURPOSE)


def new_host_key(settings: WebSettings, room: str) -> str:
    """What a host's page sends to the host's endpoints (Authorization: Bearer) for HOST_KEY_TTL_S."""
    return sign(host_key(settings), Invite(room=room, role="host", exp=int(time.time()) + HOST_KEY_TTL_S))


def admit(settings: WebSettings, body: dict[str, object]) -> Admission:
    """What the request may ask for, from its `invite` or `access_code`; `Refused` (403) if nothing admits
    it (compared in constant time)."""
    if "invite" in body:
        try:
            invite = verify(
                invite_key(settings), body["invite"], now_s=time.time(), prefix=settings.room_prefix
            )
        except BadInvite as bad:
            raise Refused(403, bad.message, bad.reason) from None
        return Admission(roles=(invite.role,), room=invite.room)
    if settings.access_code is None:
        return OPEN
    given = body.get("access_code")
    if not isinstance(given, str) or not given:
        raise Refused(403, "access code required", "access code missing")
    # (JSON may carry lone surrogates: "surrogatepass" keeps them from failing the comparison)
    if not hmac.compare_digest(given.encode(errors="surrogatepass"), settings.access_code.encode()):
        raise Refused(403, "wrong access code", "access code wrong")
    return OPEN


def full_room(settings: WebSettings, name: str) -> str:
    """The room a name given in the page stands for: under the prefix (kept if it has it already)."""
    return name if in_prefix(name, settings.room_prefix) else settings.room_prefix + name


def admitted_room(settings: WebSettings, admission: Admission, name: str | None) -> str:
    """The room to mint for: the invite's (a room named too must be the same), else `name`'s."""
    if admission.room is None:
        assert name is not None
        return full_room(settings, name)
    if name is not None and full_room(settings, name) != admission.room:
        raise Refused(403, "this invite link is for another room", "invite room mismatch")
    return admission.room


def admitted_role(admission: Admission, role: object) -> Role:
    """The role to mint: the invite's (a role asked for too must be the same), else the one asked for."""
    if role is None and len(admission.roles) == 1:
        return admission.roles[0]
    if role is None:
        raise Refused(400, "role is missing", "role missing")
    if not isinstance(role, str):
        raise Refused(400, "role must be a string", "role not a string")
    for allowed in admission.roles:
        if role == allowed:
            return allowed
    if role in ROLES:
        raise Refused(403, f"this invite link is for a {admission.roles[0]}", "invite role mismatch")
    raise Refused(400, "role must be 'listener', 'speaker' or 'host'", "role unknown")


def grants_for(role: Role, room: str) -> api.VideoGrants:
    publishes = role in PUBLISHING_ROLES
    return api.VideoGrants(
        room_join=True,
        room=room,
        can_subscribe=True,
        can_publish=publishes,
        can_publish_data=False,
        can_publish_sources=["microphone"] if publishes else None,
        # a listener's `interpret_to` and `listening_to`; a speaker's `language` too
        can_update_own_metadata=True,
    )


def mint_token(settings: WebSettings, request: TokenRequest, identity: str) -> str:
    """A join token for `request.room` with the role's grants (`grants_for`) and attributes: a listener's
    `interpret_to`; a speaker's (a host's) `language` unless detected, and `interpret_to` when they chose
    what to hear; everyone's `listening_to` as `none` until the page plays an interpretation (nothing is
    synthesized for a page not subscribed yet). It carries the interpreter's dispatch, which LiveKit acts
    on when the room starts (the first person joining), once."""
    # (the names as the room contract spells them: the page's process imports nothing of agent.room, whose
    # modules load the job's Prometheus metrics)
    attributes: dict[str, str] = {"listening_to": "none"}
    if request.role not in PUBLISHING_ROLES:
        attributes["interpret_to"] = request.language
    else:
        if request.language != AUTO:  # no `language`: the interpreter detects what they speak
            attributes["language"] = request.language
        if request.hear is not None:
            attributes["interpret_to"] = request.hear
    dispatch = api.RoomAgentDispatch(agent_name=settings.agent_name, metadata=settings.room_metadata)
    return (
        api.AccessToken(settings.livekit.api_key, settings.livekit.api_secret)
        .with_identity(identity)
        .with_name(request.name)
        .with_ttl(datetime.timedelta(seconds=settings.token_ttl_s))
        .with_grants(grants_for(request.role, request.room))
        .with_attributes(attributes)
        .with_room_config(api.RoomConfiguration(agents=[dispatch]))
        .to_jwt()
    )
