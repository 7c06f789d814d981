"""A turn-based STT's turns cut into pieces by the ears (Deepgram Flux).

Flux ends turns, not clauses, and cannot be asked to finalize: each `Update` carries the whole turn's
transcript so far, and its `EndOfTurn` the whole turn. A monologue is one long turn, so the ears cut it
themselves: at a cut (`cut`, when the segment cutter says one is due) the words of the freshest update that
no piece holds yet become a piece, as a final, but for its last word, which may still be growing or be
revised (as an interim's), unless a clause mark ends it; the end of the turn gives the words after the last
piece. (Taking the last word
too, a turn whose end of turn revised it and added none gave no final at all: its end was never covered.)
Interims and eager ends of turn (drafts) likewise carry only the words after the last piece, so the
rest of the ears see Flux as they see nova-3: segments with interims and a final each.

Flux's words carry no times: a piece lies on the stream's audio from where the last one ended (or the turn
began) to the end of the update's audio window.
"""

from __future__ import annotations

from dataclasses import replace

from livekit.agents import stt

from agent.language.text import ends_clause

_PASSED = (stt.SpeechEventType.START_OF_SPEECH, stt.SpeechEventType.END_OF_SPEECH)


class TurnPieces:
    """One stream's turns: events in (`events`), the events the ears handle out; `cut` makes a piece."""

    def __init__(self) -> None:
        self._emitted = 0  # words of the open turn that a piece already holds
        self._latest: stt.SpeechData | None = None  # the open turn's freshest transcript
        self._piece_start: float | None = None  # stream time where the next piece starts (None: the turn's)
        self.pieces = 0  # pieces cut out of turns (not counting the turns' own ends)

    def reset(self) -> None:
        """A new stream: it hears the replay of what no piece holds, from its own time 0."""
        self._emitted, self._latest, self._piece_start = 0, None, None

    def events(self, event: stt.SpeechEvent) -> list[stt.SpeechEvent]:
        """What the ears make of one of the stream's events."""
        kind = event.type
        if kind in _PASSED or not event.alternatives:
            return [event]
        data = event.alternatives[0]
        rest = self._rest(data)
        if kind == stt.SpeechEventType.FINAL_TRANSCRIPT:  # the end of the turn
            self._emitted, self._latest, self._piece_start = 0, None, None
        elif kind == stt.SpeechEventType.INTERIM_TRANSCRIPT:
            self._latest = data
        if rest is None:
            return []
        return [replace(event, alternatives=[rest])]

    def cut(self) -> stt.SpeechEvent | None:
        """A piece of the open turn, as a final: the freshest transcript's words no piece holds yet (None:
        there are none)."""
        latest = self._latest
        words = list(latest.words or []) if latest is not None else []
        # the last word waits, unless a clause mark after it says it is complete
        settled = len(words) if words and ends_clause(str(words[-1])) else len(words) - 1
        if latest is None or settled <= self._emitted:
            return None  # no word but the last one is new
        rest = self._rest(latest, upto=settled)
        if rest is None:
            return None
        self._emitted = settled
        self._piece_start = latest.end_time
        self.pieces += 1
        return stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives=[rest])

    def _rest(self, data: stt.SpeechData, upto: int | None = None) -> stt.SpeechData | None:
        """`data` with only the words after the last piece (and before word `upto`; None: no words)."""
        words = list(data.words or [])
        if not self._emitted and upto is None:
            return data if words or data.text.strip() else None
        rest = words[self._emitted : upto]
        if not rest:
            return None
        start = self._piece_start if self._piece_start is not None else data.start_time
        text = " ".join(str(w) for w in rest)
        return replace(data, text=text, words=rest, start_time=min(start, data.end_time))
