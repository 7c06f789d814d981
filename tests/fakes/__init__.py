"""Hermetic fake provider servers (aiohttp on 127.0.0.1) that the real LiveKit plugins and SDKs talk to."""

from .cartesia import FakeCartesia
from .deepgram import DeepgramConnection, DeepgramFinal, FakeDeepgram, IgnoredSegment
from .llm import FakeLLM, LLMRequest

__all__ = [
    "DeepgramConnection",
    "DeepgramFinal",
    "FakeCartesia",
    "FakeDeepgram",
    "FakeLLM",
    "IgnoredSegment",
    "LLMRequest",
]
