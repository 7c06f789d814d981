"""Roles on the page are a boundary (`agent/run/invites.py`, `web_roles.py`, `web_host.py`): signed invite
links fix the room and the role, a listener's link never mints a speaker's or a host's token, tokens only
for the page's own rooms (WEB_ROOM_PREFIX), and only a host's key reaches the host's controls. Against the
real LiveKit server: a host's settings reach the interpreter, and a host's end sticks (the keeper does not
bring the interpreter back)."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from livekit import api

from agent.room.room_io import ATTR_LISTENING_TO, NOT_LISTENING
from agent.run.invites import HOST_PURPOSE, INVITE_PURPOSE, Invite, derive_key, in_prefix, sign
from agent.run.keeper import Keeper
from agent.run.web import WEB_APP
from agent.run.web_limits import CODE_TRIES, HOST_BURST, Limits
from agent.settings.config import ConfigError
from tests.conftest import Fakes, start_room_fakes, stop_fakes
from tests.livekit_server import API_SECRET, LiveKitServer
from tests.loopback import eventually, eventually_async
from tests.participants import Participant
from tests.real_room import real_room
from tests.test_web import GOOD, claims, post_token, server_settings, serving, settings

# every page token says its participant plays no interpretation yet (the page says when it does)
UNHEARD = {ATTR_LISTENING_TO: NOT_LISTENING}

CODE = "host-code-1234"
ROOM = "interp-board-meeting_2"
JOIN = {"name": "Lena", "language": "es"}  # what the page sends with an invite


def roomy() -> Limits:
    """Limits that these tests, which make many requests from one address, do not reach."""
    return Limits(code_tries=100, request_burst=100)


def key(purpose: bytes = INVITE_PURPOSE, secret: str = API_SECRET) -> bytes:
    return derive_key(secret, purpose)


def signed(room: str = ROOM, role: str = "listener", exp_in_s: int = 3600, **extra: str) -> str:
    return sign(key(), Invite(room=room, role=role, exp=int(time.time()) + exp_in_s, **extra))  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_payload(invite: str, **changes: object) -> str:
    """`invite` with its payload changed and its signature kept (what an attacker can do)."""
    body, signature = invite.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return b64(json.dumps({**payload, **changes}).encode()) + "." + signature


async def host_call(
    client: TestClient[Any, Any], path: str, host_key: str | None, body: object = None
) -> tuple[int, dict[str, Any]]:
    headers = {} if host_key is None else {"Authorization": f"Bearer {host_key}"}
    if path == "/api/room":
        response = await client.get(path, headers=headers)
    else:
        response = await client.post(path, json=body or {}, headers=headers)
    return response.status, await response.json()


async def as_host(client: TestClient[Any, Any], room: str = "board-meeting_2") -> dict[str, Any]:
    status, host = await post_token(
        client, {**GOOD, "room": room, "role": "host", "language": "en", "access_code": CODE}
    )
    assert status == 200 and host["role"] == "host", host
    return host


async def test_a_hosts_links_join_in_their_role_and_room_and_nobody_else_needs_the_code() -> None:
    async with serving(settings(WEB_ACCESS_CODE=CODE), limits=roomy()) as client:
        # without the code and without a link: nothing (the code is the host's)
        assert (await post_token(client, {**GOOD, "role": "listener"}))[0] == 403
        host = await as_host(client)
        assert claims(host["token"]).video.room == ROOM  # type: ignore[union-attr]
        links = {}
        for role, language in (("listener", "es"), ("listener", None), ("speaker", None)):
            body = {"role": role, "expires_in_s": 3600} | ({"language": language} if language else {})
            status, made = await host_call(client, "/api/invite", host["host_key"], body)
            assert status == 200 and made["room"] == ROOM and made["role"] == role, made
            assert made["exp"] - time.time() == pytest.approx(3600, abs=60)
            links[role, language] = made["invite"]
        for (role, _), invite in links.items():
            status, answer = await post_token(client, {"invite": invite, **JOIN})  # no room, role nor code
            grant = claims(answer["token"])
            assert status == 200 and answer["role"] == role and answer["room"] == ROOM, answer
            assert grant.video is not None and grant.video.room == ROOM
            assert grant.video.can_publish is (role == "speaker") and "host_key" not in answer
        # the language a listener's link names is a suggestion: the listener still picks (its attribute)
        status, answer = await post_token(
            client, {"invite": links["listener", "es"], **JOIN, "language": "fr"}
        )
        assert status == 200 and claims(answer["token"]).attributes == {
            "listening_to": "none",
            "interpret_to": "fr",
        }
        # the same room named, or the same role asked for, is fine
        same = {"invite": links["speaker", None], **JOIN, "room": "board-meeting_2", "role": "speaker"}
        assert (await post_token(client, same))[0] == 200
        handlers = client.app[WEB_APP]
    assert handlers.refused == {"access code missing": 1}


def expired() -> str:
    return signed(exp_in_s=-1)


# (what is posted to /api/token, the error, the reason logged): each a 403, each counted as a refused code
INVITE_ATTACKS: list[tuple[str, Any, str, str]] = [
    ("forged signature", lambda: signed()[:-4] + "AAAA", "the invite link is not valid", "invite forged"),
    (
        "role changed in the payload",
        lambda: with_payload(signed(), role="speaker"),
        "the invite link is not valid",
        "invite forged",
    ),
    (
        "host key as an invite",
        lambda: sign(key(HOST_PURPOSE), Invite(ROOM, "host", 2**40)),
        "the invite link is not valid",
        "invite forged",
    ),
    (
        "another secret",
        lambda: sign(key(secret="x" * 40), Invite(ROOM, "speaker", 2**40)),
        "the invite link is not valid",
        "invite forged",
    ),
    ("expired", expired, "the invite link has expired", "invite expired"),
    (
        "another room of the project",
        lambda: signed(room="other-apps-room"),
        "the invite link is for a room this page does not serve",
        "invite room outside prefix",
    ),
    ("truncated", lambda: signed().split(".")[0], "the invite link is malformed", "invite malformed"),
    ("not base64", lambda: "%%%.%%%", "the invite link is malformed", "invite malformed"),
    ("empty", lambda: "", "the invite link is malformed", "invite malformed"),
    ("not text", lambda: {"room": ROOM, "role": "host"}, "the invite link is malformed", "invite malformed"),
    ("huge", lambda: "a" * 5000 + "." + "b" * 50, "the invite link is malformed", "invite malformed"),
]
ROLE_ATTACKS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "a speaker's token from a listener's link",
        {"role": "speaker"},
        "this invite link is for a listener",
        "invite role mismatch",
    ),
    (
        "a host's token from a listener's link",
        {"role": "host"},
        "this invite link is for a listener",
        "invite role mismatch",
    ),
    (
        "another room with a listener's link",
        {"room": "other"},
        "this invite link is for another room",
        "invite room mismatch",
    ),
    (
        "another project room with a listener's link",
        {"room": "other-apps-room"},
        "this invite link is for another room",
        "invite room mismatch",
    ),
]


@pytest.mark.parametrize(
    ("what", "invite", "message", "reason"), INVITE_ATTACKS, ids=[a[0] for a in INVITE_ATTACKS]
)
async def test_a_bad_invite_is_a_403_naming_why_and_counts_as_a_refused_code(
    what: str, invite: Any, message: str, reason: str
) -> None:
    async with serving(settings(WEB_ACCESS_CODE=CODE)) as client:
        for _ in range(CODE_TRIES):
            status, answer = await post_token(client, {"invite": invite(), **JOIN})
            assert status == 403 and answer["error"].startswith(message), (what, answer)
        # the address is blocked now, a good link included
        blocked = await client.post("/api/token", json={"invite": signed(), **JOIN})
        assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 60
        handlers = client.app[WEB_APP]
    assert handlers.refused == {reason: CODE_TRIES, "rate limited": 1} and handlers.tokens_issued == 0


@pytest.mark.parametrize(
    ("what", "asked", "message", "reason"), ROLE_ATTACKS, ids=[a[0] for a in ROLE_ATTACKS]
)
async def test_a_listeners_link_never_mints_another_role_or_room(
    what: str, asked: dict[str, Any], message: str, reason: str
) -> None:
    async with serving(settings(WEB_ACCESS_CODE=CODE)) as client:
        status, answer = await post_token(client, {"invite": signed(), **JOIN, **asked})
        handlers = client.app[WEB_APP]
    assert status == 403 and answer == {"error": message}, what
    assert handlers.refused == {reason: 1} and handlers.tokens_issued == 0
    assert handlers.limits.request("127.0.0.1") == 0  # one refused code of CODE_TRIES


async def test_tokens_only_for_the_pages_own_rooms() -> None:
    """Whatever room name is asked for, the token is for a room under the prefix: a name with the prefix
    already is kept, any other is put under it (another app's room name cannot be reached)."""
    async with serving(settings(WEB_ROOM_PREFIX="conf_"), limits=roomy()) as client:
        rooms = {}
        for asked in ("board", "conf_board", "other-apps-room", "interp-x", "conf_", "_"):
            status, answer = await post_token(client, {**GOOD, "room": asked})
            assert status == 200, answer
            rooms[asked] = claims(answer["token"]).video.room  # type: ignore[union-attr]
        config = await (await client.get("/api/config")).json()
    assert rooms == {
        "board": "conf_board",
        "conf_board": "conf_board",
        "other-apps-room": "conf_other-apps-room",
        "interp-x": "conf_interp-x",
        "conf_": "conf_conf_",
        "_": "conf__",
    }
    assert all(in_prefix(room, "conf_") for room in rooms.values()) and config["room_prefix"] == "conf_"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"WEB_ROOM_PREFIX": "a b"}, "WEB_ROOM_PREFIX='a b' is malformed"),
        ({"WEB_ROOM_PREFIX": "p" * 33}, "is malformed"),
        ({"WEB_INVITE_SECRET": "short"}, "WEB_INVITE_SECRET is too short"),
    ],
)
def test_a_bad_prefix_or_invite_secret_does_not_start(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        settings(**env)


async def test_rotating_the_secret_revokes_every_link_and_host_key() -> None:
    async with serving(settings(WEB_ACCESS_CODE=CODE)) as client:
        host = await as_host(client)
        _, made = await host_call(client, "/api/invite", host["host_key"], {"role": "speaker"})
    assert made["exp"] - time.time() == pytest.approx(24 * 3600, abs=60)  # a day by default
    own = "s" * 40
    async with serving(settings(WEB_ACCESS_CODE=CODE, WEB_INVITE_SECRET=own)) as client:
        assert (await post_token(client, {"invite": made["invite"], **JOIN}))[0] == 403
        assert (await host_call(client, "/api/invite", host["host_key"], {"role": "speaker"}))[0] == 403
        invite = sign(derive_key(own, INVITE_PURPOSE), Invite(ROOM, "speaker", 2**40))
        assert (await post_token(client, {"invite": invite, **JOIN}))[0] == 200


HOST_KEY_ATTACKS: list[tuple[str, Any, str]] = [
    ("none", lambda host, listener: None, "host key missing"),
    ("a listener's LiveKit token", lambda host, listener: listener["token"], "host key malformed"),
    ("the host's LiveKit token", lambda host, listener: host["token"], "host key malformed"),
    (
        "a host invite link",
        lambda host, listener: sign(key(), Invite(ROOM, "host", 2**40)),
        "host key forged",
    ),
    ("a key tampered with", lambda host, listener: host["host_key"][:-2] + "AA", "host key forged"),
    (
        "a listener's key",
        lambda host, listener: sign(key(HOST_PURPOSE), Invite(ROOM, "listener", 2**40)),
        "host key not a host's",
    ),
    ("expired", lambda host, listener: sign(key(HOST_PURPOSE), Invite(ROOM, "host", 1)), "host key expired"),
    (
        "another project room",
        lambda host, listener: sign(key(HOST_PURPOSE), Invite("x", "host", 2**40)),
        "host key room outside prefix",
    ),
]


@pytest.mark.parametrize(("what", "bearer", "reason"), HOST_KEY_ATTACKS, ids=[a[0] for a in HOST_KEY_ATTACKS])
@pytest.mark.parametrize(
    "path", ["/api/invite", "/api/room", "/api/room/settings", "/api/room/end", "/api/room/start"]
)
async def test_only_a_host_key_reaches_the_hosts_controls(
    what: str, bearer: Any, reason: str, path: str
) -> None:
    async with serving(settings(WEB_ACCESS_CODE=CODE), limits=roomy()) as client:
        host = await as_host(client)
        _, listener = await post_token(client, {**GOOD, "access_code": CODE})
        status, answer = await host_call(client, path, bearer(host, listener), {"role": "host"})
        handlers = client.app[WEB_APP]
    assert status == 403 and answer["error"].startswith(("host key required", "the host key")), (what, answer)
    assert sum(handlers.refused.values()) == 0  # the token endpoint's: the host's are counted on their own


async def test_bad_host_keys_block_the_address_as_wrong_codes_do() -> None:
    async with serving(settings(WEB_ACCESS_CODE=CODE)) as client:
        host = await as_host(client)
        for _ in range(CODE_TRIES):
            assert (await host_call(client, "/api/invite", "guess.guess", {"role": "host"}))[0] == 403
        blocked = await client.post(
            "/api/invite", json={"role": "speaker"}, headers={"Authorization": "Bearer " + host["host_key"]}
        )
        assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 60


async def test_a_host_key_makes_links_for_its_own_room_only_and_checks_what_it_asks() -> None:
    async with serving(settings(), limits=roomy()) as client:  # an open page: anyone may host
        a, b = await as_host(client, "room-a"), await as_host(client, "room-b")
        _, made = await host_call(
            client, "/api/invite", a["host_key"], {"role": "speaker", "room": "interp-room-b"}
        )
        assert made["room"] == "interp-room-a"  # the key's room, whatever the body says
        _, made_b = await host_call(client, "/api/invite", b["host_key"], {"role": "listener"})
        assert made_b["room"] == "interp-room-b"
        for body, message in (
            ({"role": "admin"}, "role must be"),
            ({"role": "speaker", "expires_in_s": 10}, "expires_in_s must be 60 to 2592000"),
            ({"role": "speaker", "expires_in_s": 10**9}, "expires_in_s must be"),
            ({"role": "speaker", "expires_in_s": "3600"}, "expires_in_s must be"),
            ({"role": "speaker", "language": "es"}, "language is for a listener's link"),
            ({"role": "listener", "language": "tlh"}, "language is for a listener's link"),
            ([1], "the body must be a JSON object"),
        ):
            status, answer = await host_call(client, "/api/invite", a["host_key"], body)
            assert status == 400 and answer["error"].startswith(message), (body, answer)
        status, answer = await host_call(client, "/api/room/settings", a["host_key"], {"voices": {}})
        assert status == 400 and answer["error"].startswith("settings are target_languages"), answer
        status, answer = await host_call(
            client, "/api/room/settings", a["host_key"], {"target_languages": ["tlh"], "formality": "rude"}
        )
        assert status == 400 and "tlh" in answer["error"] and "rude" in answer["error"], answer


# -- against the real LiveKit server ---------------------------------------------------------------------


async def room_metadata(server: LiveKitServer, room: str) -> dict[str, Any]:
    lk = server.api()
    try:
        listed = await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))
        return dict(json.loads(listed.rooms[0].metadata or "{}"))
    finally:
        await lk.aclose()


async def test_a_hosts_settings_reach_the_interpreter_and_ending_it_sticks(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    """The host sets the room's languages, glossary and formality (merged into the room's metadata, which
    the interpreter applies); removing the interpreter alone would bring it back (the keeper re-dispatches
    a room that asked for one), but the host's end deletes the room's dispatch: the keeper leaves the room
    alone. Start brings it back."""
    fakes: Fakes = await start_room_fakes()
    keeper: Keeper | None = None
    try:
        async with real_room(livekit_server, fakes, tmp_path) as room:
            web = server_settings(livekit_server, WEB_ROOM_PREFIX="room-", WEB_ACCESS_CODE=CODE)
            keeper = Keeper(web.livekit, web.agent_name, 600)
            keeper.start()  # (a sweep every 10 minutes: the test sweeps by hand)
            lk = livekit_server.api()
            async with serving(web) as client, contextlib.aclosing(lk):
                status, host = await post_token(
                    client, {**GOOD, "room": room.name, "role": "host", "language": "en", "access_code": CODE}
                )
                assert status == 200 and host["room"] == room.name, host
                key_ = host["host_key"]
                assert (await host_call(client, "/api/room", key_))[0] == 409  # nobody has joined yet
                person = Participant("host")
                room.participants.append(person)
                await room.worker_available()
                await person.connect(host["url"], host["token"])
                await room.agent_tracks(
                    person, "interpretation-en", "interpretation-es"
                )  # TARGET_LANGUAGE es
                status, answer = await host_call(client, "/api/room", key_)
                assert (status, answer) == (200, {"room": room.name, "settings": {}, "interpreting": True})

                wanted = {"target_languages": ["fr"], "formality": "formal", "glossary": {"keep": ["Acme"]}}
                status, answer = await host_call(client, "/api/room/settings", key_, wanted)
                assert status == 200 and answer["settings"] == wanted, answer
                await room.agent_tracks(person, "interpretation-en", "interpretation-fr")
                status, answer = await host_call(client, "/api/room/settings", key_, {"formality": None})
                assert answer["settings"] == {"target_languages": ["fr"], "glossary": {"keep": ["Acme"]}}
                assert await room_metadata(livekit_server, room.name) == answer["settings"]
                # removing the interpreter alone: the keeper brings it back
                first = person.agent()
                assert first is not None and "interpreter.warnings" not in first.attributes
                await lk.room.remove_participant(
                    api.RoomParticipantIdentity(room=room.name, identity=first.identity)
                )
                await eventually(lambda: person.agent() is None, within_s=30, what="the interpreter removed")

                async def swept_back() -> bool:
                    await keeper.sweep()
                    return person.agent() is not None

                await eventually_async(swept_back, within_s=60, what="the keeper bringing it back")

                # the host's end: gone, and it stays gone
                status, answer = await host_call(client, "/api/room/end", key_)
                assert status == 200 and answer["dispatches_deleted"] >= 1, answer
                await eventually(lambda: person.agent() is None, within_s=30, what="the interpreter gone")
                for _ in range(3):
                    assert await keeper.sweep() == {}
                assert person.agent() is None and not await lk.agent_dispatch.list_dispatch(room.name)
                assert (await host_call(client, "/api/room", key_))[1]["interpreting"] is False

                status, answer = await host_call(client, "/api/room/start", key_)
                assert (status, answer) == (200, {"room": room.name, "interpreting": True})
                await room.agent_tracks(person, "interpretation-en", "interpretation-fr")
            room.check_worker_output()
    finally:
        if keeper is not None:
            await keeper.aclose()
        await stop_fakes(fakes)


def test_a_hosts_requests_have_their_own_bucket_and_a_blocked_address_gets_none() -> None:
    limits = Limits(clock=lambda: 1000.0)
    assert [limits.host_request("a") for _ in range(HOST_BURST)] == [0] * HOST_BURST
    assert limits.host_request("a") > 0 and limits.request("a") == 0  # its tokens untouched
    for _ in range(CODE_TRIES):
        limits.code_refused("b")
    assert limits.host_request("b") > 60  # guessing host keys blocks it as guessing codes does


async def test_no_invite_host_key_or_room_in_any_log_record(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(settings(WEB_ACCESS_CODE=CODE), limits=roomy()) as client:
        host = await as_host(client, "secret-room-name")
        _, made = await host_call(client, "/api/invite", host["host_key"], {"role": "listener"})
        await post_token(client, {"invite": made["invite"], **JOIN})
        await post_token(client, {"invite": with_payload(made["invite"], role="host"), **JOIN})
        await host_call(client, "/api/invite", made["invite"], {"role": "host"})
    refused = [r.__dict__["reason"] for r in caplog.records if "refused" in r.getMessage()]
    assert refused == ["invite forged", "host key forged"]
    for record in caplog.records:
        logged = record.getMessage() + " " + " ".join(map(str, record.__dict__.values()))
        for secret in (made["invite"], host["host_key"], "secret-room-name", CODE):
            assert secret not in logged, (record.name, record.getMessage())
