"""A room's optional spending limit (`budget_usd_per_hour` in its metadata): at most that much, by the price
table, in each hour of the meeting (hours counted from when the interpreter joined). When an hour's spend
reaches it, the room is told (`interpreter.budget_reached`: when spending resumes, unix ms) and nothing new
is translated or spoken until the next hour begins. What was already heard is not dropped: an utterance
being spoken is finished, one waiting for its turn is translated and captioned (not spoken); and the
speakers' own captions go on (speech-to-text, a few percent of the cost, keeps running).

The clock is passed in, and `check` is all a timer does, so the rules are tested without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

logger = logging.getLogger("agent.session")

HOUR_S = 3600.0


class Budget:
    def __init__(
        self,
        on_change: Callable[[], None],
        *,
        clock: Callable[[], float] = time.time,
        hour_s: float = HOUR_S,
    ) -> None:
        self._on_change = on_change  # told whenever `reached` changes
        self._clock = clock
        self._hour_s = hour_s
        self.per_hour: float | None = None
        self._hour_started = clock()
        self._spent = 0.0  # the room's cost so far
        self._spent_before = 0.0  # ... when this hour began
        self.reached = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def resumes_at(self) -> float:
        """When the hour whose budget is spent ends (unix seconds, on the clock)."""
        return self._hour_started + self._hour_s

    def follow(self, per_hour: float | None) -> None:
        """The room's budget from now on (None: no limit)."""
        self.per_hour = per_hour
        self.check()

    def spent(self, total_usd: float) -> None:
        """The room's cost so far (`Usage.on_spent`)."""
        self._spent = total_usd
        if not self.reached:
            self.check()

    def check(self) -> None:
        now = self._clock()
        while now >= self._hour_started + self._hour_s:  # a new hour: its budget is whole again
            self._hour_started += self._hour_s
            self._spent_before = self._spent
        this_hour = self._spent - self._spent_before
        reached = self.per_hour is not None and this_hour >= self.per_hour
        if reached == self.reached:
            return
        self.reached = reached
        if reached:
            logger.warning(
                "the room's budget for this hour is spent: nothing new is interpreted until the next hour",
                extra={"budget_usd_per_hour": self.per_hour, "spent_usd": round(this_hour, 4)},
            )
            self._resume_later(self.resumes_at - now)
        else:
            logger.info("the room's budget allows interpreting again")
            self.cancel()
        self._on_change()

    def _resume_later(self, delay_s: float) -> None:
        self.cancel()
        try:
            self._timer = asyncio.get_running_loop().call_later(max(delay_s, 0.0), self.check)
        except RuntimeError:  # no loop (a test driving the clock itself): `check` is called by hand
            self._timer = None

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
