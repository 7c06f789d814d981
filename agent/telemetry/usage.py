"""What the providers are asked for, counted where it happens, and what it costs by the price table.

One `Usage` per room (per file in the file mode). Each provider call is counted as the provider bills it:
- speech-to-text: the audio seconds sent, per speaker stream, counted as the ears send it, a second at a
  time (a replay after a reconnect too). (The Deepgram plugin's own usage events report a connection's
  lifetime instead, which runs on while the ears drain a closing stream: 10.0 s for 8.5 s sent, in
  tests/test_filemode.py.)
- LLM: the input and output tokens of the provider's own usage field, by provider (a fallback's and a
  probe's too), counted by `FallbackLLM` where it knows which LLM answered;
- TTS: the characters sent to be synthesized, a clause's retry included, by voice kind (a preset voice, or a
  speaker's own cloned voice);
- voice cloning: the clone and delete calls made.

Each count goes to a Prometheus counter (`interpreter_usage_total`, and its price to
`interpreter_cost_usd_total`) and to the room's totals, logged at the job's end (`log`) and in the file
mode's `--json`. Counts carry a language (the target language, for the LLM and TTS; the speaker's, for
speech-to-text), never who spoke or what was said.

An LLM request is counted in the channel it serves without being handed a meter: `Channel.run` sets
`METER` for its task, and the LLM stream's tasks (created inside it) inherit it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from agent.telemetry import metrics

STT, TTS = "deepgram", "cartesia"  # the providers of speech-to-text and of speech (LLMs go by their names)
# audio sent is counted a second at a time, not per 20 ms frame: the ears' loop stays as light as it was
STT_COUNT_EVERY_S = 1.0


class PriceTable(Protocol):
    """What the usage is priced by (`agent.settings.prices.Prices`)."""

    @property
    def date(self) -> str: ...

    def price(self, provider: str, model: str, item: str) -> object | None: ...

    def cost(self, provider: str, model: str, item: str, amount: float) -> float: ...


class _Unpriced:
    date = ""

    def price(self, provider: str, model: str, item: str) -> object | None:
        return None

    def cost(self, provider: str, model: str, item: str, amount: float) -> float:
        return 0.0


@dataclass(frozen=True, slots=True, order=True)
class Line:
    provider: str
    model: str
    item: str
    language: str = ""


class Usage:
    def __init__(
        self, prices: PriceTable | None = None, *, on_spent: Callable[[float], None] | None = None
    ) -> None:
        self.prices: PriceTable = prices or _Unpriced()
        self.amounts: dict[Line, float] = defaultdict(float)
        self.cost_usd = 0.0
        self._streams: dict[str, float] = defaultdict(float)  # speaker stream → audio seconds sent
        # (speaker stream, model, language) → audio seconds sent and not counted yet (under a second)
        self._stt_pending: dict[tuple[str, str, str], float] = {}
        self.on_spent = on_spent  # told the room's cost after each count that cost something

    def add(self, provider: str, model: str, item: str, amount: float, language: str = "") -> None:
        if amount <= 0:
            return
        line = Line(provider, model, item, language)
        self.amounts[line] += amount
        metrics.USAGE.labels(provider=provider, model=model, item=item, language=language).inc(amount)
        cost = self.prices.cost(provider, model, item, amount)
        if cost > 0:
            self.cost_usd += cost
            metrics.COST.labels(provider=provider).inc(cost)
            if self.on_spent is not None:
                self.on_spent(self.cost_usd)

    def stt(self, stream: str, model: str, seconds: float, language: str) -> None:
        """`seconds` of audio sent to speech-to-text on `stream` (one per speaker track): counted once a
        second's worth has gathered (`STT_COUNT_EVERY_S`), and whatever is left when the totals are read."""
        key = (stream, model, language)
        pending = self._stt_pending.get(key, 0.0) + seconds
        self._stt_pending[key] = pending
        if pending >= STT_COUNT_EVERY_S:
            self._count_stt(key)

    def _count_stt(self, key: tuple[str, str, str]) -> None:
        stream, model, language = key
        seconds = self._stt_pending.pop(key, 0.0)
        self._streams[stream] += seconds
        self.add(STT, model, "audio_seconds", seconds, language)

    def _count_pending(self) -> None:
        for key in list(self._stt_pending):
            self._count_stt(key)

    def meter(self, language: str) -> Meter:
        return Meter(self, language)

    def total(self, item: str, *, provider: str | None = None, language: str | None = None) -> float:
        self._count_pending()
        return sum(
            amount
            for line, amount in self.amounts.items()
            if line.item == item
            and (provider is None or line.provider == provider)
            and (language is None or line.language == language)
        )

    def unpriced(self) -> list[str]:
        """What was used that the price table does not price (it cost nothing in `cost_usd`)."""
        missing = {line for line in self.amounts if self.prices.price(*_key(line)) is None}
        return sorted({f"{line.provider} {line.item}" for line in missing})

    def summary(self) -> dict[str, object]:
        """The totals as logged and printed: every line, the cost, the speaker streams' seconds."""
        self._count_pending()
        return {
            "lines": [
                {
                    "provider": line.provider,
                    "model": line.model,
                    "item": line.item,
                    "language": line.language,
                    "amount": round(amount, 3),
                    "usd": round(self.prices.cost(*_key(line), amount), 6),
                }
                for line, amount in sorted(self.amounts.items())
            ],
            "cost_usd": round(self.cost_usd, 6),
            "stt_stream_seconds": sorted(round(s, 1) for s in self._streams.values()),
            "unpriced": self.unpriced(),
            "prices_date": self.prices.date,
        }

    def log(self, logger: logging.Logger, message: str) -> None:
        """The room's usage and cost, in one line (ids and counts only)."""
        lines = self.summary()["lines"]  # (what was pending counted first)
        metrics.ROOM_COST.observe(self.cost_usd)
        logger.info(message, extra={"usage": lines, "cost_usd": round(self.cost_usd, 6)})


def _key(line: Line) -> tuple[str, str, str]:
    return line.provider, line.model, line.item


class Meter:
    """A room's usage for one target language (its channel's LLM requests and TTS)."""

    def __init__(self, usage: Usage, language: str) -> None:
        self.usage = usage
        self.language = language

    def llm(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> None:
        self.usage.add(provider, model, "input_tokens", input_tokens, self.language)
        self.usage.add(provider, model, "output_tokens", output_tokens, self.language)

    def tts(self, model: str, characters: int, *, clone: bool) -> None:
        self.usage.add(TTS, model, "clone_characters" if clone else "characters", characters, self.language)


# the meter of the channel whose task (or a task it made) is running; None outside any channel
METER: ContextVar[Meter | None] = ContextVar("interpreter_usage_meter", default=None)


# what no room's channel asked for (the process-wide counters still see it)
_OUTSIDE_ROOMS = Meter(Usage(), language="")


def count_llm(provider: str, model: str, input_tokens: int, output_tokens: int) -> None:
    """An LLM's reported usage, in the channel it serves."""
    (METER.get() or _OUTSIDE_ROOMS).llm(provider, model, input_tokens, output_tokens)
