"""One condition in the room harness (tests/test_room.py): the real RoomSession with its loops and plugins,
the fake room transport, the fake providers at the wire in this process, the worker's default settings
(PAUSE_CUT_MS 120, STT_MAX_SEGMENT_S 1.0, SOURCE_LANGUAGE auto, endpointing 300 ms); the fake Deepgram hears
each microphone's words by time (tests/fakes/timed_words.py). A listener of `interpretation-es` records what
is played; what the run leaves (`Run`) is measured by `bench/hall/measure.py`."""

from __future__ import annotations

import asyncio
import html
import re
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from agent.settings.config import load_settings
from agent.telemetry.latency import LatencyTracker, UtteranceRecord
from bench.hall.mic import EchoWords, MicSpeaker
from bench.hall.mixes import RATE, Mic
from bench.harness.session import ENDPOINTING_MS
from tests.conftest import Fakes, stop_fakes
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.fakes.deepgram import DeepgramConnection
from tests.fakes.llm import Message, message_text
from tests.fakes.room import SentText
from tests.fakes.timed_words import HeardSegment, TimedRecognizer
from tests.loopback import LoopbackListener, eventually
from tests.test_room import room_harness

QUIET_S = 3.0  # the run ends once nothing more was played or transcribed for this long after the speech
MAX_TAIL_S = 40.0


def gloss(messages: list[Message]) -> str:
    """The fake LLM's translation: each word of the speech spelt backwards (a made-up language whose words
    are as many and as long as the speaker's, and never theirs)."""
    texts = [message_text(m) for m in messages if "<speech" in message_text(m)]
    found = re.findall(r"<speech[^>]*>(.*?)</speech>", texts[-1] if texts else "", re.S)
    speech = html.unescape(found[-1]) if found else ""
    return " ".join(_backwards(w) for w in speech.split()) or "..."


def _backwards(word: str) -> str:
    letters = word.rstrip(".,;:!?")
    return letters[::-1] + word[len(letters) :]


@dataclass
class Run:
    mics: list[Mic]
    texts: list[SentText]  # every caption sent, in order
    records: list[UtteranceRecord]
    open_records: int
    heard: dict[str, list[HeardSegment]]  # per speaker: what their STT heard, in microphone time
    t0: dict[str, float]  # per speaker: the clock time their first sample was spoken
    echo_stretches: int = 0
    notes: list[str] = field(default_factory=list)


async def start_fakes() -> Fakes:
    fakes = Fakes(
        deepgram=FakeDeepgram(),
        cerebras=FakeLLM(responder=gloss),
        groq=FakeLLM(responder=gloss),
        cartesia=FakeCartesia(),
    )
    for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await server.start()
    return fakes


def worker_env(fakes: Fakes) -> dict[str, str]:
    """The fakes' settings with the worker's defaults where the tests' scripted scenarios set others."""
    env = fakes.env(STT_ENDPOINTING_MS=str(ENDPOINTING_MS))
    for name in ("PAUSE_CUT_MS", "STT_MAX_SEGMENT_S"):
        env.pop(name)
    return env


async def run_condition(mics: list[Mic]) -> Run:
    fakes = await start_fakes()
    try:
        return await _run(fakes, mics)
    finally:
        await stop_fakes(fakes)


def _playing(texts: list[SentText], language: str = "es") -> tuple[str, str] | None:
    """The translation into `language` whose audio started last, (segment id, its latest text): a
    translated caption is first sent (not final) when its audio starts (docs/room-contract.md)."""
    latest: dict[str, str] = {}
    newest = None
    for sent in texts:
        attributes = sent.attributes
        if "interpreter.speaker" in attributes and attributes.get("language") == language:
            segment = attributes["lk.segment_id"]
            if segment not in latest:
                newest = segment
            latest[segment] = sent.text
    return (newest, latest[newest]) if newest is not None else None


async def _run(fakes: Fakes, mics: list[Mic]) -> Run:
    settings = load_settings(worker_env(fakes), require_livekit=False)
    recognizers: dict[int, TimedRecognizer] = {}
    async with room_harness(fakes, settings) as h:
        await h.session.start()
        listener = None
        speakers: list[MicSpeaker] = []
        for mic in mics:
            participant = h.room.join(mic.speaker)
            await h.session.settled()
            if listener is None:
                listener = h.listen("es")
            echo = None
            if mic.loudspeaker:
                sent = h.room.local_participant.texts
                echo = EchoWords(mic, partial(_playing, sent), fakes.cartesia.duration_for)
            speaker = MicSpeaker(mic, echo)
            ear = TimedRecognizer(
                mic.timeline, mic.pcm, RATE, reference=mic.reference, realign=not mic.loudspeaker
            )

            def recognizer_for(_: DeepgramConnection, ear: TimedRecognizer = ear) -> TimedRecognizer:
                return ear

            fakes.deepgram.recognizer_for = recognizer_for
            before = len(fakes.deepgram.connections)
            h.room.publish_audio(participant, speaker.track)
            await eventually(partial(_more, fakes.deepgram, before), what="the speaker's STT")
            recognizers[len(speakers)] = ear
            fakes.deepgram.recognizer_for = None
            if mic.loudspeaker:
                speaker.loudspeaker(h.room.local_participant.published["interpretation-es"])
            speakers.append(speaker)
        try:
            for speaker in speakers:
                speaker.start()
            await asyncio.gather(*(s.done.wait() for s in speakers))
            await _quiet(fakes, h.tracker, listener)
        finally:
            for speaker in speakers:
                await speaker.aclose()
        texts = list(h.room.local_participant.texts)
        records = list(h.tracker.completed)
        open_records = h.tracker.open_count
    echo_stretches = sum(len(s.echo.stretches) for s in speakers if s.echo is not None)
    return Run(
        mics,
        texts,
        records,
        open_records,
        {mic.speaker: recognizers[i].heard for i, mic in enumerate(mics)},
        {s.mic.speaker: s.t0 or 0.0 for s in speakers},
        echo_stretches,
    )


def _more(deepgram: FakeDeepgram, before: int) -> bool:
    return len(deepgram.connections) > before


async def _quiet(fakes: Fakes, tracker: LatencyTracker, listener: LoopbackListener | None) -> None:
    """Wait until nothing new was transcribed, completed or heard for QUIET_S (at most MAX_TAIL_S)."""
    until = time.perf_counter() + MAX_TAIL_S
    state: tuple[int, int, float] = (-1, -1, 0.0)
    changed = time.perf_counter()
    while time.perf_counter() < until:
        frames = listener.frames if listener is not None else []
        heard = next((t for t, s in reversed(frames) if np.any(s)), 0.0)
        now = (len(fakes.deepgram.finals), len(tracker.completed), heard)
        if now != state:
            state, changed = now, time.perf_counter()
        elif time.perf_counter() - changed >= QUIET_S and tracker.open_count == 0:
            return
        await asyncio.sleep(0.1)
