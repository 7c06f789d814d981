"""A provider fault as one loop sees it: down or up, reported only when that changes.

The ears (STT), the translator (LLM) and the brain (TTS) each hold one; the room session gathers
what they report into the agent's `interpreter.faults` attribute.
"""

from __future__ import annotations

from collections.abc import Callable


class FaultFlag:
    def __init__(self, report: Callable[[bool], None] | None = None) -> None:
        self.down = False
        self._report = report  # told True when the provider goes down, False when it works again

    def set(self, down: bool) -> bool:
        """Note the provider's state; True if that changed it (and it was reported)."""
        if down == self.down:
            return False
        self.down = down
        if self._report is not None:
            self._report(down)
        return True
