"""Typed settings read from the environment (and `.env`), validated in one pass.

Every problem is collected before anything is raised, so one start-up error names every missing or
malformed variable at once. Secrets are never echoed back in those messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values

from agent.language.codes import AUTO, DETECTED_LANGUAGES, base_language
from agent.settings.prices import Prices, PricesError, load_prices

T = TypeVar("T")

_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_URL_RE = re.compile(r"^(https?|wss?)://[^\s/]+")

DEFAULT_DEEPGRAM_URL = "https://api.deepgram.com/v1/listen"
DEFAULT_CEREBRAS_URL = "https://api.cerebras.ai"
DEFAULT_GROQ_URL = "https://api.groq.com/openai/v1"
DEFAULT_CARTESIA_URL = "https://api.cartesia.ai"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# target languages (tracks) one room gets at most: each costs a TTS stream and an LLM call per utterance
DEFAULT_MAX_LANGUAGES = 4
SYNTHESIS_MODES = ("listeners", "always")


class ConfigError(ValueError):
    """Raised at start-up with every configuration problem found, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class LiveKitSettings:
    url: str
    api_key: str
    api_secret: str


@dataclass(frozen=True, slots=True)
class FluxSettings:
    """Deepgram Flux's end-of-turn settings (its own names; None: Flux's default)."""

    eot_threshold: float | None = None  # DEEPGRAM_EOT_THRESHOLD, 0.5-0.9 (Flux: 0.7)
    # DEEPGRAM_EAGER_EOT_THRESHOLD, 0.3-0.9: an eager end of turn starts a draft translation (None: no drafts)
    eager_eot_threshold: float | None = None
    eot_timeout_ms: int | None = None  # DEEPGRAM_EOT_TIMEOUT_MS: a turn ends after this much silence anyway


@dataclass(frozen=True, slots=True)
class SttSettings:
    api_key: str
    base_url: str
    model: str
    endpointing_ms: int
    flux: FluxSettings = FluxSettings()

    @property
    def turn_based(self) -> bool:
        """Deepgram Flux (`flux-general-en`, `flux-general-multi`): it ends turns itself, at `/v2/listen`."""
        return is_flux(self.model)

    @property
    def url(self) -> str:
        """Where the model listens: DEEPGRAM_BASE_URL for nova (`/v1/listen`), its `/v2/listen` for Flux."""
        if self.turn_based and self.base_url.endswith("/v1/listen"):
            return self.base_url.removesuffix("/v1/listen") + "/v2/listen"
        return self.base_url


@dataclass(frozen=True, slots=True)
class LlmProviderSettings:
    name: str
    api_key: str
    base_url: str
    model: str
    reasoning_effort: str


@dataclass(frozen=True, slots=True)
class TtsSettings:
    api_key: str
    base_url: str
    model: str
    voice: str | None
    sample_rate: int


@dataclass(frozen=True, slots=True)
class Settings:
    agent_name: str
    source_language: str
    target_language: str
    livekit: LiveKitSettings | None
    stt: SttSettings
    llms: tuple[LlmProviderSettings, ...]  # in fallback order: Cerebras first, then Groq
    tts: TtsSettings
    llm_attempt_timeout_s: float
    max_in_flight: int
    context_pairs: int
    utterance_queue_size: int
    latency_log_interval_s: float
    log_level: str | None  # LOG_LEVEL; None: the mode's own default (see `ServerSettings.log_level`)
    max_segment_s: float
    pause_cut_ms: int  # the ears end a segment this far into a pause (0: Deepgram's endpointing alone)
    clause_cuts: bool  # CLAUSE_CUTS: long speech is cut where a clause ends first (ears/segment_cutter.py)
    max_speed: float
    stale_after_s: float
    max_languages: int  # interpretation tracks per room at most (each a TTS and an LLM call per utterance)
    voice_cloning: bool = True  # VOICE_CLONING: a consenting speaker may be interpreted in their own voice
    trim_silence: bool = True  # TRIM_SILENCE: silence at clause boundaries beyond a short gap is not played
    # SYNTHESIS: "listeners" (speech into a language only while a human hears it) or "always"
    synthesis: str = "listeners"
    prices: Prices = field(default_factory=Prices)  # PRICES_FILE: what the providers charge (prices.toml)


class Reader:
    """Reads typed values from an environment mapping and records every problem."""

    def __init__(self, env: Mapping[str, str | None]) -> None:
        self._env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def required(self, name: str, why: str) -> str:
        value = self.raw(name)
        if value is None:
            self.problems.append(f"{name} is missing ({why})")
            return ""
        return value

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def _parsed(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse(value)
        except ValueError:
            self.problems.append(f"{name}={value!r} is malformed: expected {what}")
            return default

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        def parse(v: str) -> int:
            n = int(v)
            if not minimum <= n <= maximum:
                raise ValueError
            return n

        return self._parsed(name, default, parse, f"an integer from {minimum} to {maximum}")

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        def parse(v: str) -> float:
            x = float(v)
            if not minimum <= x <= maximum:
                raise ValueError
            return x

        return self._parsed(name, default, parse, f"a number from {minimum} to {maximum}")

    def language(self, name: str, default: str) -> str:
        def parse(v: str) -> str:
            if not _LANGUAGE_RE.match(v):
                raise ValueError
            return v

        return self._parsed(name, default, parse, "a language code such as 'en' or 'pt-BR'")

    def source_language(self, name: str) -> str:
        """A language code, or `auto` (the default): detected per utterance (Deepgram nova-3's
        `language=multi`)."""
        if (self.raw(name) or AUTO).lower() == AUTO:
            return AUTO
        return self.language(name, AUTO)

    def url(self, name: str, default: str) -> str:
        def parse(v: str) -> str:
            if not _URL_RE.match(v):
                raise ValueError
            return v.rstrip("/")

        return self._parsed(name, default, parse, "an http(s):// or ws(s):// URL")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        def parse(v: str) -> str:
            if v not in choices:
                raise ValueError
            return v

        return self._parsed(name, default, parse, "one of " + ", ".join(choices))


def read_environment(dotenv_path: str | None = ".env") -> dict[str, str | None]:
    """The process environment over the values of `.env` (the real environment wins)."""
    values: dict[str, str | None] = {}
    if dotenv_path and os.path.exists(dotenv_path):
        values.update(dotenv_values(dotenv_path))
    values.update(os.environ)
    return values


_LIVEKIT_VARIABLES = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")


def livekit_settings(r: Reader, why: str) -> LiveKitSettings:
    livekit = LiveKitSettings(
        url=r.required("LIVEKIT_URL", why),
        api_key=r.required("LIVEKIT_API_KEY", "LiveKit API key"),
        api_secret=r.required("LIVEKIT_API_SECRET", "LiveKit API secret"),
    )
    if livekit.url and not _URL_RE.match(livekit.url):
        r.problems.append(f"LIVEKIT_URL={livekit.url!r} is malformed: expected a ws(s):// URL")
    return livekit


def _stt(r: Reader) -> SttSettings:
    model = r.text("DEEPGRAM_MODEL", "nova-3")
    stt = SttSettings(
        api_key=r.required("DEEPGRAM_API_KEY", "Deepgram speech-to-text"),
        base_url=r.url("DEEPGRAM_BASE_URL", DEFAULT_DEEPGRAM_URL),
        model=model,
        endpointing_ms=r.integer("STT_ENDPOINTING_MS", 300, minimum=10, maximum=5000),
        flux=_flux(r),
    )
    flux = stt.flux
    if not stt.turn_based and any(v is not None for v in (flux.eot_threshold, flux.eager_eot_threshold)):
        r.problems.append(
            f"DEEPGRAM_EOT_THRESHOLD and DEEPGRAM_EAGER_EOT_THRESHOLD are Flux's: set DEEPGRAM_MODEL to "
            f"one of {', '.join(FLUX_MODELS)}, not {model!r}"
        )
    if model.startswith("flux") and not stt.turn_based:
        r.problems.append(f"DEEPGRAM_MODEL={model!r} is not a Flux model: use {' or '.join(FLUX_MODELS)}")
    eot = flux.eot_threshold if flux.eot_threshold is not None else FLUX_DEFAULT_EOT_THRESHOLD
    if flux.eager_eot_threshold is not None and flux.eager_eot_threshold > eot:
        r.problems.append(
            f"DEEPGRAM_EAGER_EOT_THRESHOLD={flux.eager_eot_threshold} is above the end-of-turn threshold "
            f"({eot}): an eager end of turn must come first; raise DEEPGRAM_EOT_THRESHOLD (at most 0.9)"
        )
    return stt


# Deepgram Flux: its models, and its end-of-turn threshold's default (Deepgram's Flux configuration docs)
FLUX_MODELS = ("flux-general-en", "flux-general-multi")
FLUX_DEFAULT_EOT_THRESHOLD = 0.7


def is_flux(model: str) -> bool:
    return model in FLUX_MODELS


def _flux(r: Reader) -> FluxSettings:
    """Flux's end-of-turn settings, each None unless set (Flux's own default then)."""

    def number(name: str, low: float, high: float) -> float | None:
        return r.number(name, 0.0, minimum=low, maximum=high) if r.raw(name) is not None else None

    timeout = "DEEPGRAM_EOT_TIMEOUT_MS"
    return FluxSettings(
        eot_threshold=number("DEEPGRAM_EOT_THRESHOLD", 0.5, 0.9),
        eager_eot_threshold=number("DEEPGRAM_EAGER_EOT_THRESHOLD", 0.3, 0.9),
        eot_timeout_ms=r.integer(timeout, 0, minimum=500, maximum=10_000) if r.raw(timeout) else None,
    )


def _llms(r: Reader) -> tuple[LlmProviderSettings, ...]:
    """The LLMs whose key is set, in fallback order: Cerebras first, then Groq (at least one is needed;
    both are read, so a malformed variable of either is reported)."""
    effort_choices = ("none", "low", "medium", "high")
    cerebras_key = r.raw("CEREBRAS_API_KEY")
    groq_key = r.raw("GROQ_API_KEY")
    if cerebras_key is None and groq_key is None:
        r.problems.append(
            "CEREBRAS_API_KEY and GROQ_API_KEY are both missing (translation needs at least one; "
            "set both so Groq can take over when Cerebras fails)"
        )
    cerebras = LlmProviderSettings(
        name="cerebras",
        api_key=cerebras_key or "",
        base_url=r.url("CEREBRAS_BASE_URL", DEFAULT_CEREBRAS_URL),
        model=r.text("CEREBRAS_MODEL", "gpt-oss-120b"),
        reasoning_effort=r.choice("CEREBRAS_REASONING_EFFORT", "low", effort_choices),
    )
    groq = LlmProviderSettings(
        name="groq",
        api_key=groq_key or "",
        base_url=r.url("GROQ_BASE_URL", DEFAULT_GROQ_URL),
        model=r.text("GROQ_MODEL", "openai/gpt-oss-120b"),
        reasoning_effort=r.choice("GROQ_REASONING_EFFORT", "low", effort_choices),
    )
    return tuple(llm for llm, key in ((cerebras, cerebras_key), (groq, groq_key)) if key is not None)


def _tts(r: Reader) -> TtsSettings:
    return TtsSettings(
        api_key=r.required("CARTESIA_API_KEY", "Cartesia text-to-speech"),
        base_url=r.url("CARTESIA_BASE_URL", DEFAULT_CARTESIA_URL),
        model=r.text("CARTESIA_MODEL", "sonic-3"),
        voice=r.raw("CARTESIA_VOICE"),
        sample_rate=24000,
    )


def load_settings(env: Mapping[str, str | None], *, require_livekit: bool = True) -> Settings:
    """Validate `env` into `Settings`, or raise `ConfigError` naming every problem.

    `require_livekit` is False for the file mode, which needs no LiveKit server.
    """
    r = Reader(env)
    livekit = livekit_settings(r, "the LiveKit server the worker registers with") if require_livekit else None
    stt = _stt(r)
    llms = _llms(r)
    tts = _tts(r)
    settings = Settings(
        agent_name=r.text("AGENT_NAME", "interpreter"),
        source_language=r.source_language("SOURCE_LANGUAGE"),
        target_language=r.language("TARGET_LANGUAGE", "es"),
        livekit=livekit,
        stt=stt,
        llms=llms,
        tts=tts,
        llm_attempt_timeout_s=r.number("LLM_ATTEMPT_TIMEOUT_S", 4.0, minimum=0.5, maximum=60),
        max_in_flight=r.integer("MAX_IN_FLIGHT", 3, minimum=1, maximum=16),
        context_pairs=r.integer("CONTEXT_PAIRS", 4, minimum=0, maximum=32),
        utterance_queue_size=r.integer("UTTERANCE_QUEUE_SIZE", 16, minimum=1, maximum=1024),
        latency_log_interval_s=r.number("LATENCY_LOG_INTERVAL_S", 60.0, minimum=1, maximum=3600),
        log_level=r.choice("LOG_LEVEL", "", LOG_LEVELS) or None,
        max_segment_s=r.number("STT_MAX_SEGMENT_S", 1.0, minimum=0, maximum=30),
        pause_cut_ms=r.integer("PAUSE_CUT_MS", 120, minimum=0, maximum=1000),
        clause_cuts=r.choice("CLAUSE_CUTS", "off", ("on", "off")) == "on",
        max_speed=r.number("MAX_SPEED", 1.35, minimum=1.0, maximum=2.0),
        stale_after_s=r.number("STALE_AFTER_S", 20.0, minimum=1.0, maximum=600.0),
        max_languages=r.integer("MAX_LANGUAGES", DEFAULT_MAX_LANGUAGES, minimum=1, maximum=16),
        voice_cloning=r.choice("VOICE_CLONING", "on", ("on", "off")) == "on",
        trim_silence=r.choice("TRIM_SILENCE", "on", ("on", "off")) == "on",
        synthesis=r.choice("SYNTHESIS", "listeners", SYNTHESIS_MODES),
        prices=_prices(r),
    )
    if settings.source_language == AUTO and not can_detect_language(stt.model):
        r.problems.append(
            f"SOURCE_LANGUAGE=auto needs DEEPGRAM_MODEL nova-3 or flux-general-multi (they detect the "
            f"language), not {stt.model!r}: set one of them, or SOURCE_LANGUAGE to the language spoken"
        )
    elif settings.source_language != AUTO and not can_hear(stt.model, settings.source_language):
        r.problems.append(
            f"DEEPGRAM_MODEL={stt.model!r} does not transcribe SOURCE_LANGUAGE={settings.source_language!r}"
            f" (flux-general-en: English only; flux-general-multi: {', '.join(DETECTED_LANGUAGES)}): use "
            f"nova-3, or a Flux model that does"
        )
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def _prices(r: Reader) -> Prices:
    path = r.raw("PRICES_FILE")
    try:
        return load_prices(Path(path) if path else None)
    except PricesError as e:
        r.problems.append(str(e))
        return Prices()


def can_detect_language(model: str) -> bool:
    """Whether a Deepgram model detects the languages `auto` relies on (`DETECTED_LANGUAGES`): the nova-3
    family (`nova-3`, `nova-3-general`, `nova-3-medical`, with `language=multi`) and `flux-general-multi`.
    Nova-2's multi covers English and Spanish only."""
    return model == "nova-3" or model.startswith("nova-3-") or model == "flux-general-multi"


def can_hear(model: str, language: str) -> bool:
    """Whether a Deepgram model transcribes `language`: `flux-general-en` English only, `flux-general-multi`
    the languages it detects; a nova model is asked for the language (Deepgram refuses what it lacks)."""
    if model == "flux-general-en":
        return base_language(language) == "en"
    if model == "flux-general-multi":
        return base_language(language) in DETECTED_LANGUAGES
    return True


@dataclass(frozen=True, slots=True)
class CloneSweepSettings:
    """The worker's sweep of own-voice clones left at Cartesia (agent/run/clone_sweep.py)."""

    api_key: str
    base_url: str
    interval_s: float  # CLONE_SWEEP_INTERVAL_S
    max_age_s: float  # CLONE_MAX_AGE_S: older clones of ours are orphans (longer than any meeting)


def _clone_sweep(r: Reader) -> CloneSweepSettings | None:
    """On when CARTESIA_API_KEY is set and CLONE_SWEEP_INTERVAL_S is not 0."""
    interval_s = r.number("CLONE_SWEEP_INTERVAL_S", 3600.0, minimum=0, maximum=86400)
    max_age_s = r.number("CLONE_MAX_AGE_S", 43200.0, minimum=60, maximum=604800)
    api_key = r.raw("CARTESIA_API_KEY")
    if not interval_s or api_key is None:
        return None
    base_url = r.url("CARTESIA_BASE_URL", DEFAULT_CARTESIA_URL)
    return CloneSweepSettings(api_key, base_url, interval_s, max_age_s)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How the worker runs (needs no provider keys, so `--help` and `download-files` work without them)."""

    agent_name: str
    health_port: int
    prometheus_port: int
    prometheus_dir: str
    drain_timeout_s: int
    sessions_per_core: int
    load_cpu: str  # what the load's CPU term counts: "machine" or "worker" (its own processes)
    # LOG_LEVEL, for the worker and its job processes; None: the framework's default (INFO for
    # `start`, DEBUG for `dev`) or its own LIVEKIT_LOG_LEVEL
    log_level: str | None = None
    health_grace_s: float = 20.0  # health answers 200 this long after start-up before the first registration
    connect_retries: int = 16  # the framework's retries connecting to LiveKit before the worker gives up
    keeper_interval_s: float = 2.0  # KEEPER_INTERVAL_S: the keeper's sweep (agent/run/keeper.py); 0: off
    livekit: LiveKitSettings | None = None  # what the keeper calls the server API with (when all are set)
    warm_processes: int | None = None  # job processes kept warm; None: as many as the capacity (capped)
    clone_sweep: CloneSweepSettings | None = None  # own-voice clones left behind, deleted (when a key is set)

    @property
    def framework_log_level(self) -> str | None:
        """LOG_LEVEL as livekit-agents' `--log-level`/LIVEKIT_LOG_LEVEL spells it (WARN, not WARNING)."""
        return "WARN" if self.log_level == "WARNING" else self.log_level


def load_server_settings(env: Mapping[str, str | None]) -> ServerSettings:
    r = Reader(env)
    settings = ServerSettings(
        agent_name=r.text("AGENT_NAME", "interpreter"),
        health_port=r.integer("HEALTH_PORT", 8081, minimum=1, maximum=65535),
        prometheus_port=r.integer("PROMETHEUS_PORT", 9100, minimum=1, maximum=65535),
        prometheus_dir=r.text("PROMETHEUS_MULTIPROC_DIR", "/tmp/interpreter-prometheus"),
        # Fly's kill_timeout (300 s max) must cover the drain and then each job's own shutdown bound
        # (agent.run.worker: SESSION_DRAIN_TIMEOUT_S + JOB_CLOSE_TIMEOUT_S + 0.5 s, 35.5 s in all)
        drain_timeout_s=r.integer("DRAIN_TIMEOUT_S", 260, minimum=1, maximum=3600),
        sessions_per_core=r.integer("SESSIONS_PER_CORE", 7, minimum=1, maximum=200),
        load_cpu=r.choice("LOAD_CPU", "machine", ("machine", "worker")),
        log_level=r.choice("LOG_LEVEL", "", LOG_LEVELS) or None,
        health_grace_s=r.number("HEALTH_GRACE_S", 20.0, minimum=0, maximum=600),
        connect_retries=r.integer("CONNECT_RETRIES", 16, minimum=0, maximum=1000),
        keeper_interval_s=r.number("KEEPER_INTERVAL_S", 2.0, minimum=0, maximum=600),
        livekit=livekit_settings(r, "") if all(r.raw(n) for n in _LIVEKIT_VARIABLES) else None,
        warm_processes=r.integer("WARM_PROCESSES", 0, minimum=1, maximum=200) or None,
        clone_sweep=_clone_sweep(r),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return settings
