"""Headless Chromium from Debian, driven by Playwright (no browser downloaded: `executable_path`), and the
page's web server (`python -m agent web`) as a subprocess, for tests/test_browser.py.

Each browser is its own Chromium process with a fresh profile: a speaker's fake microphone is a file, and that
file is per process. What a test saw is kept in test-artifacts/ when it fails: a screenshot of every page, the
pages' console logs and the worker's log tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.livekit_server import LiveKitServer, free_port
from tests.room_worker import agent_env, spawn_agent

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, ConsoleMessage, Page, Playwright

ROOT = Path(__file__).parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BROWSER_INSTALL_HINT = (
    f"Chromium not found at {CHROMIUM} (set CHROMIUM to its path): install Debian's chromium "
    "(`apt-get install chromium`; .ci/run does it), and Playwright with `uv sync` "
    "(never `playwright install`)"
)
# without the background-networking flags Chromium floods the closed network with refused connections
BASE_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
)
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"
# what a browser does by default for a page the user has not interacted with: no sound until a gesture
GESTURE_REQUIRED = "--autoplay-policy=user-gesture-required"
TIMEOUT_MS = 60_000  # generous: the machine is shared


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed: " + BROWSER_INSTALL_HINT
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return BROWSER_INSTALL_HINT
    return None


@dataclass
class Browsers:
    """Launches browser processes; closes them all at the end and, for a failed test, keeps what they saw."""

    playwright: Playwright
    workdir: Path
    contexts: list[BrowserContext] = field(default_factory=list)
    console: dict[str, list[str]] = field(default_factory=dict)
    pages: dict[str, Page] = field(default_factory=dict)

    @classmethod
    @asynccontextmanager
    async def open(cls, workdir: Path) -> AsyncIterator[Browsers]:
        from playwright.async_api import async_playwright

        async with async_playwright() as playwright:
            browsers = cls(playwright, workdir)
            try:
                yield browsers
            finally:
                for context in browsers.contexts:
                    with contextlib.suppress(Exception):  # teardown: a browser that died is closed already
                        await context.close()

    async def page(
        self,
        name: str,
        *,
        microphone: Path | None = None,
        autoplay: bool = True,
        viewport: tuple[int, int] = (1280, 800),
    ) -> Page:
        """A page in a browser process of its own (a fresh profile); `microphone` is a WAV the fake capture
        device plays in a loop."""
        args = [*BASE_ARGS, AUTOPLAY if autoplay else GESTURE_REQUIRED]
        if microphone is not None:
            args += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}"]
        profile = self.workdir / f"chromium-{name}"
        shutil.rmtree(profile, ignore_errors=True)
        context = await self.playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=args,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        self.contexts.append(context)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.pages[0] if context.pages else await context.new_page()
        log = self.console.setdefault(name, [])

        def on_console(message: ConsoleMessage) -> None:
            log.append(f"{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
        self.pages[name] = page
        return page

    async def keep_artifacts(self, directory: Path, worker_tail: str | None = None) -> None:
        """A screenshot and the console log of every page, and the worker's log tail, into `directory`."""
        _write_logs(directory, self.console, worker_tail)
        for name, page in self.pages.items():
            with contextlib.suppress(Exception):  # a page that crashed has no screenshot
                await page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def _write_logs(directory: Path, console: Mapping[str, list[str]], worker_tail: str | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, lines in console.items():
        (directory / f"{name}.console.log").write_text("\n".join(lines) + "\n")
    if worker_tail is not None:
        (directory / "worker.log").write_text(worker_tail + "\n")


class WebServer:
    """`python -m agent web` on a free loopback port, against `server`; its output in `workdir/web.log`."""

    def __init__(self, server: LiveKitServer, workdir: Path, **env: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log_path = workdir / "web.log"
        self.env = {
            **agent_env(server),
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": str(self.port),
            "WEB_ROOM_PREFIX": "room-",  # the test rooms (tests/real_room.py): `room-<n>-<test>`
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = await spawn_agent("web", self.workdir, self.env, self.log_path)
        healthy = False

        async def check() -> None:
            nonlocal healthy
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(
                    f"`python -m agent web` exited with {self.proc.returncode}\n{self.tail()}"
                )
            healthy = await asyncio.to_thread(self._healthy)

        deadline = asyncio.get_running_loop().time() + timeout_s
        while not healthy:
            await check()
            if not healthy:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"the web server did not answer /healthz\n{self.tail()}")
                await asyncio.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def tail(self, lines: int = 40) -> str:
        try:
            return "web log:\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "web log: (none)"

    async def aclose(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@asynccontextmanager
async def web_server(server: LiveKitServer, workdir: Path, **env: str) -> AsyncIterator[WebServer]:
    web = WebServer(server, workdir, **env)
    try:
        await web.start()
        yield web
    finally:
        await web.aclose()


# Every state a caption element went through, in order: a MutationObserver records (segment id, kind,
# language, final, speaker, text) whenever one changes, so an interim replaced by its final in a blink is
# still seen. Installed before the page's own scripts run.
CAPTION_RECORDER = """
(() => {
  const log = [];
  window.__captionLog = log;
  const last = new Map();
  const record = () => {
    for (const el of document.querySelectorAll('#captions .caption')) {
      const state = {
        segment: el.dataset.segmentId || '',
        kind: el.dataset.kind || '',
        language: el.dataset.language || '',
        final: el.dataset.final === 'true',
        speaker: (el.querySelector('.caption-speaker')?.textContent || '').trim(),
        text: (el.querySelector('.caption-text')?.textContent || '').trim(),
      };
      const key = JSON.stringify(state);
      if (last.get(el) !== key) {
        last.set(el, key);
        log.push(state);
      }
    }
  };
  const start = () => {
    new MutationObserver(record).observe(document.documentElement, {
      subtree: true, childList: true, characterData: true, attributes: true,
    });
    record();
  };
  if (document.documentElement) start();
  else document.addEventListener('DOMContentLoaded', start);
})();
"""

# Every state the page's interpreter line (#agent-state) went through, in order, with its text and when (s
# since the page loaded; a state shown for a blink is still seen). Installed before the page's scripts run.
AGENT_STATE_RECORDER = """
(() => {
  const states = [];
  window.__agentStates = states;
  const record = () => {
    const el = document.querySelector('#agent-state');
    const state = el?.dataset.state;
    if (state && states[states.length - 1]?.[0] !== state) {
      states.push([state, el.textContent.trim(), Math.round(performance.now()) / 1000]);
    }
  };
  const start = () => {
    new MutationObserver(record).observe(document.documentElement, {
      subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['data-state'],
    });
    record();
  };
  if (document.documentElement) start();
  else document.addEventListener('DOMContentLoaded', start);
})();
"""

# The gaps between the heartbeats (`interpreter.alive`) the page saw, by interpreter (s), once joined: what a
# failure prints when the page took a live interpreter for stale
BEAT_RECORDER = """
() => {
  const room = window.interpreterPage.room;
  const last = {};
  window.__beatGaps = {};
  room.on('participantAttributesChanged', (changed, participant) => {
    if (!('interpreter.alive' in changed)) return;
    const now = performance.now() / 1000;
    const who = participant.identity;
    if (who in last) (window.__beatGaps[who] ??= []).push(Math.round((now - last[who]) * 100) / 100);
    last[who] = now;
  });
}
"""


async def beat_gaps(page: Page) -> dict[str, float]:
    """The longest gap between two heartbeats the page saw, by interpreter (needs BEAT_RECORDER)."""
    gaps: dict[str, list[float]] = await page.evaluate("window.__beatGaps || {}")
    return {who: max(seen) for who, seen in gaps.items() if seen}


# The interpreters' tracks as the page's livekit-client Room sees them, by agent identity: subscribed or
# not, and the bytes received
TRACKS_BY_AGENT = """
async () => {
  const out = {};
  for (const participant of window.interpreterPage.room.remoteParticipants.values()) {
    if (!participant.isAgent) continue;
    const tracks = {};
    for (const pub of participant.trackPublications.values()) {
      const entry = {subscribed: pub.isSubscribed, bytes: 0, energy: 0};
      const receiver = pub.track ? pub.track.receiver : undefined;
      if (receiver) {
        (await receiver.getStats()).forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'audio') {
            entry.bytes = s.bytesReceived || 0;
            entry.energy = s.totalAudioEnergy || 0;
          }
        });
      }
      tracks[pub.trackName] = entry;
    }
    out[participant.identity] = {attributes: {...participant.attributes}, tracks};
  }
  return out;
}
"""

# The interpreter's tracks as the page's livekit-client Room sees them: subscribed or not, and what the
# receiver got (inbound-rtp: bytes received, total audio energy, the current audio level).
AGENT_TRACKS = """
async () => {
  const room = window.interpreterPage.room;
  const out = {};
  for (const participant of room.remoteParticipants.values()) {
    for (const pub of participant.trackPublications.values()) {
      if (!pub.trackName || !pub.trackName.startsWith('interpretation-')) continue;
      const entry = {subscribed: pub.isSubscribed, bytes: 0, energy: 0, level: 0};
      const receiver = pub.track ? pub.track.receiver : undefined;
      if (receiver) {
        const stats = await receiver.getStats();
        stats.forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'audio') {
            entry.bytes = s.bytesReceived || 0;
            entry.energy = s.totalAudioEnergy || 0;
            entry.level = s.audioLevel || 0;
          }
        });
      }
      out[pub.trackName] = entry;
    }
  }
  return out;
}
"""


@dataclass(frozen=True)
class CaptionState:
    segment: str
    kind: str
    language: str
    final: bool
    speaker: str
    text: str


async def caption_log(page: Page) -> list[CaptionState]:
    states: list[dict[str, Any]] = await page.evaluate("window.__captionLog || []")
    return [CaptionState(**s) for s in states]


async def agent_tracks(page: Page) -> dict[str, dict[str, float | bool]]:
    tracks: dict[str, dict[str, float | bool]] = await page.evaluate(AGENT_TRACKS)
    return tracks


async def agent_states(page: Page) -> list[tuple[str, str]]:
    """The states #agent-state went through, each with its text (needs AGENT_STATE_RECORDER)."""
    return [(state, text) for state, text, _ in await agent_state_log(page)]


async def agent_state_log(page: Page) -> list[tuple[str, str, float]]:
    """The states #agent-state went through, each with its text and when it was shown (s since the page
    loaded), for a failure to print."""
    states: list[list[Any]] = await page.evaluate("window.__agentStates || []")
    return [(str(state), str(text), float(at)) for state, text, at in states]


async def tracks_by_agent(page: Page) -> dict[str, dict[str, Any]]:
    """Each agent in the page's room: its attributes, and its tracks (subscribed, bytes, energy)."""
    agents: dict[str, dict[str, Any]] = await page.evaluate(TRACKS_BY_AGENT)
    return agents


async def subscribed(page: Page) -> set[str]:
    return {name for name, t in (await agent_tracks(page)).items() if t["subscribed"]}


async def until(
    check: Callable[[], Any], *, within_s: float = 60.0, what: str = "condition", every_s: float = 0.25
) -> Any:
    """Poll an async check until it returns something truthy; that value."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        await asyncio.sleep(every_s)


async def fill_join(
    page: Page,
    base_url: str,
    *,
    room: str,
    name: str,
    role: str,
    language: str,
) -> None:
    """Open the page (with the caption recorder) and fill the join form."""
    await page.add_init_script(CAPTION_RECORDER)
    await page.goto(f"{base_url}/?room={room}")
    await page.locator("#language option").first.wait_for(state="attached")
    await page.fill("#room", room)
    await page.fill("#name", name)
    await page.select_option("#role", role)
    await page.select_option("#language", language)


async def join(page: Page, base_url: str, *, room: str, name: str, role: str, language: str) -> None:
    """Fill the join form and submit it (the caller waits for what should follow)."""
    await fill_join(page, base_url, room=room, name=name, role=role, language=language)
    await page.click("#join")


async def wait_state(page: Page, selector: str, *states: str, timeout_ms: float = TIMEOUT_MS) -> None:
    await page.wait_for_function(
        "([sel, states]) => { const el = document.querySelector(sel);"
        " return !!el && states.includes(el.dataset.state); }",
        arg=[selector, list(states)],
        timeout=timeout_ms,
    )


def responder_by_language(translations: Mapping[str, Mapping[str, str]]) -> Callable[[list[Any]], str]:
    """A FakeLLM responder: the translation of the first key found in the last user message, in the language
    the system prompt asks for (`translations[key][language name]`)."""

    def respond(messages: list[Any]) -> str:
        system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system").lower()
        user = str(messages[-1].get("content", ""))
        for key, by_language in translations.items():
            if key in user:
                for language, text in by_language.items():
                    if f"into {language.lower()}" in system:
                        return text
        return "[untranslated] " + json.dumps(user)

    return respond
