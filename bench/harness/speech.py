"""Synthetic speakers for the benchmark: voiced segments (a modulated tone the fake STT hears as
speech) on a timeline of pauses, at 16 kHz. Each timeline keeps its sentences and turns (seconds on the
speaker's audio timeline), which the per-sentence lags (`bench/lag/lags.py`) are measured on."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from agent.run.filemode import Pcm

RATE = 16000
SENTENCE_PAUSE_S = 0.45  # a monologue's pause between sentences: longer than the STT's 300 ms endpointing
BREATH_S = (0.08, 0.2)  # a monologue's breaths between phrases: shorter than the endpointing


@dataclass(frozen=True, slots=True)
class Sentence:
    start: float  # its first word starts (audio timeline, s)
    end: float  # its last word ends


@dataclass(frozen=True, slots=True)
class Timeline:
    """What a synthetic speaker says: sound (phrases), sentences and turns, on its audio timeline."""

    voiced: list[tuple[float, float]]  # (start, duration) of each stretch of sound
    sentences: list[Sentence]  # first word's start, last word's end
    turns: list[Sentence]  # a turn: speech followed by silence (a whole monologue is one)
    total_s: float

    def render(self) -> Pcm:
        return render(self.voiced, self.total_s)


def tone(samples: int, freq: float) -> np.ndarray:
    """A voiced stretch of `samples` at RATE: a tone of `freq` Hz, modulated like syllables (full scale 1)."""
    t = np.arange(samples) / RATE
    envelope = 0.75 + 0.25 * np.sin(2 * np.pi * 4.0 * t)  # syllable-like, never silent
    return 0.3 * envelope * np.sin(2 * np.pi * freq * t)


def render(segments: list[tuple[float, float]], total_s: float) -> Pcm:
    samples = np.zeros(int(total_s * RATE) + RATE, dtype=np.float32)
    for start, duration in segments:
        i, n = int(start * RATE), int(duration * RATE)
        samples[i : i + n] = tone(n, 220.0)
    return Pcm((samples * 32767).astype(np.int16), RATE)


def turns_timeline(
    count: int, rng: random.Random, *, speech_s: tuple[float, float], silence_s: tuple[float, float]
) -> Timeline:
    """Turns of one sentence each: `speech_s` (uniform range) of speech, then `silence_s` of silence."""
    t, segments = 0.5, []
    for _ in range(count):
        duration = rng.uniform(*speech_s)
        segments.append((t, duration))
        t += duration + rng.uniform(*silence_s)
    sentences = [Sentence(s, s + d) for s, d in segments]
    return Timeline(segments, sentences, sentences, t)


def dialogue_timeline(utterances: int, rng: random.Random) -> Timeline:
    """Short turns with pauses: 0.8-2.5 s of speech (a sentence), then 1.0-2.0 s of silence."""
    return turns_timeline(utterances, rng, speech_s=(0.8, 2.5), silence_s=(1.0, 2.0))


def short_turns_timeline(turns: int, rng: random.Random) -> Timeline:
    """A few words (0.4-1.2 s), then 1.5-2.5 s of silence: the other person waits for the translation."""
    return turns_timeline(turns, rng, speech_s=(0.4, 1.2), silence_s=(1.5, 2.5))


def monologue_timeline(minutes: float, rng: random.Random, *, phrases_per_sentence: int = 3) -> Timeline:
    """Continuous speech: phrases of 2-6 s joined by breaths of 80-200 ms (shorter than the STT's
    endpointing, so they do not end a segment); a sentence is `phrases_per_sentence` phrases, ended by a
    450 ms pause."""
    t, segments, total = 0.5, [], minutes * 60
    sentences: list[Sentence] = []
    sentence_start = t
    while t < total:
        duration = min(rng.uniform(2.0, 6.0), total - t)
        segments.append((t, duration))
        if len(segments) % phrases_per_sentence == 0:
            sentences.append(Sentence(sentence_start, t + duration))
            t += duration + SENTENCE_PAUSE_S
            sentence_start = t
        else:
            t += duration + rng.uniform(*BREATH_S)
    if len(segments) % phrases_per_sentence:  # the talk ends mid-sentence: its last words end it
        start, duration = segments[-1]
        sentences.append(Sentence(sentence_start, start + duration))
    end = segments[-1][0] + segments[-1][1] if segments else t
    return Timeline(segments, sentences, [Sentence(segments[0][0], end)] if segments else [], t)


def dialogue(utterances: int, rng: random.Random) -> tuple[Pcm, list[tuple[float, float]]]:
    """Short turns with pauses: 0.8-2.5 s of speech, then 1.0-2.0 s of silence."""
    timeline = dialogue_timeline(utterances, rng)
    return timeline.render(), timeline.voiced


def monologue(minutes: float, rng: random.Random) -> tuple[Pcm, list[tuple[float, float]]]:
    """Continuous speech (`monologue_timeline`)."""
    timeline = monologue_timeline(minutes, rng)
    return timeline.render(), timeline.voiced
