"""A listener downloads what they read (web/src/download.ts), in a real browser: headless Chromium against the
local LiveKit server, the real worker and the fake providers, the page served by `python -m agent web` (with
its Content-Security-Policy). After the speaker's sentences are interpreted, the listener downloads the
captions as text, SRT and WebVTT; each file holds the final captions the page showed, with the speaker's name
and language, and well-formed timestamps counted from when the page joined."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser import Browsers, CaptionState, WebServer, join, until
from tests.real_room import RealRoom
from tests.test_browser import (  # noqa: F401 (room, web: the browser tests' fixtures)
    MICROPHONE,
    TRANSLATIONS,
    agent_in_room,
    dom_captions,
    finals,
    joined,
    keep_artifacts,
    microphone_on,
    room,
    say,
    stt_stream_open,
    web,
)

if TYPE_CHECKING:
    from playwright.async_api import Page

# the first sentence carries a cue arrow and a blank line, which no cue may hold
SAID = ["Good morning, everyone --> welcome.\n\nAll of you.", "Please turn on your camera."]
SRT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d),(\d{3})"
VTT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})"
TXT_LINE = re.compile(r"\[(\d{2,}):([0-5]\d):([0-5]\d)\] (.+)")


@dataclass(frozen=True)
class FileCue:
    start_ms: int
    end_ms: int
    text: str  # its lines joined by a space


def ms(hours: str, minutes: str, seconds: str, millis: str = "0") -> int:
    return ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis)


def cue_lines(text: str) -> list[str]:
    """A cue's text lines: no line may be blank (a blank line ends a cue) or hold an arrow."""
    lines = text.split("\n")
    assert all(line.strip() for line in lines), text
    assert all("-->" not in line for line in lines), text
    return lines


def parse_srt(content: str) -> list[FileCue]:
    cues = []
    blocks = content.rstrip("\n").split("\n\n")
    for number, block in enumerate(blocks, start=1):
        index, timing, *text = block.split("\n")
        assert index == str(number), block
        match = re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", timing)
        assert match, timing
        start, end = ms(*match.groups()[:4]), ms(*match.groups()[4:])
        cues.append(FileCue(start, end, " ".join(cue_lines("\n".join(text)))))
    return cues


def parse_vtt(content: str) -> list[FileCue]:
    header, *blocks = content.rstrip("\n").split("\n\n")
    assert header == "WEBVTT", header
    cues = []
    for block in blocks:
        timing, *text = block.split("\n")
        match = re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", timing)
        assert match, timing
        start, end = ms(*match.groups()[:4]), ms(*match.groups()[4:])
        body = " ".join(cue_lines("\n".join(text)))
        assert "<" not in body, body  # (WebVTT reads tags in cue text: ours are escaped)
        cues.append(FileCue(start, end, body.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")))
    return cues


def parse_txt(content: str) -> list[FileCue]:
    header, blank, *lines = content.rstrip("\n").split("\n")
    assert header.startswith("Captions") and blank == "", content
    cues = []
    for line in lines:
        match = TXT_LINE.fullmatch(line)
        assert match, line
        start = ms(*match.groups()[:3])
        cues.append(FileCue(start, start, match.group(4)))
    return cues


def as_in_file(text: str) -> str:
    """A caption's text as a cue holds it: the arrow replaced, no blank lines, lines joined by a space."""
    return " ".join(line.strip() for line in text.replace("-->", "→").splitlines() if line.strip())


def label(caption: CaptionState) -> str:
    """Who said it, in which language, as the page showed it."""
    interpreted = ", interpreted" if caption.kind == "translation" else ""
    return f"{caption.speaker} ({caption.language}{interpreted})"


async def download(page: Page, kind: str) -> tuple[str, str]:
    """Click the page's download button for `kind`: the file's suggested name and its content."""
    async with page.expect_download() as info:
        await page.click(f"#downloads button[data-format='{kind}']")
    file = await info.value
    path = await file.path()
    assert path is not None, await file.failure()
    content = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    return file.suggested_filename, content


async def test_a_listener_downloads_the_captions_as_text_srt_and_webvtt(
    chromium: Browsers,
    room: RealRoom,  # noqa: F811
    web: WebServer,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    try:
        await room.worker_available()
        listener = await chromium.page("listener")
        await join(listener, web.url, room=room.name, name="Lena", role="listener", language="es")
        # (the page joins after the click: a cue's start is at most the time since then)
        clicked_ms = float(await listener.evaluate("() => performance.now()"))
        await joined(listener)
        await agent_in_room(room, listener)
        speaker = await chromium.page("speaker", microphone=MICROPHONE)
        await join(speaker, web.url, room=room.name, name="Alice", role="speaker", language="en")
        await joined(speaker)
        await microphone_on(speaker)
        await stt_stream_open(room)

        await say(room, *SAID)
        spanish = [TRANSLATIONS["Good morning"]["Spanish"], TRANSLATIONS["camera"]["Spanish"]]

        async def both_translated() -> bool:
            return [s.text for s in finals(await dom_captions(listener), "translation", "es")] == spanish

        await until(both_translated, within_s=120, what="both Spanish translations on the listener's page")
        shown = await dom_captions(listener)
        expected = sorted(f"{label(s)}: {as_in_file(s.text)}" for s in shown if s.final)
        assert len(expected) == 4, shown
        assert "Alice (en): Good morning, everyone → welcome. All of you." in expected, expected
        assert "Alice (es, interpreted): Buenos días a todos." in expected, expected

        for kind, parse in (("srt", parse_srt), ("vtt", parse_vtt), ("txt", parse_txt)):
            name, content = await download(listener, kind)
            since_click_ms = float(await listener.evaluate("() => performance.now()")) - clicked_ms
            assert re.fullmatch(rf"captions-{room.name}-\d{{8}}-\d{{4}}\.{kind}", name), name
            cues = parse(content)
            assert sorted(cue.text for cue in cues) == expected, content
            starts = [cue.start_ms for cue in cues]
            assert starts == sorted(starts), content  # in the order they were said
            for cue in cues:
                assert 0 <= cue.start_ms <= cue.end_ms, cue
                assert cue.start_ms <= since_click_ms, (cue, since_click_ms)  # from joining, not the epoch
            # a sentence's translation comes after its source
            texts = [cue.text for cue in cues]
            assert texts.index(expected_source(expected, "Good morning")) < texts.index(
                expected_source(expected, "Buenos días")
            ), content
        # the page's Content-Security-Policy let the downloads through, and said nothing about them
        assert not [line for line in chromium.console["listener"] if "Content Security Policy" in line]
    except BaseException:
        await keep_artifacts(request, chromium, room, web)
        raise


def expected_source(expected: list[str], fragment: str) -> str:
    return next(text for text in expected if fragment in text)
