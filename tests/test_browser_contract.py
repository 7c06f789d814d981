"""The page under a hostile participant (real Chromium, the real LiveKit server and worker): a participant
who renames themselves to another participant's name after joining is still shown under their own name."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from agent.run.filemode import read_wav
from tests.browser import Browsers, WebServer, join, until
from tests.conftest import ONE_SENTENCE
from tests.real_room import RealRoom
from tests.test_browser import (  # noqa: F401 (room, web: the browser tests' fixtures)
    agent_in_room,
    dom_captions,
    finals,
    joined,
    keep_artifacts,
    room,
    web,
)

if TYPE_CHECKING:
    from playwright.async_api import Page


async def test_a_rename_to_another_participants_name_does_not_change_whose_words_the_page_shows(
    chromium: Browsers,
    room: RealRoom,  # noqa: F811
    web: WebServer,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    deepgram = room.fakes.deepgram
    deepgram.scripts["en"] = ["Please turn on your camera."]
    deepgram.scripts["de"] = ["Good morning, everyone."]
    try:
        await room.worker_available()
        listener = await chromium.page("listener")
        await join(listener, web.url, room=room.name, name="Lena", role="listener", language="es")
        await joined(listener)
        await agent_in_room(room, listener)
        alice = await room.speaker("alice", attributes={"language": "en"}, name="Alice")
        mallory = await room.speaker("mallory", attributes={"language": "de"}, name="Mallory")

        async def names_shown() -> dict[str, set[str]]:
            shown = await dom_captions(listener)
            return {text: {s.speaker for s in shown if s.text == text} for text in {s.text for s in shown}}

        await until(lambda: _shows(listener, "Mallory"), within_s=60, what="the page to know mallory's name")
        await mallory.room.local_participant.set_name("Alice")  # after joining: another participant's name
        alice.say(read_wav(ONE_SENTENCE.wav))
        mallory.say(read_wav(ONE_SENTENCE.wav))

        async def both_translated() -> bool:
            return len(finals(await dom_captions(listener), "translation", "es")) == 2

        await until(both_translated, within_s=120, what="both Spanish translations on the listener's page")
        by_text = await names_shown()
        assert by_text["Por favor, enciende tu cámara."] == {"Alice"}, by_text
        assert by_text["Buenos días a todos."] == {"Mallory"}, by_text  # not "Alice"
        assert by_text["Good morning, everyone."] == {"Mallory"}, by_text  # her words as she said them
    except BaseException:
        await keep_artifacts(request, chromium, room, web)
        raise


async def _shows(page: Page, name: str) -> bool:
    """Whether the page has seen a participant of this name (its room's remote participants)."""
    return bool(
        await page.evaluate(
            "(name) => [...window.interpreterPage.room.remoteParticipants.values()]"
            ".some((p) => p.name === name)",
            name,
        )
    )
