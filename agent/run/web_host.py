"""A host's controls, through the web server: nobody's join token carries room admin, so what a host may do
to the room it does here, with the LiveKit API, after checking its host key.

Every request carries `Authorization: Bearer <host key>` (given with a host's join token; signed, for one
room, HOST_KEY_TTL_S: `agent/run/invites.py`) and acts on that room only:

- `POST /api/invite` `{"role", "expires_in_s"?, "language"?}` → `{"invite", "room", "role", "exp"}`: an invite
  link's signed part (the page makes the link `/#invite=…`); a listener's may name the language it picks;
- `GET /api/room` → `{"room", "settings", "interpreting"}`: the room's `target_languages`, `glossary`,
  `formality` and `source_language` from its metadata, and whether it asked for the interpreter;
- `POST /api/room/settings` `{"target_languages"?, "glossary"?, "formality"?, "source_language"?}`: merged
  into the room's metadata (JSON `null` removes a key), which the interpreter applies at once
  (docs/room-contract.md); checked by the interpreter's own rules first (400 naming the problems);
- `POST /api/room/end`: the interpretation ends for good: the room's dispatches of our agent are deleted (the
  server ends their jobs; the keepers re-dispatch only rooms that have one); `POST /api/room/start` dispatches
  it again.

A missing or bad host key is a 403 and counts as a refused code for the address (`agent/run/web_limits.py`);
every request counts in the address's host bucket (not its tokens').
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from livekit import api

from agent.language.codes import SUPPORTED_LANGUAGES
from agent.run.invites import MAX_INVITE_S, MIN_INVITE_S, ROLES, BadInvite, Invite, sign, verify
from agent.run.web_body import Refused, read_json_body
from agent.run.web_limits import Limits
from agent.run.web_roles import host_key, invite_key
from agent.settings.room_settings import MAX_METADATA_BYTES, parse_room_settings
from agent.settings.web import WebSettings

logger = logging.getLogger("agent.web")

HOST_SETTINGS = ("target_languages", "glossary", "formality", "source_language")
DEFAULT_INVITE_S = 24 * 3600

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class HostApi:
    """The host's endpoints over `settings`; `client_address` names a request's client for `limits`."""

    def __init__(
        self, settings: WebSettings, limits: Limits, client_address: Callable[[web.Request], str]
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.client_address = client_address
        self.refused: dict[str, int] = {}
        self._lk: api.LiveKitAPI | None = None

    @property
    def lk(self) -> api.LiveKitAPI:
        if self._lk is None:
            livekit = self.settings.livekit
            self._lk = api.LiveKitAPI(livekit.url, livekit.api_key, livekit.api_secret)
        return self._lk

    async def aclose(self, _: web.Application | None = None) -> None:
        if self._lk is not None:
            await self._lk.aclose()
            self._lk = None

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/invite", self._endpoint(self.invite))
        app.router.add_get("/api/room", self._endpoint(self.room))
        app.router.add_post("/api/room/settings", self._endpoint(self.update_settings))
        app.router.add_post("/api/room/end", self._endpoint(self.end))
        app.router.add_post("/api/room/start", self._endpoint(self.start))
        app.on_cleanup.append(self.aclose)

    def _endpoint(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def answer(request: web.Request) -> web.Response:
            client = self.client_address(request)
            action = request.path.rsplit("/", 1)[-1]
            try:
                if wait_s := self.limits.host_request(client):
                    raise Refused(
                        429, "too many requests: try again later", "rate limited", retry_after_s=wait_s
                    )
                room = self._host_room(request, client)
                body = await _body(request) if request.method == "POST" else {}
                result = await handler(room, body)
            except Refused as refused:
                self.refused[refused.reason] = self.refused.get(refused.reason, 0) + 1
                extra = {
                    "action": action,
                    "status": refused.status,
                    "reason": refused.reason,
                    "client": client,
                }
                logger.info("host request refused", extra=extra)
                headers = {"Retry-After": str(refused.retry_after_s)} if refused.retry_after_s else None
                return web.json_response({"error": refused.message}, status=refused.status, headers=headers)
            except api.TwirpError as e:
                logger.warning(
                    "the LiveKit server refused a host request", extra={"action": action, "code": e.code}
                )
                return web.json_response({"error": "the LiveKit server refused: try again"}, status=502)
            logger.info("host request", extra={"action": action})
            return web.json_response(result, headers={"Cache-Control": "no-store"})

        return answer

    def _host_room(self, request: web.Request, client: str) -> str:
        """The room the request's host key is for; `Refused` (403, counted for `client`) without one."""
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        try:
            if scheme != "Bearer" or not key:
                raise BadInvite("host key required: join as the host", "host key missing")
            hosted = verify(
                host_key(self.settings),
                key,
                now_s=time.time(),
                prefix=self.settings.room_prefix,
                what="host key",
            )
            if hosted.role != "host":
                raise BadInvite("the host key is not a host's", "host key not a host's")
        except BadInvite as bad:
            self.limits.code_refused(client)
            raise Refused(403, bad.message, bad.reason.replace("invite", "host key")) from None
        return hosted.room

    async def invite(self, room: str, body: dict[str, Any]) -> dict[str, Any]:
        role, expires_in_s, language = (
            body.get("role"),
            body.get("expires_in_s", DEFAULT_INVITE_S),
            body.get("language"),
        )
        if role not in ROLES:
            raise Refused(400, "role must be 'listener', 'speaker' or 'host'", "role unknown")
        if type(expires_in_s) is not int or not MIN_INVITE_S <= expires_in_s <= MAX_INVITE_S:
            raise Refused(
                400,
                f"expires_in_s must be {MIN_INVITE_S} to {MAX_INVITE_S} seconds",
                "expires_in_s malformed",
            )
        if language is not None and (role != "listener" or not _supported(language)):
            raise Refused(
                400, "language is for a listener's link: one of the supported languages", "language bad"
            )
        invite = Invite(room=room, role=role, exp=int(time.time()) + expires_in_s, language=language)
        answer = {
            "invite": sign(invite_key(self.settings), invite),
            "room": room,
            "role": role,
            "exp": invite.exp,
        }
        return answer | ({"language": language} if language else {})

    async def _metadata(self, room: str) -> dict[str, Any]:
        """The room's metadata as a JSON object ({} when it has none, or none readable); 409 if no room."""
        listed = await self.lk.room.list_rooms(api.ListRoomsRequest(names=[room]))
        if not listed.rooms:
            raise Refused(409, "the room is not open yet: join it first", "room not open")
        try:
            current = json.loads(listed.rooms[0].metadata or "{}")
        except ValueError:
            return {}
        return current if isinstance(current, dict) else {}

    async def _ours(self, room: str) -> list[api.AgentDispatch]:
        dispatches = await self.lk.agent_dispatch.list_dispatch(room)
        return [d for d in dispatches if d.agent_name == self.settings.agent_name]

    async def room(self, room: str, _: dict[str, Any]) -> dict[str, Any]:
        current = await self._metadata(room)
        settings = {key: current[key] for key in HOST_SETTINGS if key in current}
        return {"room": room, "settings": settings, "interpreting": bool(await self._ours(room))}

    async def update_settings(self, room: str, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(key for key in body if key not in HOST_SETTINGS)
        if unknown or not body:
            raise Refused(400, "settings are " + ", ".join(HOST_SETTINGS), "settings unknown")
        given = {key: value for key, value in body.items() if value is not None}
        _, problems = parse_room_settings(None, json.dumps(given))
        if problems:
            message = "; ".join(p.removeprefix("room metadata: ") for p in problems[:3])
            raise Refused(400, message, "settings malformed")
        current = await self._metadata(room)
        merged = {key: value for key, value in {**current, **body}.items() if value is not None}
        text = json.dumps(merged, ensure_ascii=False)
        if len(text.encode()) > MAX_METADATA_BYTES:
            raise Refused(400, "the room's settings would be larger than 64 KiB", "settings too large")
        await self.lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=room, metadata=text))
        return {"room": room, "settings": {key: merged[key] for key in HOST_SETTINGS if key in merged}}

    async def end(self, room: str, _: dict[str, Any]) -> dict[str, Any]:
        ours = await self._ours(room)
        for dispatch in ours:
            await self.lk.agent_dispatch.delete_dispatch(dispatch.id, room)
        return {"room": room, "interpreting": False, "dispatches_deleted": len(ours)}

    async def start(self, room: str, _: dict[str, Any]) -> dict[str, Any]:
        await self._metadata(room)  # the room is open
        if not await self._ours(room):
            request = api.CreateAgentDispatchRequest(
                agent_name=self.settings.agent_name, room=room, metadata=self.settings.room_metadata
            )
            await self.lk.agent_dispatch.create_dispatch(request)
        return {"room": room, "interpreting": True}


def _supported(language: object) -> bool:
    return isinstance(language, str) and language in SUPPORTED_LANGUAGES


async def _body(request: web.Request) -> dict[str, Any]:
    """A host request's body: as a token request's (`read_json_body`), a JSON object; empty for `{}`."""
    if request.content_length == 0 and not request.body_exists:
        return {}
    body = await read_json_body(request)
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object", "body not an object")
    return body
