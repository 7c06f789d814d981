"""What the interpreter's ears make of received audio (`bench.hall.received`), in 20 ms frames: speech said
that arrived as near-digital silence, what a `VoiceGate` following it calls each frame (VOICED, QUIET, GAP),
its GAP runs, and the pauses long enough to end any segment, received against said."""

from __future__ import annotations

import numpy as np

from agent.loops.ears.pauses import LONG_PAUSE_S
from agent.loops.ears.voicing import (
    DIGITAL_SILENCE_DB,
    MAX_DROPOUT_S,
    VoiceGate,
    Voicing,
    energy_db,
    is_voiced,
)
from agent.run.filemode import Pcm

FRAME_MS = 20  # the ears' frames


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b - a)) for a, b in zip(starts, ends, strict=True)]


def _frames(samples: np.ndarray, step: int) -> list[np.ndarray]:
    return [samples[i : i + step] for i in range(0, len(samples) - step + 1, step)]


def _long_pauses(voicing: list[Voicing], inside: slice) -> int:
    """Runs of frames that are not speech, at least LONG_PAUSE_S long, inside the speech: pauses that end a
    segment whatever it holds."""
    quiet = np.array([v is not Voicing.VOICED for v in voicing])[inside]
    return sum(length * FRAME_MS / 1000 >= LONG_PAUSE_S - 1e-6 for _, length in _runs(quiet))


def figures(said: Pcm, heard: Pcm, clean: Pcm | None = None) -> dict[str, object]:
    """In 20 ms frames: the share of speech frames (the input's, fixed gate) received as near-digital
    silence, and the runs of such frames (longest, and those longer than `MAX_DROPOUT_S`);
    what a `VoiceGate` following the received audio makes of the frames; its GAP runs (longest, and those
    inside the speech longer than a dropout may be, `MAX_DROPOUT_S`); and the pauses of LONG_PAUSE_S and
    more inside the speech, received against said. Speech: the frames of `clean` (the speech without the
    noise mixed into `said`, if any) above the fixed gate."""
    step = said.sample_rate * FRAME_MS // 1000
    sent, got = _frames(said.samples, step), _frames(heard.samples, step)
    speech = np.array([is_voiced(f) for f in _frames((clean or said).samples, step)])
    silent = np.array([energy_db(f) < DIGITAL_SILENCE_DB for f in got])
    voiced = np.flatnonzero(speech)
    inside = slice(int(voiced[0]), int(voiced[-1]) + 1) if len(voiced) else slice(0, 0)
    gate, gate_said = VoiceGate(), VoiceGate()
    voicing = [gate.hear(f, FRAME_MS / 1000) for f in got]
    voicing_said = [gate_said.hear(f, FRAME_MS / 1000) for f in sent]
    gaps = _runs(np.array([v is Voicing.GAP for v in voicing]))
    gaps_inside = [n for start, n in gaps if inside.start <= start < inside.stop]
    holes = [n for _, n in _runs(silent & speech)]  # speech received as near-silence
    return {
        "duration_s": round(said.duration, 2),
        "silent_in_speech_pct": round(100 * float(np.mean(silent[speech])), 1) if speech.any() else 0.0,
        **{v.name: sum(x is v for x in voicing) for v in Voicing},
        "longest_gap_ms": max((n for _, n in gaps), default=0) * FRAME_MS,
        "gaps_over_max_dropout": sum(n * FRAME_MS / 1000 > MAX_DROPOUT_S + 1e-6 for n in gaps_inside),
        "longest_silent_in_speech_ms": max(holes, default=0) * FRAME_MS,
        "silent_runs_over_max_dropout": sum(n * FRAME_MS / 1000 > MAX_DROPOUT_S + 1e-6 for n in holes),
        "long_pauses_said": _long_pauses(voicing_said, inside),
        "long_pauses_received": _long_pauses(voicing, inside),
    }
