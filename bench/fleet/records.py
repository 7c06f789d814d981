"""What one room of `python -m bench fleet` saw, as plain data (every time in seconds since its scenario
began, on the machine's monotonic clock): the interpreters of ours that came and went, what the speaker
said, which captions arrived, when the listener heard sound. The figures (`bench/fleet/figures.py`) are
computed from these alone, so they can be checked on hand-made records (tests/test_bench_fleet.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.harness.model import WORDS_PER_S

INTERPRETING_STATES = ("listening", "thinking", "speaking")  # `lk.agent.state` of an interpreter at work


@dataclass
class Interpreter:
    """One interpreter of ours (a participant of kind AGENT with our `lk.agent.name`) as the room saw it."""

    identity: str
    joined: float
    left: float | None = None
    states: list[tuple[float, str]] = field(default_factory=list)  # each `lk.agent.state` it took, and when
    alive: list[float] = field(default_factory=list)  # when each `interpreter.alive` heartbeat arrived
    standby: list[tuple[float, bool]] = field(default_factory=list)  # `interpreter.standby` changes
    draining: float | None = None  # when `interpreter.draining` became "true"
    handover_from: str = ""  # `interpreter.handover_from`: the identity it takes over from

    def interpreting_since(self) -> float | None:
        """The first moment it was at work: listening (or thinking, speaking) and not in standby; one that
        took a room over (it went into standby at some point) only once out of it, even if it said it was
        listening before it said it was in standby."""
        took_over = any(on for _, on in self.standby)
        changes = [(t, "state", s) for t, s in self.states] + [(t, "standby", b) for t, b in self.standby]
        state, waiting, waited = "", False, False
        for t, kind, value in sorted(changes, key=lambda c: c[0]):
            if kind == "state":
                state = str(value)
            else:
                waiting = bool(value)
                waited = waited or waiting
            if state in INTERPRETING_STATES and not waiting and (waited or not took_over):
                return t
        return None


@dataclass(frozen=True)
class Piece:
    """A caption the listener received: the utterance's id (the fake STT's first word), when it arrived, who
    sent it (the interpreter, for a translation; the speaker's identity, for a source caption) and its
    length in characters (the fake STT writes as many characters as the speech took to say)."""

    id: int
    at: float
    sender: str
    chars: int = 0


@dataclass
class RoomRecord:
    name: str
    requested_at: float  # the room asked for its interpreter: the speaker joined with a token, or the API
    interpreters: list[Interpreter] = field(default_factory=list)
    sentences: list[tuple[float, float]] = field(default_factory=list)  # as the speaker sent them
    lengths: list[float] = field(default_factory=list)  # each sentence's length in the speech itself
    source: list[Piece] = field(default_factory=list)  # final source captions
    translated: list[Piece] = field(default_factory=list)  # each translation's first caption
    loud: list[tuple[float, float]] = field(default_factory=list)  # when the listener heard sound
    merged: list[float] = field(default_factory=list)  # speech end of each utterance folded into another
    ended: float = 0.0  # the end of the observation
    troubles: list[tuple[float, str]] = field(default_factory=list)  # our participants' connection lost
    speaker_behind_s: float = 0.0  # how far the speaker fell behind real time (a machine too busy)

    def length(self, k: int) -> float:
        """Sentence k's length in the speech itself (as sent, if not known: a speaker behind real time
        stretches it)."""
        return self.lengths[k] if k < len(self.lengths) else self.sentences[k][1] - self.sentences[k][0]

    def as_dict(self) -> dict[str, Any]:
        """For the result file, times rounded to the millisecond."""
        return rounded(asdict(self))


def rounded(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 3)
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v) for v in x]
    return x


def words(length_s: float) -> int:
    """The words of `length_s` of the synthetic speech (spoken at WORDS_PER_S)."""
    return max(1, round(length_s * WORDS_PER_S))
