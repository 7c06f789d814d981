"""The page for the people in a room, and the join tokens it asks for (`python -m agent web`).

- `GET /` is `agent/run/web_static/index.html` (503 while the page is not built), `GET /<file>` a file of that
  folder (no listing, nothing outside it);
- `GET /api/config`: the supported languages, whether an access code is needed, the agent's name, whether
  the interpreter detects a speaker's language (`detect_language`), the rooms' prefix (`room_prefix`);
- `POST /api/token` `{"room", "name", "role", "language", "hear"?, "access_code"?}` or `{"invite", "name",
  "language", "hear"?}`: a short-lived join token for a random identity in one of the page's rooms
  (`WEB_ROOM_PREFIX`), with the role's grants and the interpreter's dispatch, so the first person to join a
  room brings the interpreter in. An invite fixes the room and the role; without one, `WEB_ACCESS_CODE`
  (the host's code) when it is set (`agent/run/web_roles.py`). Every field is checked (400 naming it), what
  admits the request too (403). A speaker's `language` may be `auto` (when detection is on): no `language`
  attribute, so the interpreter detects it; a speaker's `hear` is the language they hear (`interpret_to`).
  A host's answer carries its host key, for the host's endpoints (`agent/run/web_host.py`);
- `GET /healthz`: `OK`.

One client address asks for a limited number of tokens, and tries a limited number of access codes
(`agent/run/web_limits.py`): past them, a 429 with `Retry-After`. A body that no page sends is refused
before it costs anything (`agent/run/web_body.py`).

Tokens, names, room names and access codes are never logged: only the role of a token, or why a request
was refused.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.language.codes import (
    AUTO,
    DETECTED_LANGUAGES,
    SUPPORTED_LANGUAGES,
    language_name,
    participant_language,
)
from agent.run.web_body import MAX_BODY_BYTES, Refused, read_json_body
from agent.run.web_host import HostApi
from agent.run.web_limits import Limits
from agent.run.web_roles import (
    OPEN,
    PUBLISHING_ROLES,
    Admission,
    TokenRequest,
    admit,
    admitted_role,
    admitted_room,
    mint_token,
    new_host_key,
)
from agent.settings.web import WebSettings, is_loopback
from agent.telemetry.errors import log_unexpected

logger = logging.getLogger("agent.web")

STATIC_DIR = Path(__file__).parent / "web_static"
ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_NAME_CHARS = 64
# a file the page may load from STATIC_DIR: a plain name, no path
_STATIC_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*\.(?:js|css|map|svg|png|ico|webp|woff2|txt)"
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=(), payment=(), usb=()",
}
HSTS = "max-age=31536000"  # a year; sent only over HTTPS (Fly's proxy terminates it: X-Forwarded-Proto)


def content_security_policy(settings: WebSettings) -> str:
    """Only what the page uses: its own files, and LiveKit (its WebSocket, and its HTTP address, which
    livekit-client asks when a connection fails); the audio it plays comes from media streams."""
    livekit = settings.browser_url
    http = re.sub(r"^ws", "http", livekit)  # wss:// → https://, ws:// → http://
    return "; ".join(
        [
            "default-src 'self'",
            f"connect-src 'self' {livekit} {http}",
            "media-src 'self' blob: mediastream:",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ]
    )


def supported_languages() -> list[dict[str, str]]:
    """The languages the interpreter accepts (`agent/settings/room_settings.py`), by English name."""
    named = ((code, language_name(code).title()) for code in SUPPORTED_LANGUAGES)
    return [{"code": code, "name": name} for code, name in sorted(named, key=lambda item: item[1])]


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise Refused(400, f"{name} is missing", f"{name} missing")
    if not isinstance(value, str):
        raise Refused(400, f"{name} must be a string", f"{name} not a string")
    return value


def _language(body: dict[str, Any], name: str) -> str:
    """A supported language in any spelling ("ES", "es-MX", "es_419"), in the interpreter's form ("es")."""
    value = participant_language(_field(body, name))
    if value is None:
        raise Refused(
            400, f"{name} must be one of the supported languages (see /api/config)", f"{name} unsupported"
        )
    return value


def parse_token_request(
    body: dict[str, Any], settings: WebSettings, admission: Admission = OPEN
) -> TokenRequest:
    """The fields of a token request, checked; `Refused` (400) names the first bad one, (403) a room or a
    role the `admission` does not allow. A speaker's `language` may be AUTO when the interpreter detects
    it (`settings.detect_language`)."""
    room = None if admission.room is not None and body.get("room") is None else _field(body, "room")
    if room is not None and not ROOM_RE.fullmatch(room):
        raise Refused(400, "room must be 1 to 64 characters: letters, digits, '-' or '_'", "room malformed")
    name = _field(body, "name").strip()
    if not 1 <= len(name) <= MAX_NAME_CHARS or not name.isprintable():
        raise Refused(400, f"name must be 1 to {MAX_NAME_CHARS} printable characters", "name malformed")
    role = admitted_role(admission, body.get("role"))
    room = admitted_room(settings, admission, room)
    speaker = role in PUBLISHING_ROLES
    detect_language = settings.detect_language
    if body.get("language") == AUTO:
        if not speaker:
            raise Refused(
                400,
                "language 'auto' is for speakers: a listener picks the language to hear",
                "auto for listener",
            )
        if not detect_language:
            raise Refused(
                400,
                "language 'auto' is not available here: the interpreter is set to one spoken language",
                "auto unavailable",
            )
        language = AUTO
    else:
        language = _language(body, "language")
    hear = None
    if body.get("hear") is not None:
        if not speaker:
            raise Refused(
                400, "hear is for speakers: a listener's language is the one it hears", "hear for listener"
            )
        hear = _language(body, "hear")
    return TokenRequest(room=room, name=name, role=role, language=language, hear=hear)


def new_identity() -> str:
    """A participant identity that says nothing about the person (their name is the display name)."""
    return f"web-{secrets.token_hex(6)}"


class WebApp:
    """The handlers, over `settings` and the folder the built page is in."""

    def __init__(
        self, settings: WebSettings, static_dir: Path = STATIC_DIR, limits: Limits | None = None
    ) -> None:
        self.settings = settings
        self.static_dir = static_dir
        self.limits = limits if limits is not None else Limits()
        self.headers = {**_SECURITY_HEADERS, "Content-Security-Policy": content_security_policy(settings)}
        self.tokens_issued = 0
        self.refused: dict[str, int] = {}  # why requests were refused, counted

    async def index(self, _: web.Request) -> web.StreamResponse:
        page = self.static_dir / "index.html"
        if not page.is_file():
            return web.Response(
                status=503,
                text="page not built: run `npm ci && npm run build` in web/"
                " (it writes agent/run/web_static/)",
            )
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        path = self.static_dir / request.match_info["name"]
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def config(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "languages": supported_languages(),
                "access_code_required": self.settings.access_code is not None,
                "agent_name": self.settings.agent_name,
                "detect_language": self.settings.detect_language,
                # what detection covers (Deepgram's multilingual models), for the page to say
                "detected_languages": list(DETECTED_LANGUAGES) if self.settings.detect_language else [],
                "room_prefix": self.settings.room_prefix,
            }
        )

    async def token(self, request: web.Request) -> web.Response:
        client = self.client_address(request)
        try:
            if wait_s := self.limits.request(client):
                raise Refused(429, "too many requests: try again later", "rate limited", retry_after_s=wait_s)
            body = await read_json_body(request)
            if not isinstance(body, dict):
                raise Refused(400, "the body must be a JSON object", "body not an object")
            try:
                wanted = parse_token_request(body, self.settings, admit(self.settings, body))
            except Refused as refused:
                if refused.status == 403:  # a wrong code, a bad invite, a role or room it does not allow
                    self.limits.code_refused(client)
                raise
        except Refused as refused:
            self.refused[refused.reason] = self.refused.get(refused.reason, 0) + 1
            in_a_row = max(1, self.limits.limited_in_a_row(client)) if refused.status == 429 else 1
            if math.log10(in_a_row).is_integer():  # a flood: its 1st, 10th, 100th... refusal logged
                extra = {"status": refused.status, "reason": refused.reason, "client": client}
                logger.info("token refused", extra={**extra, "in_a_row": in_a_row})
            headers = {"Retry-After": str(refused.retry_after_s)} if refused.retry_after_s else None
            return web.json_response({"error": refused.message}, status=refused.status, headers=headers)
        identity = new_identity()
        token = mint_token(self.settings, wanted, identity)
        self.tokens_issued += 1
        logger.info("token issued", extra={"role": wanted.role, "tokens_issued": self.tokens_issued})
        answer = {"token": token, "url": self.settings.browser_url, "identity": identity}
        answer |= {"role": wanted.role, "room": wanted.room}
        if wanted.role == "host":
            answer["host_key"] = new_host_key(self.settings, wanted.room)
        return web.json_response(answer, headers={"Cache-Control": "no-store"})

    def client_address(self, request: web.Request) -> str:
        """The client's address: the peer's, or what the proxy in front put in WEB_CLIENT_IP_HEADER."""
        header = self.settings.client_ip_header
        forwarded = request.headers.get(header, "").strip() if header else ""
        return forwarded or request.remote or "unknown"

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="OK")


@web.middleware
async def _answers(request: web.Request, handler: Any) -> web.StreamResponse:
    """Security headers on every answer; a bug in a handler is a 500 with its traceback logged."""
    headers = dict(request.app[WEB_APP].headers)
    if request.secure or request.headers.get("X-Forwarded-Proto") == "https":
        headers["Strict-Transport-Security"] = HSTS
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as answer:  # 404, 405, 413 ...
        answer.headers.update(headers)
        raise
    except Exception as e:  # messages withheld: they may quote the request
        log_unexpected(logger, "request failed", e)
        response = web.json_response({"error": "internal error"}, status=500)
    response.headers.update(headers)
    return response


WEB_APP = web.AppKey("web_app", WebApp)


def create_app(
    settings: WebSettings, static_dir: Path = STATIC_DIR, limits: Limits | None = None
) -> web.Application:
    handlers = WebApp(settings, static_dir, limits)
    # no request body is ever inflated: a few MB of gzip are gigabytes, inflated even unread (aiohttp reads
    # what a handler left unread before it closes the connection, for up to `lingering_time`)
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[_answers], handler_args={"auto_decompress": False}
    )
    app[WEB_APP] = handlers
    app.router.add_get("/", handlers.index)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/api/config", handlers.config)
    app.router.add_post("/api/token", handlers.token)
    HostApi(settings, handlers.limits, handlers.client_address).routes(app)
    app.router.add_get("/{name:" + _STATIC_NAME + "}", handlers.static)
    return app


async def start_site(settings: WebSettings, static_dir: Path = STATIC_DIR) -> web.AppRunner:
    """The app serving on WEB_HOST:WEB_PORT; stop it with `runner.cleanup()`. No access log (the page's
    URL may carry a room name)."""
    runner = web.AppRunner(create_app(settings, static_dir), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
    except BaseException:
        await runner.cleanup()
        raise
    logger.info("serving the page", extra={"host": settings.host, "port": settings.port})
    if settings.access_code is None and not is_loopback(settings.host):  # WEB_OPEN=true: meant, but said
        logger.warning("the page is open to anyone who finds it: no WEB_ACCESS_CODE, and WEB_OPEN=true")
    return runner


def page_url(settings: WebSettings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    return f"http://{host}:{settings.port}/"


def setup_logging(level: str | None) -> None:
    """JSON lines on stderr, as the worker's production logs (`LOG_LEVEL`, INFO by default)."""
    from livekit.agents.cli.log import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level or "INFO")


async def serve(settings: WebSettings, static_dir: Path = STATIC_DIR) -> None:
    """`python -m agent web`: serve until SIGINT or SIGTERM."""
    runner = await start_site(settings, static_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"the page: {page_url(settings)}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str]) -> int:
    """`python -m agent web`: the settings checked (one error naming every problem, exit 2), then serve."""
    from agent.settings.config import ConfigError, read_environment
    from agent.settings.web import load_web_settings

    if argv:
        print("usage: python -m agent web (settings come from the environment and .env)", file=sys.stderr)
        return 0 if argv[0] in ("-h", "--help") else 2
    try:
        settings = load_web_settings(read_environment())
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except OSError as e:  # the port is taken, or the host is not an address of this machine
        print(f"cannot serve the page on {settings.host}:{settings.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0
