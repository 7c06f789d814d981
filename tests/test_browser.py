"""The page in a real browser: headless Debian Chromium (Playwright, tests/browser.py) against the local
LiveKit server, the real worker (tests/real_room.py) and the fake providers, the page served by
`python -m agent web`. A speaker's microphone is a committed WAV (Chromium's fake capture device, which plays
the file in a loop); a listener picks a language, reads the captions and hears the interpretation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from livekit import api, rtc

from agent.room.presence import STALE_S
from agent.room.room_io import ATTR_LISTENING_TO, NOT_LISTENING
from tests.browser import (
    AGENT_STATE_RECORDER,
    BEAT_RECORDER,
    CAPTION_RECORDER,
    Browsers,
    CaptionState,
    WebServer,
    agent_state_log,
    agent_states,
    agent_tracks,
    beat_gaps,
    caption_log,
    fill_join,
    join,
    responder_by_language,
    subscribed,
    tracks_by_agent,
    until,
    wait_state,
    web_server,
)
from tests.conftest import ARTIFACTS, DIALOGUE, ONE_SENTENCE, SPANISH, Fakes, stop_fakes
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.livekit_server import LiveKitServer
from tests.loopback import eventually
from tests.participants import Participant
from tests.real_room import RealRoom, real_room
from tests.room_worker import WorkerProcess

if TYPE_CHECKING:  # Playwright itself is imported by the chromium fixture: missing, the tests skip
    from playwright.async_api import Page

SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
# the speaker's microphone: "Please turn on your camera." between silences, looped by Chromium; the fake
# Deepgram hears a speech segment every loop, and answers only as many as the test scripts (the rest are
# ignored), so the test says when something is said
MICROPHONE = ONE_SENTENCE.wav
SAID = ["Good morning, everyone.", "Please turn on your camera."]
TRANSLATIONS = {
    "Good morning": {"Spanish": "Buenos días a todos.", "French": "Bonjour à tous."},
    "camera": {"Spanish": "Por favor, enciende tu cámara.", "French": "Veuillez allumer votre caméra."},
    "would like": {"French": "Je voudrais"},
    "thank Maria": {"French": "remercier Maria,"},
    "worked late": {"French": "qui a travaillé tard."},
}
# one sentence said in pieces, one a loop of the microphone (its pauses, 1.4 s, are shorter than
# SENTENCE_PAUSE_S): only the last ends with a sentence mark
PIECES = ["I would like", "to thank Maria,", "who worked late."]
FRENCH_PIECES = ["Je voudrais", "remercier Maria,", "qui a travaillé tard."]
# the page's interpreter line without a live interpreter: none came yet, or the one it had was lost
NO_INTERPRETER = ("waiting", "reconnecting")
AGENT_PRESENT = (
    "() => { const el = document.querySelector('#agent-state');"
    " return !!el && !!el.dataset.state && !['waiting', 'reconnecting'].includes(el.dataset.state); }"
)
# what a page sets on its participant: the interpretation it receives, or none (web/src/agent.ts)
# True once the heartbeat (`interpreter.alive`, another part of issue 20) is merged: then an interpreter that
# does not beat fails the lost-interpreter test, instead of the test removing it through the API
HEARTBEAT_MERGED = True


async def start_browser_fakes(
    deepgram: FakeDeepgram | None = None, translations: dict[str, dict[str, str]] = TRANSLATIONS
) -> Fakes:
    """Nothing scripted yet for English (unless `deepgram` says otherwise); translations in the language
    the prompt asks for."""
    respond = responder_by_language(translations)
    fakes = Fakes(
        deepgram=deepgram or FakeDeepgram({"en": []}),
        cerebras=FakeLLM(responder=respond),
        groq=FakeLLM(responder=respond),
        cartesia=FakeCartesia(freq_for=lambda text: 500.0),
    )
    for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await server.start()
    return fakes


@contextlib.asynccontextmanager
async def browser_room(
    livekit_server: LiveKitServer, fakes: Fakes, tmp_path: Path
) -> AsyncIterator[RealRoom]:
    """The worker in a real room against `fakes` (started), which are stopped at the end."""
    try:
        async with real_room(livekit_server, fakes, tmp_path / "worker", STT_ENDPOINTING_MS="600") as room:
            yield room
            room.check_worker_output()
    finally:
        await stop_fakes(fakes)


@pytest.fixture
async def room(livekit_server: LiveKitServer, tmp_path: Path) -> AsyncIterator[RealRoom]:
    async with browser_room(livekit_server, await start_browser_fakes(), tmp_path) as room:
        yield room


@pytest.fixture
async def web(livekit_server: LiveKitServer, tmp_path: Path) -> AsyncIterator[WebServer]:
    async with web_server(livekit_server, tmp_path / "web") as web:
        yield web


async def keep_artifacts(
    request: pytest.FixtureRequest, browsers: Browsers, room: RealRoom | None, web: WebServer
) -> None:
    tail = web.tail() + "\n" + (room.worker.tail(120) if room is not None else "")
    await browsers.keep_artifacts(ARTIFACTS / f"browser-{request.node.name}", tail)


async def joined(page: Page) -> None:
    await page.locator("#session").wait_for(state="visible")
    await page.locator("#join-form").wait_for(state="hidden")
    await wait_state(page, "#connection", "connected")


async def agent_in_room(room: RealRoom, page: Page, *, wait_ms: float = 8_000) -> None:
    """Wait until the page shows the interpreter in the room; dispatch it again through the API if the
    server dropped the page's token dispatch (see `RealRoom.dispatch_again_if_dropped`)."""
    for _ in range(30):
        try:
            await page.wait_for_function(AGENT_PRESENT, timeout=wait_ms)
            return
        except Exception as error:  # playwright's TimeoutError
            if type(error).__name__ != "TimeoutError":
                raise
            if not await room.dispatch_again_if_dropped() and not room.worker.job_requests(room.name):
                raise AssertionError("the interpreter never joined the page's room") from None
    raise AssertionError("the interpreter never joined the page's room")


async def job_started(room: RealRoom) -> None:
    """Wait until the worker got the room's job, without looking at a page (dispatching it again through
    the API if the server dropped the page's token dispatch)."""
    for _ in range(30):
        try:
            await eventually(lambda: room.worker.job_requests(room.name) > 0, within_s=8, what="the job")
            return
        except AssertionError:
            await room.dispatch_again_if_dropped()
    raise AssertionError("the worker never got the page's room")


class Declared:
    """The `listening_to` of a page's participant (found by its name), as another participant in the room sees
    it: its value now, and the values it took while watched."""

    def __init__(self, observer: Participant, name: str) -> None:
        self.observer = observer
        self.name = name
        self.values: list[str] = []
        observer.room.on("participant_attributes_changed", self._changed)

    def _changed(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        if participant.name == self.name and ATTR_LISTENING_TO in changed:
            self.values.append(changed[ATTR_LISTENING_TO])

    async def now_is(self, value: str) -> bool:
        participants = self.observer.room.remote_participants.values()
        return any(p.name == self.name and p.attributes.get(ATTR_LISTENING_TO) == value for p in participants)


async def server_has(server: LiveKitServer, room: str, name: str, listening_to: str) -> bool:
    """The server has the participant named `name` with this `listening_to` (its API, no participant)."""
    lk = server.api()
    try:
        found = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
    finally:
        await lk.aclose()
    return any(
        p.name == name and p.attributes.get(ATTR_LISTENING_TO) == listening_to for p in found.participants
    )


async def dom_captions(page: Page) -> list[CaptionState]:
    """The captions on screen now, in document order."""
    states = await page.evaluate(
        """() => [...document.querySelectorAll('#captions .caption')].map((el) => ({
            segment: el.dataset.segmentId || '', kind: el.dataset.kind || '',
            language: el.dataset.language || '', final: el.dataset.final === 'true',
            speaker: (el.querySelector('.caption-speaker')?.textContent || '').trim(),
            text: (el.querySelector('.caption-text')?.textContent || '').trim()}))"""
    )
    return [CaptionState(**s) for s in states]


def finals(states: list[CaptionState], kind: str, language: str | None = None) -> list[CaptionState]:
    return [s for s in states if s.final and s.kind == kind and language in (None, s.language)]


def interim_then_final(log: list[CaptionState], segment: str) -> bool:
    """The segment showed as not final, then as final (and never went back)."""
    flags = [s.final for s in log if s.segment == segment]
    return bool(flags) and not flags[0] and flags[-1] and flags == sorted(flags)


async def say(room: RealRoom, *transcripts: str) -> None:
    """What the fake Deepgram answers for the next speech segments it hears. The looping microphone is
    mid-sentence at any moment: the script is given just after a sentence went unanswered (its endpoint
    came), so the next sentence is heard whole, its interims included."""
    deepgram = room.fakes.deepgram
    ignored = len(deepgram.ignored_segments)
    await eventually(lambda: len(deepgram.ignored_segments) > ignored, within_s=60, what="a sentence's end")
    deepgram.scripts["en"].extend(transcripts)


MIC_ON = "() => document.querySelector('#mic')?.getAttribute('aria-pressed') === 'true'"


async def microphone_on(page: Page) -> None:
    """The page turns a speaker's microphone on when they join; if it did not, one click on #mic does."""
    try:
        await page.wait_for_function(MIC_ON, timeout=15_000)
    except Exception as error:  # playwright's TimeoutError
        if type(error).__name__ != "TimeoutError":
            raise
        await page.click("#mic")
        await page.wait_for_function(MIC_ON)


async def stt_stream_open(room: RealRoom) -> None:
    await eventually(
        lambda: any(
            c.query.get("language") == "en" and not c.closed for c in room.fakes.deepgram.connections
        ),
        within_s=60,
        what="the speaker's English STT stream",
    )


async def test_a_listener_reads_and_hears_spanish_then_switches_to_french(
    chromium: Browsers, room: RealRoom, web: WebServer, request: pytest.FixtureRequest
) -> None:
    try:
        await room.worker_available()
        listener = await chromium.page("listener")
        await join(listener, web.url, room=room.name, name="Lena", role="listener", language="es")
        await joined(listener)
        await agent_in_room(room, listener)  # the page's token brought the interpreter in

        speaker = await chromium.page("speaker", microphone=MICROPHONE)
        await join(speaker, web.url, room=room.name, name="Alice", role="speaker", language="en")
        await joined(speaker)
        await microphone_on(speaker)
        await stt_stream_open(room)
        # the listener subscribes to the Spanish interpretation only (English is published too: alice's own)
        await until(lambda: _subscribed_is(listener, {"interpretation-es"}), what="only the Spanish track")
        before = (await agent_tracks(listener))["interpretation-es"]
        # each page tells the room which interpretation it receives (the interpreter synthesizes for it)
        observer = Participant("observer")
        await room.join(observer)
        lena, alice = Declared(observer, "Lena"), Declared(observer, "Alice")
        await until(lambda: lena.now_is("es"), what="the listener's page to declare Spanish")
        await until(lambda: alice.now_is("en"), what="the speaker's page to declare English")

        await say(room, *SAID)
        spanish = [TRANSLATIONS["Good morning"]["Spanish"], TRANSLATIONS["camera"]["Spanish"]]

        async def both_translated() -> bool:
            return [s.text for s in finals(await dom_captions(listener), "translation", "es")] == spanish

        await until(both_translated, within_s=120, what="both Spanish translations on the listener's page")

        # the speaker's words and their translation, in order, interim then final, with the speaker's name
        shown = await dom_captions(listener)
        sources = finals(shown, "source")
        assert [s.text for s in sources] == SAID
        assert {s.speaker for s in shown} == {"Alice"}
        assert {s.language for s in sources} == {"en"}
        order = [s.segment for s in shown]
        for source, translation in zip(sources, finals(shown, "translation"), strict=True):
            assert translation.segment.startswith(source.segment + "-"), (source, translation)
            assert order.index(source.segment) < order.index(translation.segment)
        assert [s.language for s in shown if s.kind == "translation"] == ["es", "es"]
        log = await caption_log(listener)
        for segment in order:
            assert interim_then_final(log, segment), [s for s in log if s.segment == segment]
        # the speaker sees their own captions too
        assert [s.text for s in finals(await dom_captions(speaker), "source")] == SAID

        # the listener really received the Spanish interpretation's audio, and only subscribed to it
        tracks = await agent_tracks(listener)
        es = tracks["interpretation-es"]
        assert float(es["bytes"]) > float(before["bytes"]), (before, es)
        assert float(es["energy"]) > 0, es
        assert {name for name, t in tracks.items() if t["subscribed"]} == {"interpretation-es"}
        assert "interpretation-en" in tracks  # published, not subscribed

        await screenshots(listener)

        # switching to French mid-meeting: the French track comes, the Spanish one is let go; until the
        # interpreter published French, the page receives no interpretation and says so
        switched = len(lena.values)
        await listener.select_option("#language-switch", "fr")
        await until(lambda: _subscribed_is(listener, {"interpretation-fr"}), what="only the French track")
        await until(lambda: lena.now_is("fr"), what="the listener's page to declare French")
        declared = lena.values[switched:]
        assert declared[0] == NOT_LISTENING and declared[-1] == "fr", declared
        await say(room, "Please turn on your camera.")
        french = TRANSLATIONS["camera"]["French"]

        async def french_shown() -> bool:
            return [s.text for s in finals(await dom_captions(listener), "translation", "fr")] == [french]

        await until(french_shown, within_s=120, what="the French translation on the listener's page")
        fr = (await agent_tracks(listener))["interpretation-fr"]
        assert float(fr["bytes"]) > 0 and float(fr["energy"]) > 0, fr

        # a sentence cut into pieces reads as one line, and so does its interpretation (issue 23)
        await say(room, *PIECES)

        async def one_line_each() -> bool:
            shown = await dom_captions(listener)
            return [s.text for s in finals(shown, "translation", "fr")] == [french, " ".join(FRENCH_PIECES)]

        await until(one_line_each, within_s=90, what="the sentence's interpretation as one line")
        await until(
            lambda: _source_lines(listener, ["Please turn on your camera.", " ".join(PIECES)]),
            what="the sentence as one line",
        )
        growing = [
            s.text for s in await caption_log(listener) if s.kind == "translation" and s.language == "fr"
        ]
        assert "Je voudrais remercier Maria," in growing, growing  # the line grew piece by piece
        log = await caption_log(listener)
        assert [s.text for s in finals(log, "translation", "es")] == spanish  # no Spanish after the switch
        assert room.fakes.deepgram.remaining_for("en") == []

        # the room's budget for this hour, set mid-meeting below what it spent already: the page says so
        lk = room.server.api()
        try:
            spent = json.dumps({"budget_usd_per_hour": 0.000001})
            await lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=room.name, metadata=spent))
        finally:
            await lk.aclose()
        await until(lambda: _budget_shown(listener), what="the page to say the budget is spent")

        # leaving, the page says at once that it plays nothing any more (its leaving reaches the interpreter
        # only with the server's next batch of a listener's updates)
        await listener.click("#leave")
        await until(lambda: lena.now_is(NOT_LISTENING), what="the leaving page to declare none")
    except BaseException:
        await keep_artifacts(request, chromium, room, web)
        raise


async def _budget_shown(page: Page) -> bool:
    text = await page.text_content("#budget") or ""
    return await page.is_visible("#budget") and "budget for this hour is spent" in text


async def _source_lines(page: Page, last: list[str]) -> bool:
    """The last source lines on the page say `last`, all final."""
    sources = [s for s in await dom_captions(page) if s.kind == "source"]
    return [s.text for s in sources[-len(last) :]] == last and all(s.final for s in sources)


async def test_a_listener_waits_for_an_interpreter_and_gets_another_when_it_is_lost(
    chromium: Browsers,
    livekit_server: LiveKitServer,
    web: WebServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """No worker can take the room when the listener joins: the page says it waits for an interpreter, and
    stops saying so by itself once a worker registered and the interpreter joined (dispatched again here: the
    server does not retry a dropped dispatch). Then that interpreter's worker is killed with its job
    (SIGKILL): once the interpreter is stale (its heartbeat stopped) or has left (removed through the API, as
    the server does 21 s after a kill), the page says it is reconnecting; a second worker's interpreter joins
    (a new dispatch), and without a reload the page plays its Spanish track alone and shows its captions after
    the first one's, though a new interpreter counts a speaker's segments from the start again."""
    fakes = await start_browser_fakes()
    env = fakes.env(DRAIN_TIMEOUT_S="2", STT_ENDPOINTING_MS="600")
    workers = [WorkerProcess(livekit_server, env, tmp_path / f"worker-{n}") for n in (1, 2)]
    name = f"room-lost-{tmp_path.name}"[:60]  # under the page's prefix (tests/browser.py)
    first, second = (RealRoom(livekit_server, fakes, worker, name) for worker in workers)
    registering: asyncio.Task[None] | None = None
    try:
        listener = await chromium.page("listener")
        await listener.add_init_script(AGENT_STATE_RECORDER)
        await join(listener, web.url, room=name, name="Lena", role="listener", language="es")
        await joined(listener)
        await listener.evaluate(BEAT_RECORDER)
        # no worker is registered: the page's token dispatch found none
        await wait_state(listener, "#agent-state", "waiting")
        assert (await listener.inner_text("#agent-state")).startswith("Waiting for an interpreter")
        # no interpretation track to receive: the page says so from the start
        await until(lambda: server_has(livekit_server, name, "Lena", NOT_LISTENING), what="Lena's `none`")
        await first.worker.start()
        await agent_in_room(first, listener, wait_ms=5_000)

        speaker = await chromium.page("speaker", microphone=MICROPHONE)
        await join(speaker, web.url, room=name, name="Alice", role="speaker", language="en")
        await joined(speaker)
        await microphone_on(speaker)
        await stt_stream_open(first)
        registering = asyncio.create_task(second.worker.start())  # while the first one interprets
        old = await the_interpreter(listener)
        await say(first, SAID[0])
        spanish = [TRANSLATIONS["Good morning"]["Spanish"], TRANSLATIONS["camera"]["Spanish"]]
        await until(lambda: _translated(listener, spanish[:1]), within_s=120, what="the first translation")
        await until(lambda: _heard(listener, old), what="the first interpreter's Spanish audio")
        agents = await tracks_by_agent(listener)
        beats = "interpreter.alive" in agents[old]["attributes"]
        assert beats or not HEARTBEAT_MERGED, agents[old]["attributes"]
        await registering
        registering = None

        # the first worker dies with its job; its interpreter stays in the room for the server's 21 s
        connections = len(fakes.deepgram.connections)
        killed_at: float = await listener.evaluate("performance.now() / 1000")
        workers[0].kill_tree()
        assert workers[0].proc is not None
        await workers[0].proc.wait()
        if beats:  # stale: the page notices well before the server would remove it
            await until(lambda: _lost(listener), within_s=15, what="the page to see the interpreter stale")
        await remove_participant(livekit_server, name, old)
        await until(lambda: _lost(listener), what="the page to see the interpreter lost")

        await agent_in_room(second, listener, wait_ms=5_000)
        new = await the_interpreter(listener)
        assert new != old
        await eventually(
            lambda: any(not c.closed for c in fakes.deepgram.connections[connections:]),
            within_s=60,
            what="the second interpreter's STT stream for the speaker",
        )
        await say(second, SAID[1])
        await until(lambda: _translated(listener, spanish), within_s=120, what="the second translation")

        shown = await dom_captions(listener)
        assert [s.text for s in finals(shown, "source")] == SAID, shown
        assert [s.text for s in shown] == [SAID[0], spanish[0], SAID[1], spanish[1]], shown
        await until(lambda: _heard(listener, new), what="the second interpreter's Spanish audio")
        agents = await tracks_by_agent(listener)
        assert set(agents) == {new}, agents
        tracks = agents[new]["tracks"]
        assert {n for n, t in tracks.items() if t["subscribed"]} == {"interpretation-es"}, tracks
        await until(lambda: server_has(livekit_server, name, "Lena", "es"), what="Lena's Spanish again")
        # the line never flaps: an interpreter is taken for lost only when the page saw its beats lapse past
        # STALE_S (a starved machine can hold one back: then the page is right to say so) or it left
        log = await agent_state_log(listener)
        gaps = await beat_gaps(listener)
        print("the listener's interpreter line (state, s):", [(state, at) for state, _, at in log])
        print("the longest gap between heartbeats the listener saw (s):", gaps, "killed at", killed_at)
        lapsed = {who for who, gap in gaps.items() if gap > STALE_S}
        before = [state for state, _, at in log if at < killed_at]
        after = [state for state, _, at in log if at >= killed_at]
        assert before[0] == "waiting" and "waiting" not in before[1:] + after, log
        assert len(before) > 1 and (old in lapsed or all(s not in NO_INTERPRETER for s in before[1:])), log
        # the kill's: the old interpreter went stale, then left
        back = after[after.index("reconnecting") + 1 :]
        assert back and (new in lapsed or all(s not in NO_INTERPRETER for s in back)), log
        texts = dict(await agent_states(listener))
        assert texts["waiting"].startswith("Waiting for an interpreter"), texts
        assert "reconnecting" in texts["reconnecting"].lower(), texts
        for room in (first, second):
            room.check_worker_output()
    except BaseException:
        tail = "\n".join([web.tail(), *(w.tail(120) for w in workers)])
        await chromium.keep_artifacts(ARTIFACTS / f"browser-{request.node.name}", tail)
        raise
    finally:
        if registering is not None:
            registering.cancel()
            with contextlib.suppress(BaseException):
                await registering
        for worker in workers:
            await worker.aclose()
        await stop_fakes(fakes)


async def the_interpreter(page: Page) -> str:
    """The identity of the one interpreter in the page's room, once its Spanish track is received (a doubled
    dispatch, the test's and a keeper's, may bring two for a moment: one of them leaves)."""

    async def find() -> str | None:
        agents = await tracks_by_agent(page)
        if len(agents) != 1:
            return None
        identity, agent = next(iter(agents.items()))
        return identity if agent["tracks"].get("interpretation-es", {}).get("subscribed") else None

    found: str = await until(find, what="one interpreter, its Spanish track received")
    return found


async def _heard(page: Page, identity: str) -> bool:
    """The page received audio (energy, not only packets) on this interpreter's Spanish track."""
    track = (await tracks_by_agent(page)).get(identity, {}).get("tracks", {}).get("interpretation-es", {})
    return float(track.get("energy", 0)) > 0


async def _lost(page: Page) -> bool:
    """The page said it lost its interpreter (it may have another by now)."""
    return "reconnecting" in [state for state, _ in await agent_states(page)]


async def _translated(page: Page, texts: list[str]) -> bool:
    return [s.text for s in finals(await dom_captions(page), "translation", "es")] == texts


async def remove_participant(server: LiveKitServer, room: str, identity: str) -> None:
    lk = server.api()
    try:
        await lk.room.remove_participant(api.RoomParticipantIdentity(room=room, identity=identity))
    finally:
        await lk.aclose()


# a Spanish speaker whose language the interpreter detects (Deepgram nova-3 language=multi)
SPANISH_SAID = SPANISH.transcripts[0]  # "Buenos días a todos."
SPANISH_TRANSLATIONS = {"Buenos días": {"English": "Good morning, everyone."}}


@pytest.fixture
async def detect_room(livekit_server: LiveKitServer, tmp_path: Path) -> AsyncIterator[RealRoom]:
    """The worker with its defaults (SOURCE_LANGUAGE auto): a speaker with no language set is transcribed
    on a `language=multi` stream, scripted here as Spanish."""
    deepgram = FakeDeepgram({"multi": []}, languages={SPANISH_SAID: "es"})
    fakes = await start_browser_fakes(deepgram, SPANISH_TRANSLATIONS)
    async with browser_room(livekit_server, fakes, tmp_path) as room:
        yield room


CAPTION_LANGUAGES = """() => [...document.querySelectorAll('#captions .caption')].map((el) => [
    el.dataset.kind, (el.querySelector('.caption-text')?.textContent || '').trim(),
    (el.querySelector('.caption-language')?.textContent || '').trim()])"""


async def test_a_speaker_who_picks_detect_is_detected_and_interpreted_for_a_listener(
    chromium: Browsers, detect_room: RealRoom, web: WebServer, request: pytest.FixtureRequest
) -> None:
    """A speaker keeps the join form's default for speakers, "Detect automatically", and picks English to
    hear; they speak Spanish. The worker transcribes them with language=multi, the listener (English)
    hears and reads the English interpretation, and the speaker's caption says the language detected. A
    Spanish listener gets no interpretation of Spanish: their page receives the speaker as they are, once
    the speaker's captions say they speak Spanish."""
    room = detect_room
    try:
        await room.worker_available()
        listener = await chromium.page("listener")
        await join(listener, web.url, room=room.name, name="Lena", role="listener", language="en")
        await joined(listener)
        await agent_in_room(room, listener)
        spanish_listener = await chromium.page("listener-es")
        await join(spanish_listener, web.url, room=room.name, name="Sol", role="listener", language="es")
        await joined(spanish_listener)

        speaker = await chromium.page("speaker", microphone=SPANISH.wav)
        await speaker.add_init_script(CAPTION_RECORDER)
        await speaker.goto(f"{web.url}/?room={room.name}")
        await speaker.locator("#language option").first.wait_for(state="attached")
        await speaker.fill("#name", "Pilar")
        hear_field = speaker.locator("#hear-field")
        assert not await hear_field.is_visible()  # a listener's form: no second language
        await speaker.select_option("#role", "speaker")
        # for a speaker, detection is the first choice and the default; then they pick what to hear
        assert await speaker.locator("#language option").first.text_content() == "Detect automatically"
        assert await speaker.input_value("#language") == "auto"
        await hear_field.wait_for(state="visible")
        assert await speaker.locator("label[for=hear]").text_content() == "Language to hear"
        # and the page says which languages detection covers
        hint = await speaker.locator("#hear-hint").text_content() or ""
        covered = "English, Spanish, French, German, Hindi, Russian, Portuguese, Japanese, Italian, Dutch"
        assert f"speak ({covered})," in " ".join(hint.split()), hint
        await speaker.select_option("#hear", "en")
        async with speaker.expect_request(lambda r: r.url.endswith("/api/token")) as sent:
            await speaker.click("#join")
        body = json.loads((await sent.value).post_data or "{}")
        assert (body["role"], body["language"], body["hear"]) == ("speaker", "auto", "en")
        await joined(speaker)
        # no `language` attribute (the interpreter detects it), and what they hear
        attributes = await speaker.evaluate("window.interpreterPage.room.localParticipant.attributes")
        # no `language`: detected (and `listening_to`, what the page plays, as it subscribes)
        assert {k: v for k, v in attributes.items() if k != ATTR_LISTENING_TO} == {"interpret_to": "en"}, (
            attributes
        )
        assert await speaker.locator("#language-switch-label").text_content() == "Language to hear"
        await microphone_on(speaker)
        deepgram = room.fakes.deepgram
        await eventually(
            lambda: any(c.query.get("language") == "multi" and not c.closed for c in deepgram.connections),
            within_s=60,
            what="the speaker's language=multi STT stream",
        )
        await until(lambda: _subscribed_is(listener, {"interpretation-en"}), what="only the English track")
        before = (await agent_tracks(listener))["interpretation-en"]

        ignored = len(deepgram.ignored_segments)  # (the looping microphone: script the next sentence)
        await eventually(
            lambda: len(deepgram.ignored_segments) > ignored, within_s=60, what="a sentence's end"
        )
        deepgram.scripts["multi"].append(SPANISH_SAID)
        english = SPANISH_TRANSLATIONS["Buenos días"]["English"]

        async def translated() -> bool:
            return [s.text for s in finals(await dom_captions(listener), "translation", "en")] == [english]

        await until(translated, within_s=120, what="the English translation on the listener's page")
        for page in (listener, speaker):
            shown = await page.evaluate(CAPTION_LANGUAGES)
            assert ["source", SPANISH_SAID, "Spanish (detected)"] in shown, shown
            sources = finals(await dom_captions(page), "source")
            assert [(s.text, s.language, s.speaker) for s in sources] == [(SPANISH_SAID, "es", "Pilar")]
        # the listener heard the English interpretation, and subscribed to it alone (not the Spanish
        # speaker's own microphone, detected in another language than the listener's)
        tracks = await agent_tracks(listener)
        en = tracks["interpretation-en"]
        assert float(en["bytes"]) > float(before["bytes"]) and float(en["energy"]) > 0, (before, en)
        assert {name for name, t in tracks.items() if t["subscribed"]} == {"interpretation-en"}
        assert await listener.evaluate(SUBSCRIBED_SPEAKERS) == []
        # the Spanish listener: the speaker's caption in Spanish, then the speaker's own microphone
        speaker_identity = await speaker.evaluate("window.interpreterPage.room.localParticipant.identity")

        async def hears_the_speaker() -> bool:
            return bool(await spanish_listener.evaluate(SUBSCRIBED_SPEAKERS) == [speaker_identity])

        await until(hears_the_speaker, what="the Spanish listener receiving the Spanish speaker as they are")
        sources = finals(await dom_captions(spanish_listener), "source")
        assert [(s.text, s.language) for s in sources] == [(SPANISH_SAID, "es")]
        assert finals(await dom_captions(spanish_listener), "translation") == []  # nothing from es into es
        assert deepgram.remaining_for("multi") == []
        assert {c.query.get("language") for c in deepgram.connections} == {"multi"}
    except BaseException:
        await keep_artifacts(request, chromium, room, web)
        raise


# the identities of the human participants whose microphone the page receives
SUBSCRIBED_SPEAKERS = """() => [...window.interpreterPage.room.remoteParticipants.values()]
    .filter((p) => !p.isAgent && [...p.audioTrackPublications.values()].some((pub) => pub.isSubscribed))
    .map((p) => p.identity)"""


async def _subscribed_is(page: Page, names: set[str]) -> bool:
    return await subscribed(page) == names


async def screenshots(page: Page) -> None:
    """The listener's page with captions, laptop and phone sized: into test-artifacts/ on every run; copied
    to docs/screenshots/ (the README's) with UPDATE_SCREENSHOTS=1."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in {"listener-desktop": (1280, 800), "listener-phone": (390, 844)}.items():
        await page.set_viewport_size({"width": width, "height": height})
        await page.locator("#captions .caption").last.scroll_into_view_if_needed()
        path = ARTIFACTS / f"{name}.png"
        await page.screenshot(path=str(path))
        if _update_screenshots():
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    await page.set_viewport_size({"width": 1280, "height": 800})


def _update_screenshots() -> bool:
    return os.environ.get("UPDATE_SCREENSHOTS", "") == "1"


async def test_the_start_audio_button_unblocks_playback(
    chromium: Browsers, room: RealRoom, web: WebServer, request: pytest.FixtureRequest
) -> None:
    """Without the autoplay flag the browser blocks sound until the page had a gesture. Clicking #join is
    one, so here the form is submitted by script (as a page that joins by itself would): the page shows
    #start-audio, and a click on it starts playback."""
    try:
        await room.worker_available()
        listener = await chromium.page("listener", autoplay=False)
        # (Playwright's input and evaluate calls count as gestures: the join runs from an init script)
        await listener.add_init_script(AUTO_JOIN % json.dumps({"name": "Lena", "language": "es"}))
        await listener.goto(f"{web.url}/?room={room.name}")
        await job_started(room)
        # nothing may touch the page until then: Playwright's calls into a page count as gestures
        await eventually(
            lambda: "interpreter-test: #start-audio shown" in "\n".join(chromium.console["listener"]),
            within_s=180,
            what="#start-audio once the interpreter's track could not play",
        )
        button = listener.locator("#start-audio")
        assert await button.is_visible()
        assert await listener.evaluate("window.joinedWithoutGesture") is True
        assert await listener.evaluate("window.interpreterPage.room.canPlaybackAudio") is False
        assert await subscribed(listener) == {"interpretation-es"}
        await button.click()
        await button.wait_for(state="hidden")
        assert await listener.evaluate("window.interpreterPage.room.canPlaybackAudio") is True
        # the interpretation's audio element plays now
        await listener.wait_for_function(
            "() => [...document.querySelectorAll('audio')].some((a) => !a.paused && a.srcObject)"
        )
    except BaseException:
        await keep_artifacts(request, chromium, room, web)
        raise


# joins as a listener as soon as the form is ready, without any user gesture
AUTO_JOIN = """
(() => {
  const wanted = %s;
  const timer = setInterval(() => {
    const join = document.querySelector('#join');
    if (!join || join.disabled || !document.querySelector('#language option')) return;
    clearInterval(timer);
    document.querySelector('#name').value = wanted.name;
    document.querySelector('#role').value = 'listener';
    document.querySelector('#language').value = wanted.language;
    window.joinedWithoutGesture = !navigator.userActivation.hasBeenActive;
    document.querySelector('#join-form').requestSubmit();
    const button = document.querySelector('#start-audio');
    const seen = () => {
      if (!button.hidden) console.log('interpreter-test: #start-audio shown');
    };
    new MutationObserver(seen).observe(button, {attributes: true});
    seen();
  }, 50);
})();
"""


async def submit(page: Page) -> tuple[int, dict[str, object]]:
    """Click #join; the token endpoint's status and JSON body."""
    async with page.expect_response(lambda r: r.url.endswith("/api/token")) as info:
        await page.click("#join")
    response = await info.value
    body = json.loads(await response.text())
    assert isinstance(body, dict)
    return response.status, body


ICON_URL = (
    "() => document.querySelector('link[rel~=icon]')?.href || new URL('/favicon.ico', location.href).href"
)


async def test_loading_the_page_asks_for_nothing_missing(
    chromium: Browsers, web: WebServer, request: pytest.FixtureRequest
) -> None:
    """Every request of the page load is answered, none with a 4xx (nothing in the console), the icon's
    included. The browser asks for the icon after the page loaded, and Playwright does not report that
    request: the test watches the page's network through the DevTools protocol and waits for the icon's
    answer before it looks."""
    try:
        page = await chromium.page("visitor")
        answers: dict[str, int] = {}  # url: status, every response of the page load
        network = await page.context.new_cdp_session(page)
        network.on(
            "Network.responseReceived",
            lambda e: answers.update({e["response"]["url"]: e["response"]["status"]}),
        )
        await network.send("Network.enable")
        await page.goto(f"{web.url}/")
        await page.locator("#language option").first.wait_for(state="attached")  # /api/config answered
        icon = await page.evaluate(ICON_URL)
        await eventually(lambda: icon in answers, within_s=30, what=f"the answer to the icon ({icon})")
        assert answers[icon] == 200, answers
        assert {url: status for url, status in answers.items() if status >= 400} == {}, answers
        errors = [line for line in chromium.console["visitor"] if line.startswith(("error", "pageerror"))]
        assert errors == [], errors
    except BaseException:
        await keep_artifacts(request, chromium, None, web)
        raise


async def test_bad_input_shows_a_clear_message(
    chromium: Browsers, web: WebServer, request: pytest.FixtureRequest
) -> None:
    try:
        page = await chromium.page("joiner")
        statuses: list[int] = []
        page.on("response", lambda r: statuses.append(r.status) if "/api/token" in r.url else None)
        # a bad room name: a message naming the room, and no token
        await fill_join(page, web.url, room="not a room!", name="Lena", role="listener", language="es")
        await page.click("#join")
        await page.wait_for_function("() => document.querySelector('#join-error').textContent.trim()")
        assert "room" in (await page.locator("#join-error").inner_text()).lower()
        assert 200 not in statuses, statuses
        assert not await page.locator("#session").is_visible()

        # what only the endpoint checks (a name longer than 64 characters, past the field's maxlength):
        # its 400 and its message on the page
        await page.fill("#room", "good-room")
        await page.evaluate("document.querySelector('#name').value = 'L'.repeat(65)")
        status, body = await submit(page)
        assert status == 400 and "token" not in body, (status, body)
        message = str(body["error"])
        assert "name" in message.lower(), message
        await page.wait_for_function(
            "(text) => document.querySelector('#join-error').textContent.includes(text)", arg=message
        )
        assert await page.locator("#join-error").is_visible()
        assert not await page.locator("#session").is_visible()
    except BaseException:
        await keep_artifacts(request, chromium, None, web)
        raise


async def test_with_an_access_code_the_page_asks_for_it(
    chromium: Browsers, livekit_server: LiveKitServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with web_server(livekit_server, tmp_path / "web", WEB_ACCESS_CODE="open-sesame") as web:
        try:
            page = await chromium.page("joiner")
            await fill_join(page, web.url, room="coded-room", name="Lena", role="listener", language="es")
            await page.locator("#access-code").wait_for(state="visible")  # the page asks for the code
            statuses: list[int] = []
            page.on("response", lambda r: statuses.append(r.status) if "/api/token" in r.url else None)
            # no code: no token (the page may not even ask the endpoint), and it says why
            await page.click("#join")
            await page.wait_for_function("() => document.querySelector('#join-error').textContent.trim()")
            assert 200 not in statuses, statuses
            assert not await page.locator("#session").is_visible()
            # a wrong code: the endpoint's 403 and its message on the page
            await page.fill("#access-code", "wrong-code")
            status, body = await submit(page)
            assert (status, body) == (403, {"error": "wrong access code"})
            await page.wait_for_function(
                "(text) => document.querySelector('#join-error').textContent.includes(text)",
                arg="wrong access code",
            )
            assert not await page.locator("#session").is_visible()
            await page.fill("#access-code", "open-sesame")
            status, body = await submit(page)
            assert status == 200 and isinstance(body.get("token"), str), status
            await joined(page)
        except BaseException:
            await keep_artifacts(request, chromium, None, web)
            raise


MIC_LEVEL_PAGE = """<!doctype html><title>mic</title><script>
window.micPeak = 0;
window.startMic = async () => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  ctx.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    const rms = Math.sqrt(samples.reduce((sum, x) => sum + x * x, 0) / samples.length);
    window.micPeak = Math.max(window.micPeak, rms);
  }, 20);
  return stream.getAudioTracks()[0].label;
};
</script>"""


async def test_chromium_captures_the_committed_wav_as_its_microphone(chromium: Browsers) -> None:
    """The browser itself, apart from the page: the fake capture device plays the speaker's WAV (speech
    gets well above the fake device's default beep-free silence), and getUserMedia needs no prompt."""
    page = await chromium.page("mic", microphone=MICROPHONE)
    await page.route(
        "http://127.0.0.1:9/mic", lambda route: route.fulfill(body=MIC_LEVEL_PAGE, content_type="text/html")
    )
    await page.goto("http://127.0.0.1:9/mic")
    label = await page.evaluate("window.startMic()")
    assert isinstance(label, str)
    await page.wait_for_function("() => window.micPeak > 0.02")


OWN_VOICE_SHOWN = "() => !document.querySelector('#own-voices-line').hidden"
OWN_VOICE_GONE = "() => document.querySelector('#own-voices-line').hidden"


async def test_a_speaker_consents_to_their_own_voice_the_room_sees_it_and_withdrawing_deletes_it(
    chromium: Browsers, room: RealRoom, web: WebServer, request: pytest.FixtureRequest
) -> None:
    """The own-voice checkbox (web/src/consent.ts): off by default; ticked, the interpreter clones the speaker
    (the fake Cartesia gets the clip) and every page marks them as heard in their own voice; unticked, the
    clone is deleted and the mark goes."""
    cartesia = room.fakes.cartesia
    try:
        await room.worker_available()
        listener = await chromium.page("listener")
        await join(listener, web.url, room=room.name, name="Lena", role="listener", language="es")
        await joined(listener)
        await agent_in_room(room, listener)
        assert await listener.locator("#own-voice-field").is_hidden()  # a listener has no voice to give

        speaker = await chromium.page("speaker", microphone=DIALOGUE.wav)  # its voiced speech, looped
        await join(speaker, web.url, room=room.name, name="Alice", role="speaker", language="en")
        await joined(speaker)
        await microphone_on(speaker)
        await stt_stream_open(room)
        box = speaker.locator("#own-voice")
        assert await box.is_visible() and not await box.is_checked()  # off by default
        hint = await speaker.locator("#own-voice-hint").inner_text()
        for words in ("5", "Cartesia", "deleted", "untick", "leave", "meeting ends", "13 hours"):
            assert words in hint, words
        await eventually(lambda: room.fakes.deepgram.ignored_segments != [], within_s=60, what="her speech")
        assert cartesia.clone_requests == []  # heard, and never sent without consent

        await box.check()
        await eventually(lambda: len(cartesia.voices) == 1, within_s=90, what="her clone made")
        (clone,) = cartesia.voices
        (clip,) = cartesia.clone_requests
        assert clip.clip_seconds >= 5.0 and clip.language == "en"
        await listener.wait_for_function(OWN_VOICE_SHOWN, timeout=30_000)
        assert (await listener.locator("#own-voices").inner_text()).strip() == "Alice"
        await speaker.wait_for_function(OWN_VOICE_SHOWN, timeout=30_000)
        assert "in use" in await speaker.locator("#own-voice-state").inner_text()

        await box.uncheck()  # withdrawn: the preset at once, the clone deleted
        await eventually(lambda: cartesia.deleted_voices == [clone], within_s=30, what="her clone deleted")
        await listener.wait_for_function(OWN_VOICE_GONE, timeout=30_000)
        await speaker.wait_for_function(OWN_VOICE_GONE, timeout=30_000)
        assert len(cartesia.clone_requests) == 1 and cartesia.voices == set()
    except BaseException:
        await keep_artifacts(request, chromium, room, web)
        raise
