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
    idle_s: float = 0.3  # a track idle this long before the audio was ready means there is no hurry
    gain: float = 1.0  # extra speaking rate per second of wait
    max_speed: float = 1.35  # natural bound for a faster speaking rate
    concise_after_s: float = 0.3  # a wait from which translations are asked to be tighter
    smoothing: float = 0.7  # weight of the newest observation


class Pace:
    def __init__(self, options: PaceOptions | None = None) -> None:
        self.options = options or PaceOptions()
        self._lag: float | None = None
        self._ratio = 1.0  # how much longer translations take to say than the original, at normal speed

    def observe_ratio(self, translated_s: float, original_s: float) -> None:
        """An utterance of `original_s` seconds took `translated_s` to say at normal speed."""
        if original_s > 0.3 and translated_s > 0:
            a = self.options.smoothing
            self._ratio = a * (translated_s / original_s) + (1 - a) * self._ratio

    def observe(self, pressure_s: float) -> None:
        """An utterance's audio, once ready, waited `pressure_s` for the audio ahead of it (negative:
        the track had been idle that long)."""
        a = self.options.smoothing
        self._lag = pressure_s if self._lag is None else a * pressure_s + (1 - a) * self._lag

    @property
    def pressure_s(self) -> float | None:
        return self._lag

    @property
    def busy(self) -> bool:
        return self._lag is not None and self._lag > -self.options.idle_s

    @property
    def speed(self) -> float:
        """The speaking rate for the next utterance (1.0 = the voice's normal rate): once behind, at
        least the rate at which translations keep pace with the speaker, more the further behind."""
        o = self.options
        if not self.busy or self._lag is None:
            return 1.0
        return round(min(o.max_speed, max(self._ratio, 1.0) + o.gain * max(0.0, self._lag)), 2)

    @property
    def concise(self) -> bool:
        return self._lag is not None and self._lag > self.options.concise_after_s
