"""One sentence is interpreted once, however many microphones heard it (speakers at one table).

Between the ears and the router: when two speakers' utterances say the same thing (`echo.similar`, either
way round) and their speech ended within `WINDOW_S` of each other, one voice reached two microphones: the
louder one (its audio's RMS) is the speaker's own, interpreted as theirs; the other is dropped, its source
caption taken back (an empty final), and counted. So that the louder one is known before either is
interpreted, an utterance waits (at most `hold_s`) while another speaker's ears are in the middle of
speech they have not transcribed yet (a transcript of the same voice may be on its way); with nobody else
speaking, it goes on at once, and a waiting one goes on as soon as another transcript arrived and nobody
else is mid-speech any more. A later match of one already passed on is dropped: the first one stands.

The two microphones cut one voice into pieces at different places (the other microphone hears it 12 dB
quieter: a soft stretch is a pause there), so a piece of the copy can end half a second before the
speaker's own piece with the same words: `hold_s` is as long as the window (`python -m bench hall`'s
cross-talk lost the second speaker's sentence with 0.3 s: its one-word piece of bleed went on first).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from agent.loops.captions import Caption, CaptionSink
from agent.loops.echo import similar, words
from agent.loops.models import Utterance
from agent.telemetry import metrics

logger = logging.getLogger("agent.ears")

WINDOW_S = 1.0  # two microphones' transcripts of one sentence end this close together (s)
HOLD_S = 1.0  # the longest an utterance waits for another microphone's transcript of it (s)
KEPT = 32  # utterances passed on, kept to compare later ones with


class CrossTalk:
    """Hands utterances on to `forward`, each sentence once. `mid_speech(speaker)`: another speaker than
    `speaker` is in the middle of speech not transcribed yet."""

    def __init__(
        self,
        forward: Callable[[Utterance], None],
        *,
        mid_speech: Callable[[str], bool],
        captions: CaptionSink | None = None,
        hold_s: float = HOLD_S,
    ) -> None:
        self._forward = forward
        self._mid_speech = mid_speech
        self._captions = captions
        self._hold_s = hold_s
        self._held: dict[str, tuple[Utterance, asyncio.TimerHandle]] = {}  # by utterance id
        self._passed: deque[Utterance] = deque(maxlen=KEPT)
        self.dropped = 0

    def put_nowait(self, utterance: Utterance) -> None:
        for other, timer in list(self._held.values()):
            if _same_sentence(other, utterance):
                timer.cancel()
                del self._held[other.id]
                louder, quieter = (utterance, other) if utterance.level > other.level else (other, utterance)
                self._pass(louder)
                self._drop(quieter)
                return
        for held, _ in list(self._held.values()):  # what they waited for came, or will not: on (in order)
            if not self._mid_speech(held.speaker):
                self._release(held.id)
        if any(_same_sentence(passed, utterance) for passed in self._passed):
            self._drop(utterance)
            return
        if self._hold_s > 0 and self._mid_speech(utterance.speaker):
            timer = asyncio.get_running_loop().call_later(self._hold_s, self._release, utterance.id)
            self._held[utterance.id] = (utterance, timer)
            return
        self._pass(utterance)

    def flush(self) -> None:
        """Pass on every utterance waiting (the ears stopped: no other transcript will come)."""
        for utterance_id in list(self._held):
            self._release(utterance_id)

    def _release(self, utterance_id: str) -> None:
        held = self._held.pop(utterance_id, None)
        if held is not None:
            held[1].cancel()
            self._pass(held[0])

    def _pass(self, utterance: Utterance) -> None:
        self._passed.append(utterance)
        self._forward(utterance)

    def _drop(self, utterance: Utterance) -> None:
        self.dropped += 1
        metrics.NOT_INTERPRETED.labels(reason="crosstalk").inc()
        logger.info(
            "dropped a sentence another speaker's microphone heard louder",
            extra={"speaker": utterance.speaker, "utterance_id": utterance.id},
        )
        if self._captions is not None:  # not their words: their caption of it is taken back
            self._captions.publish(
                Caption(
                    utterance.id,
                    utterance.speaker,
                    utterance.language,
                    "",
                    final=True,
                    translated=False,
                    sentence=utterance.sentence,
                )
            )


def _same_sentence(a: Utterance, b: Utterance) -> bool:
    if a.speaker == b.speaker or abs(a.speech_end_at - b.speech_end_at) > WINDOW_S:
        return False
    wa, wb = words(a.text), words(b.text)
    return similar(wa, set(wb)) or similar(wb, set(wa))
