"""Latency model for the fake providers: a delay with jitter, sampled from a seeded `random.Random`.

Each fake keeps its own `random.Random(seed)` and records, per request, the delay it sampled, so a benchmark
can tell the modelled provider time on its critical path from everything else.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delay:
    """A delay in seconds: `mean_s` with jitter (a lognormal whose mean is mean_s and whose standard
    deviation is jitter_s; exactly mean_s when jitter_s is 0). Never negative."""

    mean_s: float = 0.0
    jitter_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean_s) and math.isfinite(self.jitter_s)):
            raise ValueError(f"a Delay must be finite, not {self}")
        if self.mean_s < 0 or self.jitter_s < 0:
            raise ValueError(f"a Delay cannot be negative: {self}")
        if self.jitter_s > 0 and self.mean_s == 0:
            raise ValueError(f"a Delay with jitter needs a positive mean: {self}")

    def sample(self, rng: random.Random) -> float:
        """One delay. Draws from `rng` only when there is jitter."""
        if self.jitter_s == 0:
            return self.mean_s
        # lognormal with E[X] = mean_s, SD[X] = jitter_s
        sigma2 = math.log1p((self.jitter_s / self.mean_s) ** 2)
        mu = math.log(self.mean_s) - sigma2 / 2
        return rng.lognormvariate(mu, math.sqrt(sigma2))
