"""Which of a speaker's frames are speech, in a quiet room or a noisy one, and which are a dropout.

A fixed gate (`is_voiced`, about −40 dBFS) hears steady noise above it (a hall's hum, a room's babble at
10–20 dB below the speech) as speech that never pauses. `VoiceGate` follows one speaker's audio and keeps
a noise floor: a low percentile (`FLOOR_PERCENTILE`) of the frames' energy over the last `FLOOR_WINDOW_S`,
recomputed every `FLOOR_EVERY_S` of audio (from `FLOOR_MIN_S` on: the fixed gate alone before). A frame is
voiced when it is `ON_DB` above that floor, and stays voiced (hysteresis) until it falls under `OFF_DB`
above it; never below the fixed gate, so in a quiet room (digital silence, or a floor far under −40 dBFS)
the gate is exactly the fixed one. The floor stops at `FLOOR_MAX_DB`: long speech with no pause (3 s and more)
must not become the floor it is measured against.

A frame of (near-)digital silence (under `DIGITAL_SILENCE_DB`) from a speaker whose room has a floor is
not the room going quiet: it is a dropout, a lost burst the receiver filled with a concealment fading out
and then silence (`Voicing.GAP`). Gap frames are left out of the floor; the ears hold them back from the
STT (`dropouts.py`) and the pause detector does not count them as a pause, until the gap outlasts a
dropout: then its frames were silence after all (`Voicing.SILENCE` ends it), and the room is one that
falls silent. How long a gap may last depends on what is known of the room (`room`):
- heard between words for `ROOM_HEARD_S` (a pause, not a word's fading end), above digital silence, with a
  noise floor above `ROOM_FLOOR_DB`: it has a floor (a microphone always hears something; a browser's noise
  suppression leaves −75 to −85 dBFS, and its word tails would pass for one); a gap lasts up to
  `MAX_DROPOUT_S` (a lost burst, a Wi-Fi handover);
- heard silent between words that long: it has none (synthetic speech, a line with digital silence, a
  browser's noise suppression): a dropout and a pause look the same there, and nothing is a gap;
- not heard between words yet: a floor far above digital silence (`ROOM_FLOOR_DB`) says it has one, though a
  steady voice can make that floor too: a gap lasts up to `SHORT_DROPOUT_S` (a lost burst).

Frames may be of any length, rate and channel count; a frame's energy is over all its samples.
"""

from __future__ import annotations

import math
from collections import deque
from enum import Enum

import numpy as np

VOICED_RMS = 0.01  # the fixed gate: a frame louder than this (full scale 1.0, about -40 dBFS) is loud enough
FIXED_DB = 20 * math.log10(VOICED_RMS)
FLOOR_WINDOW_S = 3.0  # the noise floor is taken over this much of the latest audio
FLOOR_PERCENTILE = 5.0  # ... as this percentile of its frames' energy (the quiet between words)
FLOOR_EVERY_S = 0.1  # ... recomputed this often (the floor moves slowly; a percentile per frame costs)
FLOOR_MIN_S = 0.5  # ... once this much audio was heard (before: the fixed gate alone)
FLOOR_MAX_DB = -28.0  # ... and never above this: a steadier, louder sound is a voice held, not a room's noise
ON_DB = 10.0  # a frame this far above the floor is speech
OFF_DB = 2.0  # ... and speech goes on until a frame falls under this far above it (hysteresis)
DIGITAL_SILENCE_DB = -70.0  # a frame quieter than this (rms ~10 of 32768) is (near-)digital silence
ROOM_HEARD_S = 0.2  # quiet this long between words tells whether the room has a floor (above silence)
ROOM_FLOOR_DB = -62.0  # a room not heard between words yet has one if its noise floor is above this
# a gap longer than this is silence, not a dropout, in a room heard to have a floor: lost bursts on a lossy
# link give 60-200 ms, a Wi-Fi handover 700 ms; a real microphone's pause is never digital silence
MAX_DROPOUT_S = 1.0
# ... and in a room not heard between words yet (a floor only guessed from the speech: a browser's DTX or
# noise suppression, heard from mid-sentence on, looks so), a lost burst at most: a longer wait would take
# the speaker's first pause for a dropout and splice it out (python -m bench dtx)
SHORT_DROPOUT_S = 0.24
_SILENT_DB = -120.0  # the energy of a frame of zeros
_EPS = 1e-6  # durations are sums of frame lengths: 50 x 0.02 must reach 1.0


class Voicing(Enum):
    QUIET = "quiet"
    VOICED = "voiced"
    GAP = "gap"  # a dropout: near-digital silence in a room that has a noise floor
    SILENCE = "silence"  # a gap that outlasted a dropout: its frames were the room's silence (ends it)


def energy_db(samples: np.ndarray) -> float:
    """A frame's energy in dBFS (s16 samples; `_SILENT_DB` for zeros or no samples)."""
    if samples.size == 0:
        return _SILENT_DB
    x = samples.astype(np.float32)
    mean_square = float(np.dot(x, x)) / (samples.size * 32768.0 * 32768.0)
    return 10 * math.log10(mean_square) if mean_square > 1e-12 else _SILENT_DB


def is_voiced(samples: np.ndarray) -> bool:
    """Whether s16 samples are louder than the fixed gate (about -40 dBFS), whatever the room's noise (the
    pause detector's, the handover's and the own-voice cloner's gate is `VoiceGate`, one per speaker)."""
    return energy_db(samples) >= FIXED_DB


class VoiceGate:
    """One speaker's audio, frame by frame: `hear` says whether each frame is speech, quiet, or a gap."""

    def __init__(self) -> None:
        self._energies: deque[float] = deque()
        self._durations: deque[float] = deque()
        self._held_s = 0.0  # audio in the window
        self._since_floor_s = math.inf  # audio since the floor was last computed (inf: at the first frame)
        self.floor_db = _SILENT_DB  # the room's noise floor (dBFS)
        self._voiced = False
        self.room: bool | None = None  # the room has a floor (True), falls silent (False), or not heard yet
        self._room_s = 0.0  # the quiet being heard: how long, above digital silence
        self._silent_s = 0.0  # ... and how long under it
        self._gap: list[tuple[float, float]] = []  # the gap being heard: (dB, duration) of its frames
        self._gap_s = 0.0  # ... and its length

    def hear(self, samples: np.ndarray, duration: float) -> Voicing:
        db = energy_db(samples)
        if db < DIGITAL_SILENCE_DB and (self._gap or self._has_floor):
            self._gap.append((db, duration))
            self._gap_s += duration
            if self._gap_s + _EPS < (MAX_DROPOUT_S if self.room else SHORT_DROPOUT_S):
                return Voicing.GAP  # kept out of the floor: a dropout says nothing about the room
            for gap_db, gap_duration in self._gap:  # silence after all: the room's own
                self._remember(gap_db, gap_duration)
            self._gap, self._gap_s, self._voiced, self.room = [], 0.0, False, False
            return Voicing.SILENCE
        self._gap, self._gap_s = [], 0.0
        self._remember(db, duration)
        threshold = self.floor_db + (OFF_DB if self._voiced else ON_DB)
        self._voiced = db >= max(FIXED_DB, threshold)
        self._hear_room(db, duration)
        return Voicing.VOICED if self._voiced else Voicing.QUIET

    @property
    def _has_floor(self) -> bool:
        return self.room if self.room is not None else self.floor_db > ROOM_FLOOR_DB

    def _hear_room(self, db: float, duration: float) -> None:
        """Whether the room has a floor, from the quiet heard between words."""
        if self._voiced:
            self._room_s = self._silent_s = 0.0
        elif db < DIGITAL_SILENCE_DB:
            self._silent_s += duration
            if self._silent_s + _EPS >= ROOM_HEARD_S:
                self.room = False
        else:
            self._room_s += duration
            if self._room_s + _EPS >= ROOM_HEARD_S and self.floor_db > ROOM_FLOOR_DB:
                self.room = True  # a microphone's floor: a browser's noise suppression leaves far less

    def _remember(self, db: float, duration: float) -> None:
        self._energies.append(db)
        self._durations.append(duration)
        self._held_s += duration
        while self._held_s - self._durations[0] >= FLOOR_WINDOW_S:
            self._held_s -= self._durations.popleft()
            self._energies.popleft()
        self._since_floor_s += duration
        if self._since_floor_s >= FLOOR_EVERY_S and self._held_s >= FLOOR_MIN_S:
            self._since_floor_s = 0.0
            energies = np.fromiter(self._energies, float, len(self._energies))
            k = int(len(energies) * FLOOR_PERCENTILE / 100)  # a partition: a third of a percentile's cost
            floor = float(np.partition(energies, k)[k])
            self.floor_db = min(floor, FLOOR_MAX_DB)
