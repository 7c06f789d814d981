"""A dropout kept from the STT: a speaker's packets lost for a moment do not end what they were saying.

A receiver fills lost audio with a concealment that fades out, then with digital silence: from a speaker
whose room has a noise floor, the voice gate calls those frames a gap (`voicing.Voicing.GAP`). Sent on,
that silence is what a speech recognizer ends an utterance at (Deepgram's endpointing, 300 ms by default),
so a sentence a dropout falls into would be finalized in two halves, each translated on its own. The ears
hold a gap's frames back instead (`DropoutSplice`):

- sound comes back within a dropout's length (`voicing.MAX_DROPOUT_S`): the frames held are never sent;
  the STT hears the words on either side of the dropout joined, and `skipped_s` says how much audio its
  stream was spared, so the stream's times map back onto the speaker's timeline (`stt_link.StreamTimes`);
- the gap outlasts a dropout (the gate ends it with `Voicing.SILENCE`: it was silence after all, or the
  speaker's connection is gone): the frames held are sent, then the rest as it comes, and the STT ends the
  utterance as it would at a pause. The pause detector counts it as one from there too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from livekit import rtc

from agent.loops.ears.voicing import Voicing


@dataclass(frozen=True, slots=True)
class Passed:
    """What one frame let through to the STT: `frames` to send now, and `skipped_s` of audio that is never
    sent (a dropout spliced out, just before the first of `frames`)."""

    frames: list[rtc.AudioFrame] = field(default_factory=list)
    skipped_s: float = 0.0


class DropoutSplice:
    """One speaker's frames on their way to the STT, a dropout's held back until it is known to be one."""

    def __init__(self) -> None:
        self._held: list[rtc.AudioFrame] = []
        self._held_s = 0.0
        self.spliced = 0  # dropouts spliced out
        self.spliced_s = 0.0  # ... and the audio they held

    def hear(self, frame: rtc.AudioFrame, voicing: Voicing) -> Passed:
        """One frame, and what the ears' voice gate made of it."""
        if voicing is Voicing.GAP:
            self._held.append(frame)
            self._held_s += frame.samples_per_channel / frame.sample_rate
            return Passed()
        held, held_s = self._held, self._held_s
        self._held, self._held_s = [], 0.0
        if not held:
            return Passed([frame])
        if voicing is Voicing.SILENCE:  # the gate ended the gap: silence, not a dropout
            return Passed([*held, frame])
        self.spliced += 1
        self.spliced_s += held_s
        return Passed([frame], held_s)

    def forget(self) -> None:
        """A new stream hears the replay of every frame kept, held ones too: nothing is held for it."""
        self._held, self._held_s = [], 0.0
