"""The page's server (`agent/run/web.py`): the token endpoint's checks and tokens, the page and its files, and
(against the real LiveKit server) what the tokens allow: a listener cannot publish, a speaker can, and a
token brings the interpreter in."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer
from livekit import api, rtc
from livekit.rtc.participant import PublishTrackError

from agent.language.codes import SUPPORTED_LANGUAGES
from agent.room.room_io import ATTR_LISTENING_TO, NOT_LISTENING
from agent.run.filemode import read_wav
from agent.run.web import MAX_BODY_BYTES, WEB_APP, create_app, new_identity
from agent.run.web_limits import CODE_TRIES, CODE_TRIES_PER_HOUR, REQUEST_BURST, REQUESTS_PER_MIN, Limits
from agent.settings.web import WebSettings, load_web_settings
from tests.conftest import ONE_SENTENCE, Fakes, start_room_fakes, stop_fakes
from tests.livekit_server import API_KEY, API_SECRET, LiveKitServer, free_port
from tests.loopback import eventually
from tests.participants import Listener, Speaker
from tests.real_room import real_room

# every page token says its participant plays no interpretation yet (the page says when it does)
UNHEARD = {ATTR_LISTENING_TO: NOT_LISTENING}

ROOT = Path(__file__).parent.parent
LIVEKIT = {
    "LIVEKIT_URL": "ws://127.0.0.1:7880",
    "LIVEKIT_API_KEY": API_KEY,
    "LIVEKIT_API_SECRET": API_SECRET,
}
METADATA = '{"target_languages": ["es"]}'
GOOD = {"room": "board-meeting_2", "name": "Ana María", "role": "listener", "language": "es"}


def settings(**env: str) -> WebSettings:
    return load_web_settings({**LIVEKIT, "WEB_HOST": "127.0.0.1", **env})


@pytest.fixture
async def page_dir(tmp_path: Path) -> Path:
    static = tmp_path / "web_static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>interpreter</title>")
    (static / "app.js").write_text("console.log('page')")
    (static / "style.css").write_text("body {}")
    (tmp_path / "secret.js").write_text("outside the folder")
    return static


@asynccontextmanager
async def serving(
    web: WebSettings, static_dir: Path | None = None, limits: Limits | None = None
) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(web, limits=limits) if static_dir is None else create_app(web, static_dir, limits)
    async with TestClient(TestServer(app)) as client:
        yield client


async def post_token(client: TestClient[Any, Any], body: object) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.post("/api/token", data=data, headers={"Content-Type": "application/json"})
    return response.status, await response.json()


def claims(token: str) -> api.access_token.Claims:
    return api.TokenVerifier(API_KEY, API_SECRET).verify(token)


async def test_config_lists_the_supported_languages_and_whether_a_code_is_needed() -> None:
    async with serving(settings()) as client:
        response = await client.get("/api/config")
        assert response.status == 200
        config = await response.json()
    codes = [language["code"] for language in config["languages"]]
    assert set(codes) == SUPPORTED_LANGUAGES and len(codes) == len(SUPPORTED_LANGUAGES)
    assert {"code": "es", "name": "Spanish"} in config["languages"]
    names = [language["name"] for language in config["languages"]]
    assert names == sorted(names)
    assert config["access_code_required"] is False and config["agent_name"] == "interpreter"
    async with serving(settings(WEB_ACCESS_CODE="let-me-in", AGENT_NAME="dolmetscher")) as client:
        config = await (await client.get("/api/config")).json()
    assert config["access_code_required"] is True and config["agent_name"] == "dolmetscher"


BAD_REQUESTS = [
    (b"room=a&name=b", "the body must be JSON", "body not JSON"),
    (b"\xff\xfe", "the body must be JSON", "body not JSON"),
    ([GOOD], "the body must be a JSON object", "body not an object"),
    ({k: v for k, v in GOOD.items() if k != "room"}, "room is missing", "room missing"),
    ({**GOOD, "room": ""}, "room must be 1 to 64 characters", "room malformed"),
    ({**GOOD, "room": "r" * 65}, "room must be 1 to 64 characters", "room malformed"),
    ({**GOOD, "room": "board meeting"}, "room must be 1 to 64 characters", "room malformed"),
    ({**GOOD, "room": "../admin"}, "room must be 1 to 64 characters", "room malformed"),
    ({**GOOD, "room": 7}, "room must be a string", "room not a string"),
    ({**GOOD, "name": "   "}, "name must be 1 to 64 printable characters", "name malformed"),
    ({**GOOD, "name": "n" * 65}, "name must be 1 to 64 printable characters", "name malformed"),
    ({**GOOD, "name": "Ana\nMaría"}, "name must be 1 to 64 printable characters", "name malformed"),
    ({**GOOD, "name": None}, "name is missing", "name missing"),
    ({**GOOD, "role": "admin"}, "role must be 'listener', 'speaker' or 'host'", "role unknown"),
    ({**GOOD, "role": ["listener"]}, "role must be a string", "role not a string"),
    ({**GOOD, "language": "tlh"}, "language must be one of the supported languages", "language unsupported"),
    (
        {**GOOD, "language": "es-XX-"},
        "language must be one of the supported languages",
        "language unsupported",
    ),
    ({k: v for k, v in GOOD.items() if k != "language"}, "language is missing", "language missing"),
]


@pytest.mark.parametrize(("body", "message", "reason"), BAD_REQUESTS)
async def test_each_bad_request_is_a_400_naming_what_is_wrong(
    body: object, message: str, reason: str
) -> None:
    async with serving(settings()) as client:
        status, answer = await post_token(client, body)
        handlers = client.app[WEB_APP]
    assert status == 400 and answer["error"].startswith(message), answer
    assert handlers.refused == {reason: 1} and handlers.tokens_issued == 0


async def test_a_body_larger_than_the_limit_is_refused() -> None:
    async with serving(settings()) as client:
        status, answer = await post_token(client, {**GOOD, "name": "x" * MAX_BODY_BYTES})
        handlers = client.app[WEB_APP]
    assert status == 413 and "at most" in answer["error"]
    assert handlers.refused == {"body too large": 1} and handlers.tokens_issued == 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_gets_a_burst_of_requests_then_one_every_few_seconds_and_others_are_not_affected() -> None:
    clock = Clock()
    limits = Limits(clock=clock)
    assert [limits.request("a") for _ in range(REQUEST_BURST)] == [0] * REQUEST_BURST
    wait = limits.request("a")
    assert wait == math.ceil(60 / REQUESTS_PER_MIN)
    assert limits.request("b") == 0  # another address
    clock.now += wait
    assert limits.request("a") == 0 and limits.request("a") > 0


def test_refused_codes_block_an_address_before_its_next_code_is_compared() -> None:
    clock = Clock()
    limits = Limits(clock=clock)
    for _ in range(CODE_TRIES):
        assert limits.request("a") == 0
        limits.code_refused("a")
    assert limits.request("a") == math.ceil(3600 / CODE_TRIES_PER_HOUR)
    assert limits.request("b") == 0
    clock.now += 3600 / CODE_TRIES_PER_HOUR
    assert limits.request("a") == 0


def test_the_addresses_remembered_are_bounded_the_least_recent_forgotten_first() -> None:
    limits = Limits(clock=Clock(), max_clients=3, request_burst=1)
    for address in ("a", "b", "c"):
        limits.request(address)
    assert limits.request("a") > 0  # used up; "a" is now the most recent
    limits.request("d")  # "b" is forgotten
    assert limits.clients == 3 and limits.request("b") == 0 and limits.request("a") > 0


async def test_guessing_the_code_is_limited_and_a_flood_from_one_address_leaves_another_served() -> None:
    """Behind a proxy that names the client (WEB_CLIENT_IP_HEADER): one address guessing codes gets 429 with
    Retry-After, the right code included once it is blocked; another address joins; without the setting a
    client's own header is not believed."""
    web = settings(WEB_ACCESS_CODE="let-me-in", WEB_CLIENT_IP_HEADER="Fly-Client-IP")
    async with serving(web) as client:

        async def post(address: str, code: str) -> Any:
            return await client.post(
                "/api/token", json={**GOOD, "access_code": code}, headers={"Fly-Client-IP": address}
            )

        assert [(await post("203.0.113.9", "guess")).status for _ in range(CODE_TRIES)] == [403] * CODE_TRIES
        blocked = await post("203.0.113.9", "let-me-in")
        assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 60
        assert (await blocked.json()) == {"error": "too many requests: try again later"}
        assert (await post("198.51.100.7", "let-me-in")).status == 200
        flood = [(await post("203.0.113.10", "let-me-in")).status for _ in range(REQUEST_BURST + 5)]
        assert flood == [200] * REQUEST_BURST + [429] * 5
        assert (await post("198.51.100.7", "let-me-in")).status == 200
    async with serving(settings(WEB_ACCESS_CODE="let-me-in")) as client:  # the header not configured
        for i in range(CODE_TRIES):
            forged = {"Fly-Client-IP": f"192.0.2.{i}"}
            body = {**GOOD, "access_code": "guess"}
            assert (await client.post("/api/token", json=body, headers=forged)).status == 403
        assert (
            await client.post("/api/token", json=body, headers={"Fly-Client-IP": "192.0.2.99"})
        ).status == 429


async def test_with_an_access_code_set_no_token_without_it() -> None:
    roomy = Limits(code_tries=20, request_burst=20)  # the codes here; their limits: test_guessing_the_code_…
    async with serving(settings(WEB_ACCESS_CODE="let-me-in"), limits=roomy) as client:
        assert await post_token(client, GOOD) == (403, {"error": "access code required"})
        assert await post_token(client, {**GOOD, "access_code": ""}) == (
            403,
            {"error": "access code required"},
        )
        assert await post_token(client, {**GOOD, "access_code": 1234}) == (
            403,
            {"error": "access code required"},
        )
        for wrong in ("let-me-out", "let-me-in ", "LET-ME-IN", "let-me-i", "\ud800"):  # (a lone surrogate)
            assert await post_token(client, {**GOOD, "access_code": wrong}) == (
                403,
                {"error": "wrong access code"},
            )
        # the code is checked before the fields: a caller without it learns nothing from the validation
        assert await post_token(client, {"room": "?"}) == (403, {"error": "access code required"})
        status, answer = await post_token(client, {**GOOD, "access_code": "let-me-in"})
        handlers = client.app[WEB_APP]
    grants = claims(answer["token"]).video
    assert status == 200 and grants is not None and grants.room == "interp-" + GOOD["room"]
    assert handlers.tokens_issued == 1
    assert handlers.refused == {"access code missing": 4, "access code wrong": 5}
    async with serving(settings()) as client:  # no code set: none needed, one given is ignored
        assert (await post_token(client, GOOD))[0] == 200
        assert (await post_token(client, {**GOOD, "access_code": "anything"}))[0] == 200


async def test_tokens_carry_the_roles_grants_attributes_ttl_and_the_interpreters_dispatch() -> None:
    web = settings(WEB_TOKEN_TTL_S="300", WEB_ROOM_METADATA=METADATA, WEB_LIVEKIT_URL="wss://public.example")
    async with serving(web) as client:
        _, listener = await post_token(client, GOOD)
        _, speaker = await post_token(client, {**GOOD, "role": "speaker", "language": "en", "name": " Bo "})
        _, host = await post_token(client, {**GOOD, "role": "host", "language": "auto", "hear": "de"})
    assert listener["url"] == speaker["url"] == "wss://public.example"  # as the browser should use it
    for answer in (listener, speaker, host):
        assert re.fullmatch(r"web-[0-9a-f]{12}", answer["identity"])
        assert answer["room"] == "interp-board-meeting_2"  # the page's prefix, WEB_ROOM_PREFIX
    assert listener["identity"] != speaker["identity"]
    assert (listener["role"], speaker["role"], host["role"]) == ("listener", "speaker", "host")
    assert "host_key" not in listener and "host_key" not in speaker and host["host_key"]

    heard, said, hosted = claims(listener["token"]), claims(speaker["token"]), claims(host["token"])
    assert heard.video is not None and said.video is not None and hosted.video is not None
    assert (heard.identity, heard.name) == (listener["identity"], "Ana María")
    assert (said.identity, said.name) == (speaker["identity"], "Bo")  # the display name, trimmed
    assert heard.attributes == {**UNHEARD, "interpret_to": "es"} and said.attributes == {
        "listening_to": "none",
        "language": "en",
    }
    assert hosted.attributes == {**UNHEARD, "interpret_to": "de"}
    for grants in (heard.video, said.video, hosted.video):
        assert grants.room_join and grants.room == "interp-" + GOOD["room"] and grants.can_subscribe
        assert grants.can_update_own_metadata and not grants.can_publish_data
        assert not (grants.room_admin or grants.room_create or grants.room_list or grants.agent)
        assert not (grants.room_record or grants.ingress_admin or grants.hidden or grants.recorder)
    assert heard.video.can_publish is False and not heard.video.can_publish_sources
    for publishing in (said.video, hosted.video):  # a host: a speaker's grants, no admin (web_host.py)
        assert publishing.can_publish is True and publishing.can_publish_sources == ["microphone"]
    for token in (listener["token"], speaker["token"], host["token"]):
        raw = jwt.decode(token, options={"verify_signature": False})
        assert raw["exp"] - raw["nbf"] == 300
        config = claims(token).room_config
        assert config is not None and len(config.agents) == 1
        assert config.agents[0].agent_name == "interpreter" and config.agents[0].metadata == METADATA


async def test_a_language_in_any_spelling_is_the_interpreters_one_in_the_token() -> None:
    """A script or a link that writes "ES", "es-MX" or "pt_br" gets the attribute the interpreter names
    tracks by (agent/language/codes.py `participant_language`), so its listener shares the one track."""
    async with serving(settings()) as client:
        _, spanish = await post_token(client, {**GOOD, "language": " ES "})
        _, mexican = await post_token(client, {**GOOD, "language": "es-MX"})
        _, speaker = await post_token(
            client, {**GOOD, "role": "speaker", "language": "pt_br", "hear": "FR-ca"}
        )
    assert (
        claims(spanish["token"]).attributes
        == claims(mexican["token"]).attributes
        == {**UNHEARD, "interpret_to": "es"}
    )
    assert claims(speaker["token"]).attributes == {
        "listening_to": "none",
        "language": "pt",
        "interpret_to": "fr",
    }


async def test_a_speaker_who_picks_detect_gets_no_language_attribute_and_hears_their_choice() -> None:
    async with serving(settings()) as client:
        _, detected = await post_token(client, {**GOOD, "role": "speaker", "language": "auto", "hear": "fr"})
        _, detected_own = await post_token(client, {**GOOD, "role": "speaker", "language": "auto"})
        _, fixed = await post_token(client, {**GOOD, "role": "speaker", "language": "en", "hear": "de"})
        handlers = client.app[WEB_APP]
    # no `language`: the interpreter detects it; `interpret_to`: what they chose to hear
    assert claims(detected["token"]).attributes == {**UNHEARD, "interpret_to": "fr"}
    # nothing chosen to hear: no attribute at all (they hear the language detected)
    assert claims(detected_own["token"]).attributes == UNHEARD
    assert claims(fixed["token"]).attributes == {
        "listening_to": "none",
        "language": "en",
        "interpret_to": "de",
    }
    said = claims(detected["token"]).video
    assert said is not None and said.can_publish and said.can_publish_sources == ["microphone"]
    assert handlers.tokens_issued == 3 and handlers.refused == {}


DETECT_REFUSALS = [
    ({**GOOD, "language": "auto"}, "language 'auto' is for speakers", "auto for listener"),
    ({**GOOD, "language": "es", "hear": "fr"}, "hear is for speakers", "hear for listener"),
    (
        {**GOOD, "role": "speaker", "language": "auto", "hear": "auto"},
        "hear must be one of the supported languages",
        "hear unsupported",
    ),
    (
        {**GOOD, "role": "speaker", "language": "auto", "hear": "tlh"},
        "hear must be one of the supported languages",
        "hear unsupported",
    ),
    (
        {**GOOD, "role": "speaker", "language": "AUTO"},
        "language must be one of the supported",
        "language unsupported",
    ),
]


@pytest.mark.parametrize(("body", "message", "reason"), DETECT_REFUSALS)
async def test_detect_is_for_speakers_and_hear_is_checked(body: object, message: str, reason: str) -> None:
    async with serving(settings()) as client:
        status, answer = await post_token(client, body)
        handlers = client.app[WEB_APP]
    assert status == 400 and answer["error"].startswith(message), answer
    assert handlers.refused == {reason: 1} and handlers.tokens_issued == 0


@pytest.mark.parametrize(
    ("env", "detects"),
    [
        ({}, True),  # SOURCE_LANGUAGE auto is the worker's default
        ({"SOURCE_LANGUAGE": "auto", "DEEPGRAM_MODEL": "nova-3-general"}, True),
        ({"SOURCE_LANGUAGE": "en"}, False),
        ({"DEEPGRAM_MODEL": "nova-2"}, False),  # the worker refuses auto with it
        ({"DEEPGRAM_MODEL": "flux-general-multi"}, True),  # Deepgram Flux's multilingual model
        ({"DEEPGRAM_MODEL": "flux-general-en"}, False),  # English only
        ({"WEB_ROOM_METADATA": '{"source_language": "de"}'}, False),  # the rooms' own setting wins
        ({"SOURCE_LANGUAGE": "en", "WEB_ROOM_METADATA": '{"source_language": "auto"}'}, True),
    ],
)
async def test_config_says_whether_the_interpreter_detects_a_speakers_language(
    env: dict[str, str], detects: bool
) -> None:
    async with serving(settings(**env)) as client:
        config = await (await client.get("/api/config")).json()
        status, answer = await post_token(
            client, {**GOOD, "role": "speaker", "language": "auto", "hear": "es"}
        )
        handlers = client.app[WEB_APP]
    assert config["detect_language"] is detects
    covered = ["en", "es", "fr", "de", "hi", "ru", "pt", "ja", "it", "nl"]  # nova-3 multi's and Flux multi's
    assert config["detected_languages"] == (covered if detects else [])
    if detects:
        assert status == 200 and claims(answer["token"]).attributes == {
            "listening_to": "none",
            "interpret_to": "es",
        }
    else:  # a page that offers no detect gets no token for it either
        assert status == 400 and answer["error"].startswith("language 'auto' is not available"), answer
        assert handlers.refused == {"auto unavailable": 1}


def test_identities_are_random() -> None:
    identities = {new_identity() for _ in range(1000)}
    assert len(identities) == 1000


async def test_no_token_name_room_or_code_in_any_log_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    name, room, code = "Mallory Example", "mallory-room-42", "code-not-to-log"
    async with serving(settings(WEB_ACCESS_CODE=code)) as client:
        request = {**GOOD, "name": name, "room": room}
        _, answer = await post_token(client, {**request, "access_code": code})
        await post_token(client, {**request, "access_code": "guess-not-to-log"})
        await post_token(client, {**request, "language": "tlh", "access_code": code})
    issued = [r for r in caplog.records if r.getMessage() == "token issued"]
    refused = [r for r in caplog.records if r.getMessage() == "token refused"]
    assert len(issued) == 1 and issued[0].__dict__["role"] == "listener"
    assert [(r.__dict__["status"], r.__dict__["reason"]) for r in refused] == [
        (403, "access code wrong"),
        (400, "language unsupported"),
    ]
    for record in caplog.records:
        logged = record.getMessage() + " " + " ".join(map(str, record.__dict__.values()))
        for secret in (name, room, code, "guess-not-to-log", answer["token"], answer["identity"]):
            assert secret not in logged, (record.name, record.getMessage())


async def test_the_page_its_files_and_nothing_else(page_dir: Path) -> None:
    async with serving(settings(), page_dir) as client:
        page = await client.get("/")
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]
        assert "<title>interpreter</title>" in await page.text()
        script = await client.get("/app.js")
        assert script.status == 200 and "javascript" in script.headers["Content-Type"]
        style = await client.get("/style.css")
        assert style.status == 200 and "text/css" in style.headers["Content-Type"]
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        # only what the page uses: its files and LiveKit; the microphone for the page itself; HSTS over HTTPS
        csp = dict(d.split(" ", 1) for d in page.headers["Content-Security-Policy"].split("; "))
        assert csp["default-src"] == "'self'" and csp["frame-ancestors"] == "'none'"
        assert csp["connect-src"] == "'self' ws://127.0.0.1:7880 http://127.0.0.1:7880"
        assert "microphone=(self)" in page.headers["Permissions-Policy"]
        assert "Strict-Transport-Security" not in page.headers
        proxied = await client.get("/", headers={"X-Forwarded-Proto": "https"})
        assert proxied.headers["Strict-Transport-Security"] == "max-age=31536000"
        for outside in (
            "/secret.js",
            "/..%2Fsecret.js",
            "/%2E%2E/secret.js",
            "/web_static/app.js",
            "/missing.js",
        ):
            assert (await client.get(outside)).status == 404, outside
        health = await client.get("/healthz")
        assert health.status == 200 and await health.text() == "OK"
        assert (await client.get("/api/token")).status == 405  # tokens only by POST
    (page_dir / "index.html").unlink()
    async with serving(settings(), page_dir) as client:
        missing = await client.get("/")
        assert missing.status == 503 and "page not built" in await missing.text()


async def test_every_file_the_built_page_names_is_served_its_icon_included() -> None:
    """The committed page (agent/run/web_static/) declares its icon, so a browser does not ask for a
    missing /favicon.ico, and every file it names (href, src) is there."""
    async with serving(settings()) as client:
        page = await (await client.get("/")).text()
        assert re.search(r'<link rel="icon" href="[^"]+"', page), "the page declares no icon"
        named = re.findall(r'(?:href|src)="([^"]+)"', page)
        assert "favicon.svg" in named, named
        for name in named:
            answer = await client.get("/" + name)
            assert answer.status == 200, (name, answer.status)
        icon = await client.get("/favicon.svg")
        assert icon.headers["Content-Type"] == "image/svg+xml"


async def _line(stream: asyncio.StreamReader, within_s: float = 30) -> str:
    return (await asyncio.wait_for(stream.readline(), within_s)).decode()


BASE_ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}


def test_python_m_agent_web_names_every_missing_variable_and_no_provider_key(tmp_path: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "agent", "web"],
        cwd=tmp_path,
        env=BASE_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        assert name in missing.stderr
    assert "DEEPGRAM" not in missing.stderr and "CARTESIA" not in missing.stderr


def test_python_m_agent_web_bound_beyond_this_machine_without_a_code_does_not_start(tmp_path: Path) -> None:
    """A stranger who found it would get tokens for any room: it exits 2 naming the settings, and serves
    nothing; with WEB_OPEN=true it would start (tests/test_config.py)."""
    refused = subprocess.run(
        [sys.executable, "-m", "agent", "web"],
        cwd=tmp_path,
        env={**BASE_ENV, **LIVEKIT, "WEB_PORT": str(free_port())},  # WEB_HOST: 0.0.0.0, the default
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert "WEB_HOST=0.0.0.0" in refused.stderr and "WEB_ACCESS_CODE" in refused.stderr
    assert "WEB_OPEN=true" in refused.stderr


async def test_python_m_agent_web_serves_without_provider_keys_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    web = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "web",
        cwd=tmp_path,
        env={**BASE_ENV, **LIVEKIT, "WEB_PORT": str(port), "WEB_HOST": "127.0.0.1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert web.stdout is not None
        assert await _line(web.stdout) == f"the page: http://127.0.0.1:{port}/\n"
        async with ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                assert health.status == 200
            async with http.post(f"http://127.0.0.1:{port}/api/token", json=GOOD) as response:
                assert response.status == 200 and "token" in await response.json()
        web.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(web.wait(), 30) == 0
        _, errors = await web.communicate()
        logged = [json.loads(line) for line in errors.decode().splitlines() if line.startswith("{")]
        assert any(r["message"] == "token issued" and r["role"] == "listener" for r in logged), errors
    finally:
        if web.returncode is None:
            web.kill()
            await web.wait()


# -- against the real LiveKit server ---------------------------------------------------------------------


def server_settings(server: LiveKitServer, **env: str) -> WebSettings:
    return load_web_settings(
        {
            "LIVEKIT_URL": server.url,
            "LIVEKIT_API_KEY": API_KEY,
            "LIVEKIT_API_SECRET": API_SECRET,
            "WEB_HOST": "127.0.0.1",
            **env,
        }
    )


async def participant_info(server: LiveKitServer, room: str, identity: str) -> Any:
    lk = server.api()
    try:
        found = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
        return next((p for p in found.participants if p.identity == identity), None)
    finally:
        await lk.aclose()


async def test_a_listener_token_cannot_publish_audio_and_a_speakers_can(
    livekit_server: LiveKitServer,
) -> None:
    async with serving(server_settings(livekit_server)) as client:
        _, as_listener = await post_token(client, {**GOOD, "room": f"web-grants-{new_identity()}"})
        room = as_listener["room"]
        _, as_speaker = await post_token(client, {**GOOD, "room": room, "role": "speaker", "language": "en"})
    listener, speaker = Speaker("listener"), Speaker("speaker")  # both try to publish a microphone
    try:
        await listener.connect(as_listener["url"], as_listener["token"])
        await speaker.connect(as_speaker["url"], as_speaker["token"])
        with pytest.raises(PublishTrackError) as refused:  # the server refuses it
            await asyncio.wait_for(listener.publish(), 60)
        await speaker.publish()

        async def sources(identity: str) -> list[int] | None:
            info = await participant_info(livekit_server, room, identity)
            return None if info is None else [t.source for t in info.tracks]

        for _ in range(300):  # the server lists the track once its media flows
            if await sources(as_speaker["identity"]) == [rtc.TrackSource.SOURCE_MICROPHONE]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(
                f"the server never listed the speaker's track: {await sources(as_speaker['identity'])}"
            )
        assert await sources(as_listener["identity"]) == [], str(refused.value)
        info = await participant_info(livekit_server, room, as_listener["identity"])
        assert info.name == GOOD["name"] and dict(info.attributes) == {**UNHEARD, "interpret_to": "es"}
        assert info.permission.can_publish is False and info.permission.can_subscribe is True
    finally:
        await listener.aclose()
        await speaker.aclose()


async def test_a_token_brings_the_interpreter_in_with_the_rooms_settings(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    fakes: Fakes = await start_room_fakes()
    try:
        async with real_room(livekit_server, fakes, tmp_path) as room:
            web = server_settings(
                livekit_server, WEB_ROOM_METADATA='{"target_languages": ["fr"]}', WEB_ROOM_PREFIX="room-"
            )
            async with serving(web) as client:
                _, as_speaker = await post_token(
                    client, {**GOOD, "room": room.name, "role": "speaker", "language": "en"}
                )
                _, as_listener = await post_token(client, {**GOOD, "room": room.name, "language": "de"})
            speaker, listener = Speaker("speaker"), Listener("listener")
            room.participants += [speaker, listener]
            await room.worker_available()  # the server drops a dispatch that finds no available worker
            await speaker.connect(as_speaker["url"], as_speaker["token"])
            await speaker.publish()
            # the room's settings came with the dispatch: French (not the worker's TARGET_LANGUAGE, es),
            # and the speaker's own language, which the speaker hears
            await room.agent_tracks(speaker, "interpretation-fr", "interpretation-en")
            await listener.connect(as_listener["url"], as_listener["token"])
            await room.agent_tracks(listener, "interpretation-fr", "interpretation-en", "interpretation-de")
            # a listener's token lets it change its own language (the page's language switch)
            await listener.room.local_participant.set_attributes({"interpret_to": "it"})
            await room.agent_tracks(listener, "interpretation-fr", "interpretation-en", "interpretation-it")
            speaker.say(read_wav(ONE_SENTENCE.wav))
            await eventually(
                lambda: listener.final_captions(translated=True, language="it") != [],
                within_s=60,
                what="a translated caption in Italian",
            )
            assert room.worker.job_requests(room.name) == 1 + room.dispatched_again
            room.check_worker_output()
    finally:
        await stop_fakes(fakes)


async def test_a_bug_in_a_handler_is_a_500_logged_without_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise ValueError(" ".join(["Ana", "María", "said", "this"]))  # (the traceback shows this line)

    app = create_app(settings())
    app.router.add_get("/broken", broken)  # a handler with a bug, behind the app's own middleware
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/broken")
        assert response.status == 500 and await response.json() == {"error": "internal error"}
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    failed = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert len(failed) == 1 and failed[0].__dict__["error"] == "ValueError" and failed[0].exc_info
    assert "Ana María said this" not in caplog.text and "ValueError (message withheld)" in caplog.text
