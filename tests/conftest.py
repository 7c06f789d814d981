"""Shared test set-up: the fake providers, settings pointing at them, and the fixture scenarios."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.settings.config import Settings, load_settings
from tests.browser import Browsers, missing_browser
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.livekit_server import INSTALL_HINT, LiveKitServer, find_binary

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Scenario:
    """A committed WAV fixture and what the fake providers answer for it."""

    wav: Path
    transcripts: list[str]  # what the fake Deepgram "hears", one per speech segment
    translations: dict[str, str]  # a key found in the source text → the fake LLM's translation
    tones: dict[str, float]  # a word of a translation → the fake Cartesia's tone frequency (Hz)
    speech_ends: list[float]  # where each segment's speech ends in the WAV (seconds)

    def freq_for(self, text: str) -> float:
        for word, freq in self.tones.items():
            if word in text:
                return freq
        return 440.0


DIALOGUE = Scenario(
    wav=FIXTURES / "dialogue_en.wav",
    transcripts=[
        "Good morning, everyone.",
        "Thank you for joining the call today.",
        "Let us start with the budget.",
    ],
    translations={
        "Good morning": "Buenos días a todos.",
        "Thank you": "Gracias por acompañarnos hoy en la llamada.",
        "budget": "Empecemos por el presupuesto.",
    },
    tones={"Buenos": 400.0, "Gracias": 600.0, "presupuesto": 800.0},
    speech_ends=[1.96, 4.97, 7.53],
)

ONE_SENTENCE = Scenario(
    wav=FIXTURES / "one_sentence_en.wav",
    transcripts=["Please turn on your camera."],
    translations={"camera": "Por favor, enciende tu cámara."},
    tones={"cámara": 500.0},
    speech_ends=[1.83],
)


@dataclass(frozen=True)
class Monologue:
    """Eight sentences, each of its own length (speech from its first to its last voiced 10 ms window, as
    the fake Deepgram's VAD measures it), 0.9 s apart: the fake tells which was said by how long it lasted
    (`transcript_for`), whichever connection hears it, so a sentence cut in two, heard twice or not heard
    at all shows in the transcripts."""

    wav: Path
    sentences: dict[float, str]  # speech duration (s) → the sentence
    translations: dict[str, str]
    tones: dict[str, float]
    tolerance_s: float = 0.04

    @property
    def transcripts(self) -> list[str]:
        return list(self.sentences.values())

    def transcript_for(self, duration_s: float) -> str:
        """The sentence that lasts `duration_s`, or `?<duration>` for a segment no sentence lasts."""
        nearest = min(self.sentences, key=lambda d: abs(d - duration_s))
        if abs(nearest - duration_s) <= self.tolerance_s:
            return self.sentences[nearest]
        return f"?{duration_s:.2f}"

    def freq_for(self, text: str) -> float:
        return next((freq for word, freq in self.tones.items() if word in text), 440.0)


MONOLOGUE = Monologue(
    wav=FIXTURES / "monologue_en.wav",
    sentences={
        1.30: "The meeting starts now.",
        1.19: "Please open the report.",
        1.11: "Costs stayed flat.",
        1.40: "Our team won the award.",
        0.82: "Lunch is at noon.",
        0.90: "Send me your notes.",
        1.51: "Questions come at the end.",
        1.01: "Thanks for listening.",
    },
    translations={
        "meeting": "La reunión empieza ahora.",
        "report": "Abran el informe.",
        "Costs": "Los costes no cambiaron.",
        "award": "Ganamos el premio.",
        "Lunch": "El almuerzo es a mediodía.",
        "notes": "Envíenme sus notas.",
        "Questions": "Las preguntas, al final.",
        "Thanks": "Gracias por escuchar.",
    },
    # a tone per translation, 100 Hz apart (the listener tells them apart by frequency)
    tones={
        "reunión": 300.0,
        "informe": 400.0,
        "costes": 500.0,
        "premio": 600.0,
        "almuerzo": 700.0,
        "notas": 800.0,
        "preguntas": 900.0,
        "escuchar": 1000.0,
    },
)


# A Spanish speaker, for two-way conversations in a room
SPANISH = Scenario(
    wav=FIXTURES / "dialogue_es.wav",
    transcripts=["Buenos días a todos.", "Gracias por venir hoy."],
    translations={
        "Buenos días": "Good morning, everyone.",
        "Gracias por venir": "Thank you for coming today.",
    },
    # (the fake TTS gets clauses: "Good morning," and "everyone." are cut apart)
    tones={"Good morning": 300.0, "everyone": 300.0, "coming": 700.0},
    speech_ends=[],
)
ROOM_TRANSLATIONS = {**DIALOGUE.translations, **ONE_SENTENCE.translations, **SPANISH.translations}
ROOM_TONES = {**DIALOGUE.tones, **ONE_SENTENCE.tones, **SPANISH.tones}


def room_tone_for(text: str) -> float:
    return next((freq for word, freq in ROOM_TONES.items() if word in text), 440.0)


@dataclass
class Fakes:
    deepgram: FakeDeepgram
    cerebras: FakeLLM
    groq: FakeLLM
    cartesia: FakeCartesia

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            "DEEPGRAM_API_KEY": "dg-test-key",
            "DEEPGRAM_BASE_URL": self.deepgram.base_url,
            "CEREBRAS_API_KEY": "cb-test-key",
            "CEREBRAS_BASE_URL": self.cerebras.base_url,
            "GROQ_API_KEY": "gq-test-key",
            "GROQ_BASE_URL": self.groq.openai_base_url,
            "CARTESIA_API_KEY": "ct-test-key",
            "CARTESIA_BASE_URL": self.cartesia.base_url,
            "STT_ENDPOINTING_MS": "300",
            "LLM_ATTEMPT_TIMEOUT_S": "3",
            # the scripted scenarios are about whole sentences; cutting long speech is tested apart
            "STT_MAX_SEGMENT_S": "0",
            # nor cut at short pauses: through the loopback track a loaded machine may add 100+ ms of
            # silence mid-sentence (tests/harness.py); the pause cut is tested in tests/test_pause_cut.py
            "PAUSE_CUT_MS": "0",
            # the scenarios are about what is spoken, whoever listens; listener-driven synthesis is tested
            # apart (tests/test_audience.py)
            "SYNTHESIS": "always",
            **overrides,
        }

    def settings(self, **overrides: str) -> Settings:
        return load_settings(self.env(**overrides), require_livekit=False)


async def start_fakes(scenario: Scenario | Monologue) -> Fakes:
    fakes = Fakes(
        deepgram=FakeDeepgram(scenario.transcripts),
        cerebras=FakeLLM(translations=scenario.translations),
        groq=FakeLLM(translations=scenario.translations),
        cartesia=FakeCartesia(freq_for=scenario.freq_for),
    )
    for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await server.start()
    return fakes


async def started(fakes: Fakes) -> Fakes:
    for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await server.start()
    return fakes


async def stop_fakes(fakes: Fakes) -> None:
    for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await server.aclose()


async def start_room_fakes() -> Fakes:
    """Fakes for a room: English speakers say the dialogue then the one sentence, Spanish speakers the
    Spanish dialogue (each language's script is handed out in the order segments end)."""
    fakes = Fakes(
        deepgram=FakeDeepgram(
            {"en": DIALOGUE.transcripts + ONE_SENTENCE.transcripts, "es": SPANISH.transcripts}
        ),
        cerebras=FakeLLM(translations=ROOM_TRANSLATIONS),
        groq=FakeLLM(translations=ROOM_TRANSLATIONS),
        cartesia=FakeCartesia(freq_for=room_tone_for),
    )
    for server in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await server.start()
    return fakes


@pytest.fixture
async def dialogue_fakes() -> AsyncIterator[Fakes]:
    fakes = await start_fakes(DIALOGUE)
    yield fakes
    await stop_fakes(fakes)


@pytest.fixture
async def one_sentence_fakes() -> AsyncIterator[Fakes]:
    fakes = await start_fakes(ONE_SENTENCE)
    yield fakes
    await stop_fakes(fakes)


# -- the real LiveKit server (tests/livekit_server.py) ---------------------------------------------------

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def livekit_server() -> Iterator[LiveKitServer]:
    """One `livekit-server --dev` for the whole test session, on free ports bound to 127.0.0.1. Its log is
    kept in test-artifacts/ when a test failed (and removed otherwise). Missing binary: a skip that says how
    to install it, but a failure under CI=true (CI installs it; a skip there would hide the real rooms)."""
    binary = find_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(INSTALL_HINT, pytrace=False)
        pytest.skip(INSTALL_HINT)
    server = LiveKitServer(binary, ARTIFACTS / "livekit-server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Browsers]:
    """Headless Debian Chromium driven by Playwright (tests/browser.py). Missing: a skip with the install
    hint, but a failure under CI=true (.ci/run installs it; a skip there would hide the browser tests)."""
    if (missing := missing_browser()) is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    async with Browsers.open(tmp_path) as browsers:
        yield browsers


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # the server's log, and the cluster's (tests/test_cluster.py): kept only when a test failed
    logs = ("livekit-server.log", "livekit-server-relayed.log", "livekit-node-a.log", "livekit-node-b.log")
    for name in (*logs, "redis-server.log"):
        if exitstatus == 0 and (log := ARTIFACTS / name).exists():
            log.unlink()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed real-room test shows the end of the server's log, and where the whole log is kept."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    servers = [funcargs.get("livekit_server")]
    if (cluster := funcargs.get("cluster")) is not None:  # tests/test_cluster.py: its two nodes
        servers += cluster.nodes.nodes
    for server in servers:
        if report.failed and isinstance(server, LiveKitServer):
            report.sections.append(("livekit-server log (tail)", f"{server.log_path}\n{server.log_tail(40)}"))
    return report
