"""What each run of `python -m bench cost` is (`Plan`), and what its speakers say (`meeting_timelines`):
people taking turns of a few sentences, the bench's synthetic speech (bench/harness/speech.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench.harness.speech import Sentence, Timeline

SENTENCE_S = (1.5, 4.5)  # a sentence's speech
# between a turn's sentences: longer than the STT's endpointing (300 ms), so each sentence is an utterance
SENTENCE_GAP_S = (0.5, 0.8)
TURN_GAP_S = (1.0, 2.0)  # between one speaker's turn and the next's
SENTENCES_PER_TURN = (2, 4)


@dataclass(frozen=True, slots=True)
class Plan:
    """One run: one room, its target languages (room metadata), a listener per language, the speakers."""

    label: str
    synthesis: str  # the worker's SYNTHESIS: always (today's behaviour) or listeners (the new one)
    languages: tuple[str, ...]
    speakers: int
    minutes: float
    leaver: str | None = None  # the language whose (only) listener leaves halfway


def plans(minutes: float, one_language_minutes: float) -> dict[str, Plan]:
    """The three runs: the meeting today and new (fr, de, es; es loses its listener halfway), and the same
    two speakers into one language, to price one interpreted minute (and a typical hour) into one language."""
    meeting = ("fr", "de", "es")
    return {
        "today": Plan("today", "always", meeting, 2, minutes, leaver="es"),
        "new": Plan("new", "listeners", meeting, 2, minutes, leaver="es"),
        "one-language": Plan("one-language", "listeners", ("es",), 2, one_language_minutes),
    }


def meeting_timelines(minutes: float, speakers: int, rng: random.Random) -> list[Timeline]:
    """`speakers` people taking turns for about `minutes`: a turn is 2-4 sentences; each speaker's timeline
    holds its own turns, and silence while the others speak, all of the same length. Only whole turns: the
    meeting ends after the last turn that fits."""
    total, t, k = minutes * 60, 0.5, 0
    voiced: list[list[tuple[float, float]]] = [[] for _ in range(speakers)]
    turns: list[list[Sentence]] = [[] for _ in range(speakers)]
    while True:
        turn, at = [], t
        for i in range(rng.randint(*SENTENCES_PER_TURN)):
            if i:
                at += rng.uniform(*SENTENCE_GAP_S)
            duration = rng.uniform(*SENTENCE_S)
            turn.append((at, duration))
            at += duration
        if at > total and k >= speakers:
            break
        voiced[k % speakers] += turn
        turns[k % speakers].append(Sentence(turn[0][0], at))
        t, k = at + rng.uniform(*TURN_GAP_S), k + 1
    return [
        Timeline(v, [Sentence(s, s + d) for s, d in v], said, t)
        for v, said in zip(voiced, turns, strict=True)
    ]


def speech_seconds(timelines: list[Timeline]) -> float:
    """What the speakers said, in seconds of speech (the interpreted time)."""
    return sum(d for timeline in timelines for _, d in timeline.voiced)
