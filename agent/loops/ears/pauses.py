"""Pauses in a speaker's audio, found on the audio timeline (seconds of audio received, no clock).

The ears end a segment themselves where the speaker pauses (Deepgram `Finalize`: `segment_cutter.py`),
instead of waiting for Deepgram's `endpointing` of silence. A frame is voiced when its energy is well above
the room's noise floor, and never under about -40 dBFS (`voicing.VoiceGate`: in a quiet room, the fixed gate
`is_voiced`; the own-voice cloner keeps speech by a gate of its own of the same kind). A dropout
(near-digital silence in a room with a noise floor: lost packets) is not a pause until it lasts longer than
one (`voicing.MAX_DROPOUT_S`); until then a cut waits, and if speech follows, the dropout was inside the
words (and its silence never reached the STT: `dropouts.py`).
`PauseDetector` follows the segment being heard: the span of its speech (first voiced frame to the end of
the last) and the silence since its last voiced frame. A cut is due once per pause, and only where the sense
allows:

- after a short pause (`pause_s`, PAUSE_CUT_MS) when the segment already holds `min_speech_s` of speech, so
  a breath or a word's closure does not chop a fragment ("So, ...") off mid-phrase;
- after a longer pause (`long_pause_s`, still under Deepgram's 300 ms endpointing) whatever the segment
  holds, so a short turn ("Yes, sure.") ends fast too.

Long speech with no pause is still cut by the ears' timer (STT_MAX_SEGMENT_S); near the end of that span it
takes a gap between two words rather than splitting a word (`at_word_gap`): `WORD_GAP_S` of silence, or a
dip, a frame `DIP_DB` under the level of the last second of speech. In steady noise the
silence between words is the noise, which a gate keeps above its threshold: the dip still finds it.

Frames may be of any length, rate and channel count (the room's are 20 ms at 16 kHz mono; the file mode's
are 20 ms at the WAV's own rate).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from livekit import rtc

from agent.loops.ears.voicing import VoiceGate, Voicing, energy_db

MIN_SPEECH_S = 1.0  # a short pause ends a segment only after this much speech
LONG_PAUSE_S = 0.2  # a pause this long ends any segment (below Deepgram's 300 ms endpointing)
WORD_GAP_S = 0.04  # silence this long after speech is a gap between words (long speech is cut there)
MIN_VOICED_S = 0.04  # less voiced audio than this since the last cut is a click, not speech
# a frame this far under the speech's level (the 75th percentile of the energy of the last second of voiced
# frames) is a dip between words, or a closure: a cut there splits no sound. 18 dB, a whole frame: of 16, 18,
# 20 and 22 dB, over a frame or its last 10 ms, the fewest cuts inside words, clean and in 20 dB of noise
# (tests/test_noise.py's monologue and dialogue through the ears; docs/benchmarks.md)
DIP_DB = 18.0
LEVEL_S = 1.0  # ... the speech's level is that of this much of the latest voiced audio
_EPS = 1e-6  # times are sums of frame durations: 0.1 + 0.02 must reach 0.12


def _upper_quartile(ordered: list[float]) -> float:
    """The 75th percentile of sorted values, interpolated as numpy's default does (a sort of 50 values in
    Python costs a fifth of `np.percentile`'s call)."""
    at = 0.75 * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def frame_voicing(gate: VoiceGate, frame: rtc.AudioFrame) -> Voicing:
    """What `gate` makes of one frame (it follows the speaker's audio: every frame goes through it)."""
    return gate.hear(np.frombuffer(frame.data, dtype=np.int16), frame.samples_per_channel / frame.sample_rate)


@dataclass(frozen=True, slots=True)
class PausePolicy:
    """When a pause ends a segment (seconds of audio)."""

    pause_s: float  # a pause this long ends a segment holding at least `min_speech_s` of speech
    min_speech_s: float = MIN_SPEECH_S
    long_pause_s: float = LONG_PAUSE_S  # a pause this long ends any segment (never shorter than pause_s)

    @classmethod
    def of(cls, pause_s: float) -> PausePolicy | None:
        """The policy for PAUSE_CUT_MS as seconds; None for 0 (off: Deepgram's endpointing alone)."""
        return cls(pause_s=pause_s) if pause_s > 0 else None

    @property
    def any_segment_after_s(self) -> float:
        return max(self.pause_s, self.long_pause_s)


class PauseDetector:
    """Follows one speaker's audio; `cut_due` says when a pause should end the segment being heard.
    After a cut (`cut`) the next segment starts with the next voiced frame: one cut per pause."""

    def __init__(self, policy: PausePolicy, gate: VoiceGate | None = None) -> None:
        self.policy = policy
        self.timeline = 0.0  # seconds of audio heard
        self._speech_from: float | None = None  # the segment's first voiced frame (None: no speech yet)
        self._voiced_until = 0.0  # end of the last voiced frame
        self._voiced_s = 0.0  # voiced audio in the segment
        self._gate = gate or VoiceGate()  # another gate: the bench's fixed one, to compare
        self._in_gap = False  # the last frame was a dropout's (the gate ends a gap that outlasts one)
        self.voiced = False  # the last frame heard was speech (above the room's noise floor)
        self._levels: deque[tuple[float, float]] = deque()  # (dB, duration) of the latest voiced frames
        self._levels_s = 0.0  # ... their audio
        self._level: float | None = None  # ... their level, once asked for (None: not since the last one)
        self._last_db = 0.0  # the last frame's energy (dBFS)

    def hear(self, frame: rtc.AudioFrame, voicing: Voicing | None = None) -> None:
        """One frame; `voicing`: what the ears' gate made of it already (None: this detector's gate)."""
        duration = frame.samples_per_channel / frame.sample_rate
        start, self.timeline = self.timeline, self.timeline + duration
        if voicing is None:
            voicing = frame_voicing(self._gate, frame)
        self.voiced = voicing is Voicing.VOICED
        self._in_gap = voicing is Voicing.GAP
        self._last_db = energy_db(np.frombuffer(frame.data, dtype=np.int16))
        if voicing is Voicing.VOICED:
            if self._speech_from is None:
                self._speech_from = start
            self._voiced_until = self.timeline
            self._voiced_s += duration
            self._levels.append((self._last_db, duration))
            self._levels_s += duration
            while self._levels_s - self._levels[0][1] + _EPS >= LEVEL_S:
                self._levels_s -= self._levels.popleft()[1]
            self._level = None
        elif self._voiced_s < MIN_VOICED_S and self.silence_s >= self.policy.any_segment_after_s:
            self._speech_from = None  # a click long past: not the start of the next words

    @property
    def speech_s(self) -> float:
        """The span of speech in the segment being heard (0 before its first voiced frame)."""
        return 0.0 if self._speech_from is None else self._voiced_until - self._speech_from

    @property
    def since_speech_s(self) -> float:
        """Audio since the segment's first voiced frame (0 before it): how long the segment has run."""
        return 0.0 if self._speech_from is None else self.timeline - self._speech_from

    @property
    def silence_s(self) -> float:
        """Audio since the last voiced frame."""
        return self.timeline - self._voiced_until

    @property
    def in_dropout(self) -> bool:
        """A dropout is being heard, maybe inside a word (the gate ends a gap that outlasts one)."""
        return self._in_gap

    def at_word_gap(self) -> bool:
        """Between two words: speech, then a moment of silence (shorter than a pause), or a dip."""
        if self.in_dropout or self._speech_from is None or self._voiced_s < MIN_VOICED_S:
            return False
        return self.silence_s + _EPS >= WORD_GAP_S or self._at_dip()

    def _at_dip(self) -> bool:
        """The last frame heard is `DIP_DB` under the level of the latest speech."""
        if not self._levels:
            return False
        if self._level is None:  # asked for on every frame near a timer cut: once per voiced frame
            self._level = _upper_quartile(sorted(db for db, _ in self._levels))
        return self._last_db <= self._level - DIP_DB

    def cut_due(self) -> bool:
        if self._speech_from is None or self._voiced_s < MIN_VOICED_S or self.in_dropout:
            return False
        silence = self.silence_s + _EPS
        if silence >= self.policy.any_segment_after_s:
            return True
        return silence >= self.policy.pause_s and self.speech_s + _EPS >= self.policy.min_speech_s

    def cut(self) -> None:
        """The segment was ended here (by a pause, or the timer): the next one starts with the next speech."""
        self._speech_from = None
        self._voiced_s = 0.0
