"""The page's settings (`python -m agent web`): where it listens, who may have a token, its rooms.

A page served beyond this machine with nothing to keep a stranger out does not start (`exposure`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from agent.language.codes import AUTO
from agent.settings.config import (
    LOG_LEVELS,
    ConfigError,
    LiveKitSettings,
    Reader,
    can_detect_language,
    livekit_settings,
)
from agent.settings.room_settings import parse_room_settings


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The page and its token endpoint (`python -m agent web`): LiveKit's keys, no provider's."""

    livekit: LiveKitSettings
    browser_url: str  # the LiveKit URL handed to browsers: WEB_LIVEKIT_URL, else LIVEKIT_URL
    agent_name: str
    host: str
    port: int
    access_code: str | None  # WEB_ACCESS_CODE: no token without it, when set
    open_to_all: bool  # WEB_OPEN: served beyond this machine without an access code, knowingly
    client_ip_header: str | None  # WEB_CLIENT_IP_HEADER: where a proxy in front puts the client's address
    token_ttl_s: int
    room_metadata: str  # the interpreter's dispatch metadata (per-room settings JSON), "" for none
    log_level: str | None
    # whether the worker detects a speaker's language (`auto`): WEB_ROOM_METADATA's source_language, else
    # SOURCE_LANGUAGE (the worker's variables, read here too; `auto` by default), and DEEPGRAM_MODEL nova-3
    detect_language: bool = True
    room_prefix: str = "interp-"  # WEB_ROOM_PREFIX: the page mints tokens for rooms under it only
    invite_secret: str | None = None  # WEB_INVITE_SECRET: signs invite links; None: from LIVEKIT_API_SECRET


def load_web_settings(env: Mapping[str, str | None]) -> WebSettings:
    r = Reader(env)
    livekit = livekit_settings(r, "the LiveKit server the page's participants join")
    room_metadata = r.raw("WEB_ROOM_METADATA") or ""
    room_source: str | None = None
    if room_metadata:
        room_settings, problems = parse_room_settings(room_metadata, None)
        room_source = room_settings.source_language
        prefix = "job metadata: "
        r.problems += [f"WEB_ROOM_METADATA is malformed: {p.removeprefix(prefix)}" for p in problems]
    source = room_source or r.source_language("SOURCE_LANGUAGE")
    settings = WebSettings(
        livekit=livekit,
        browser_url=r.url("WEB_LIVEKIT_URL", livekit.url),
        agent_name=r.text("AGENT_NAME", "interpreter"),
        host=r.text("WEB_HOST", "0.0.0.0"),
        port=r.integer("WEB_PORT", 8080, minimum=1, maximum=65535),
        access_code=r.raw("WEB_ACCESS_CODE"),
        open_to_all=r.choice("WEB_OPEN", "false", ("true", "false")) == "true",
        client_ip_header=r.raw("WEB_CLIENT_IP_HEADER"),
        token_ttl_s=r.integer("WEB_TOKEN_TTL_S", 600, minimum=60, maximum=86400),
        room_metadata=room_metadata,
        log_level=r.choice("LOG_LEVEL", "", LOG_LEVELS) or None,
        detect_language=source == AUTO and can_detect_language(r.text("DEEPGRAM_MODEL", "nova-3")),
        room_prefix=r.text("WEB_ROOM_PREFIX", "interp-"),
        invite_secret=r.raw("WEB_INVITE_SECRET"),
    )
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", settings.room_prefix):  # the page's rooms are named with it
        prefix = settings.room_prefix
        r.problems.append(
            f"WEB_ROOM_PREFIX={prefix!r} is malformed: expected 1 to 32 letters, digits, '-' or '_'"
        )
    if settings.invite_secret is not None and len(settings.invite_secret) < 32:
        r.problems.append(
            "WEB_INVITE_SECRET is too short: at least 32 characters (it signs the invite links)"
        )
    if (exposed := exposure(settings)) is not None:
        r.problems.append(exposed)
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def exposure(settings: WebSettings) -> str | None:
    """Why the page must not start as set: served beyond this machine (WEB_HOST not a loopback address) with
    nothing to keep a stranger out, unless WEB_OPEN says that is meant. None: it may."""
    if settings.access_code is not None or settings.open_to_all or is_loopback(settings.host):
        return None
    return (
        f"WEB_HOST={settings.host} serves the page beyond this machine, and with no WEB_ACCESS_CODE anyone "
        "who finds it gets a join token in any role (the host's included) and an interpreter, for any of its "
        "rooms: set WEB_ACCESS_CODE, or WEB_HOST=127.0.0.1 behind a proxy of your own, or WEB_OPEN=true to "
        "serve it open knowingly"
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
