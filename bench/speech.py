"""Synthetic speakers for the benchmark: voiced segments (a modulated tone the fake STT hears as
speech) on a timeline of pauses, at 16 kHz."""

from __future__ import annotations

import random

import numpy as np

from agent.filemode import Pcm

RATE = 16000


def render(segments: list[tuple[float, float]], total_s: float) -> Pcm:
    samples = np.zeros(int(total_s * RATE) + RATE, dtype=np.float32)
    for start, duration in segments:
        i, n = int(start * RATE), int(duration * RATE)
        t = np.arange(n) / RATE
        envelope = 0.75 + 0.25 * np.sin(2 * np.pi * 4.0 * t)  # syllable-like, never silent
        samples[i : i + n] = 0.3 * envelope * np.sin(2 * np.pi * 220.0 * t)
    return Pcm((samples * 32767).astype(np.int16), RATE)


def dialogue(utterances: int, rng: random.Random) -> tuple[Pcm, list[tuple[float, float]]]:
    """Short turns with pauses: 0.8-2.5 s of speech, then 1.0-2.0 s of silence."""
    t, segments = 0.5, []
    for _ in range(utterances):
        duration = rng.uniform(0.8, 2.5)
        segments.append((t, duration))
        t += duration + rng.uniform(1.0, 2.0)
    return render(segments, t), segments


def monologue(minutes: float, rng: random.Random) -> tuple[Pcm, list[tuple[float, float]]]:
    """Continuous speech: phrases of 2-6 s joined by breaths of 80-200 ms (shorter than the STT's
    endpointing, so they do not end a segment), a 450 ms sentence pause after every third phrase."""
    t, segments, total = 0.5, [], minutes * 60
    while t < total:
        duration = min(rng.uniform(2.0, 6.0), total - t)
        segments.append((t, duration))
        t += duration + (0.45 if len(segments) % 3 == 0 else rng.uniform(0.08, 0.2))
    return render(segments, t), segments
