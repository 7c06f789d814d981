"""What the agent says about itself in its attributes: its state (`lk.agent.state`: initializing, listening,
speaking while any interpretation track plays) and the providers failing right now (`interpreter.faults`,
each kind as long as any channel or speaker reports it failing)."""

from __future__ import annotations

import logging

from agent.room.room_io import ATTR_FAULTS, RoomPublisher

logger = logging.getLogger("agent.session")


class AgentStatus:
    def __init__(self, publisher: RoomPublisher) -> None:
        self._publisher = publisher
        self._playing: set[str] = set()  # the languages whose track is playing now
        self._faults: dict[str, set[str]] = {}  # kind ("llm", "stt", "tts") → who reports it failing

    def set_state(self, state: str) -> None:
        self._publisher.set_state(state)

    def on_playing(self, language: str, playing: bool) -> None:
        was_speaking = bool(self._playing)
        if playing:
            self._playing.add(language)
        else:
            self._playing.discard(language)
        if bool(self._playing) != was_speaking:
            self._publisher.set_state("speaking" if self._playing else "listening")

    @property
    def faults(self) -> list[str]:
        return sorted(kind for kind, reporters in self._faults.items() if reporters)

    def set_fault(self, kind: str, reporter: str, active: bool) -> None:
        """A provider is failing (or works again) for one channel or speaker; the room sees which
        kinds are failing in the agent's `interpreter.faults` attribute."""
        before = self.faults
        reporters = self._faults.setdefault(kind, set())
        if active:
            reporters.add(reporter)
        else:
            reporters.discard(reporter)
        if self.faults != before:
            logger.warning("provider faults now: %s", ",".join(self.faults) or "none")
            self._publisher.set_attributes(**{ATTR_FAULTS: ",".join(self.faults)})
