"""Catching up: when the interpretation falls behind the speaker, speak faster and translate tighter.

Long continuous speech whose translation runs longer than the original (English → Spanish runs about
1.25× longer) would otherwise fall further behind with every sentence. Nothing said is ever dropped:
instead the mouth reports how late each utterance starts to be heard, and the brain asks the TTS for
a faster speaking rate — proportional to the excess lag, within a natural bound — and, further
behind, asks the LLM for a more concise (but complete) translation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PaceOptions:
    target_lag_s: float = 0.8  # start-of-audio lag (after the speech ended) tolerated at normal speed
    gain: float = 1.0  # extra speaking rate per second of lag beyond the target
    max_speed: float = 1.35  # natural bound for a faster speaking rate
    concise_after_s: float = 0.5  # lag beyond the target from which translations are asked to be tighter
    smoothing: float = 0.5  # weight of the newest observation


class Pace:
    def __init__(self, options: PaceOptions | None = None) -> None:
        self.options = options or PaceOptions()
        self._lag: float | None = None

    def observe(self, lag_s: float) -> None:
        """An utterance starts being heard `lag_s` after its speech ended."""
        a = self.options.smoothing
        self._lag = lag_s if self._lag is None else a * lag_s + (1 - a) * self._lag

    @property
    def lag_s(self) -> float | None:
        return self._lag

    @property
    def excess_s(self) -> float:
        return 0.0 if self._lag is None else max(0.0, self._lag - self.options.target_lag_s)

    @property
    def speed(self) -> float:
        """The speaking rate for the next utterance (1.0 = the voice's normal rate)."""
        o = self.options
        return round(min(o.max_speed, 1.0 + o.gain * self.excess_s), 2)

    @property
    def concise(self) -> bool:
        return self.excess_s > self.options.concise_after_s
