"""Hermetic fake provider servers (aiohttp on 127.0.0.1) that the real LiveKit plugins and SDKs talk to."""

from tests.fakes.cartesia import FakeCartesia, requested_speed
from tests.fakes.deepgram import (
    INTERIM_PLACEHOLDER,
    DeepgramConnection,
    DeepgramFinal,
    FakeDeepgram,
    IgnoredSegment,
    NumberedWords,
    numbered_words,
)
from tests.fakes.flux import FluxEvent, FluxSettings, FluxTiming, FluxTurn
from tests.fakes.latency_model import Delay
from tests.fakes.llm import FakeLLM, LLMRequest

__all__ = [
    "INTERIM_PLACEHOLDER",
    "DeepgramConnection",
    "DeepgramFinal",
    "Delay",
    "FakeCartesia",
    "FakeDeepgram",
    "FakeLLM",
    "FluxEvent",
    "FluxSettings",
    "FluxTiming",
    "FluxTurn",
    "IgnoredSegment",
    "LLMRequest",
    "NumberedWords",
    "numbered_words",
    "requested_speed",
]
