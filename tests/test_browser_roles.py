"""The page's roles in a real browser (headless Chromium, tests/browser.py) against the local LiveKit server
and `python -m agent web` with an access code (the host's): the host joins with it, sets the room's
languages and makes invite links in the host panel; a listener's "listen in Spanish" link joins as a
listener (room and role fixed, no code, no microphone, no host panel) and cannot get a speaker's token or
reach the host's controls; the host ends the interpretation."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from livekit import api

from tests.browser import Browsers, WebServer, fill_join, web_server
from tests.conftest import ONE_SENTENCE
from tests.livekit_server import LiveKitServer
from tests.test_browser import joined, keep_artifacts, microphone_on, submit

if TYPE_CHECKING:
    from playwright.async_api import Page, Route

CODE = "host-only-code"

FETCH = """async ([path, body, bearer]) => {
  const headers = {'Content-Type': 'application/json'};
  if (bearer) headers.Authorization = 'Bearer ' + bearer;
  const response = await fetch(path, {method: 'POST', headers, body: JSON.stringify(body)});
  return [response.status, await response.json()];
}"""


async def post_from(
    page: Page, path: str, body: dict[str, Any], bearer: str | None = None
) -> tuple[int, Any]:
    """What the page's own origin gets from the web server (as a script on the page could ask)."""
    status, answer = await page.evaluate(FETCH, [path, body, bearer])
    return int(status), answer


def with_role(invite: str, role: str) -> str:
    body, signature = invite.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    changed = base64.urlsafe_b64encode(json.dumps({**payload, "role": role}).encode()).rstrip(b"=")
    return changed.decode() + "." + signature


async def permission(server: LiveKitServer, room: str) -> dict[str, Any]:
    """Each participant of `room` by name: whether LiveKit lets it publish."""
    lk = server.api()
    try:
        listed = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
        return {p.name: p.permission.can_publish for p in listed.participants}
    finally:
        await lk.aclose()


async def test_a_listeners_link_joins_as_a_listener_and_only_the_host_has_controls(
    chromium: Browsers, livekit_server: LiveKitServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    web: WebServer | None = None
    try:
        # each browser its own client address, as the proxy in front would say (the limits are per address)
        env = {"WEB_ACCESS_CODE": CODE, "WEB_CLIENT_IP_HEADER": "X-Test-Client"}
        async with web_server(livekit_server, tmp_path / "web", **env) as web:
            host = await chromium.page("host", microphone=ONE_SENTENCE.wav)
            await host.set_extra_http_headers({"X-Test-Client": "192.0.2.1"})

            saved = asyncio.Event()

            async def late(route: Route) -> None:  # the panel's first read of the room comes back late (as
                answer = await route.fetch()  # on a busy server): after the host's save, or 5 s; what the
                with contextlib.suppress(TimeoutError):  # host typed and saved is not overwritten by it
                    await asyncio.wait_for(saved.wait(), 5)
                await route.fulfill(response=answer)

            await host.route("**/api/room", late)
            await fill_join(host, web.url, room="board", name="Hana", role="host", language="en")
            await host.fill("#access-code", CODE)
            status, grant = await submit(host)
            assert status == 200 and grant["role"] == "host" and grant["room"] == "room-board", grant
            await joined(host)
            await microphone_on(host)  # a host speaks as a speaker does
            await host.locator("#host-panel").wait_for(state="visible")
            await host.wait_for_function(
                "() => document.querySelector('#room-speakers').textContent.includes('Hana (you)')"
            )

            # the room's languages, from the panel: then a "listen in Spanish" link
            await host.fill("#room-languages", "es")
            await host.select_option("#room-formality", "formal")
            await host.click("#save-settings")
            await host.wait_for_function(
                "() => document.querySelector('#room-settings-status').textContent.startsWith('Saved')"
            )
            saved.set()
            await host.click("#make-links")
            spanish = host.locator("#invite-links li[data-language='es'] input")
            await spanish.wait_for(state="attached")
            assert await host.locator("#invite-links li[data-role='speaker']").count() == 1
            link = await spanish.input_value()
            assert link.startswith(f"{web.url}/#invite=") and CODE not in link

            listener = await chromium.page("listener")
            await listener.set_extra_http_headers({"X-Test-Client": "192.0.2.2"})
            await listener.goto(link)
            await listener.locator("#invite-role").wait_for(state="visible")
            assert "listen" in await listener.locator("#invite-role").inner_text()
            assert not await listener.locator("#role-field").is_visible()
            assert not await listener.locator("#access-code-field").is_visible()
            assert await listener.locator("#room").input_value() == "board"
            assert await listener.locator("#room").get_attribute("readonly") is not None
            await listener.locator("#language option").first.wait_for(state="attached")
            assert await listener.locator("#language").input_value() == "es"  # the link's language
            await listener.fill("#name", "Lena")
            status, as_listener = await submit(listener)
            assert status == 200 and as_listener["role"] == "listener" and "host_key" not in as_listener
            await joined(listener)
            assert not await listener.locator("#mic-field").is_visible()
            assert not await listener.locator("#host-panel").is_visible()
            assert (await permission(livekit_server, "room-board")) == {"Hana": True, "Lena": False}

            # what a script on the listener's page could try with its link
            invite = link.split("#invite=", 1)[1]
            join = {"invite": invite, "name": "Lena", "language": "es"}
            for body, error in (
                ({**join, "role": "speaker"}, "this invite link is for a listener"),
                ({**join, "role": "host"}, "this invite link is for a listener"),
                ({**join, "invite": with_role(invite, "speaker")}, "the invite link is not valid"),
                ({**join, "room": "other-room"}, "this invite link is for another room"),
            ):
                status, answer = await post_from(listener, "api/token", body)
                assert status == 403 and answer["error"].startswith(error), (body, answer)
            status, answer = await post_from(listener, "api/room/end", {}, bearer=invite)
            assert status == 403 and answer["error"].startswith("the host key"), answer
            # five refused tries (CODE_TRIES): this address is blocked now, its own link included
            assert (await post_from(listener, "api/token", join))[0] == 429
            assert (await permission(livekit_server, "room-board"))["Lena"] is False

            # the host ends the interpretation (after saying yes), and may start it again
            host.on("dialog", lambda dialog: dialog.accept())
            await host.click("#end-interpretation")
            await host.wait_for_function(
                "() => document.querySelector('#end-interpretation').dataset.interpreting === 'false'"
            )
            lk = livekit_server.api()
            try:
                assert await lk.agent_dispatch.list_dispatch("room-board") == []
                listed = await lk.room.list_rooms(api.ListRoomsRequest(names=["room-board"]))
                assert json.loads(listed.rooms[0].metadata) == {
                    "target_languages": ["es"],
                    "formality": "formal",
                }
            finally:
                await lk.aclose()
    except BaseException:
        if web is not None:
            await keep_artifacts(request, chromium, None, web)
        raise
