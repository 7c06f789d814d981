"""Where captions go. The loops call a `CaptionSink`; the room, the file mode and tests provide one.

Source captions (interim, then final) come from the ears (`transcripts.py`) as soon as the STT gives
them, before any queue, so they are never dropped. The translated caption of an utterance
(`translated_caption`) comes from the mouth when its audio starts playing, or from the brain when no
audio could be made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agent.loops.models import Speech


@dataclass(frozen=True, slots=True)
class Caption:
    segment_id: str  # stable per segment, so a front end can update it in place
    speaker: str
    language: str
    text: str
    final: bool
    translated: bool  # False: what the speaker said; True: the interpretation
    # where the speech lies on the speaker's audio timeline (seconds), once known
    start_s: float | None = None
    end_s: float | None = None
    # the sentence this piece belongs to (`<speaker>-s<k>`, see transcripts.py): the same for every piece
    # of one sentence of a speaker, and for their translations; None: not known (a front end shows it alone)
    sentence: str | None = None


class CaptionSink(Protocol):
    def publish(self, caption: Caption) -> None: ...


class CaptionLog:
    """Keeps captions in memory (file mode, tests)."""

    def __init__(self) -> None:
        self.captions: list[Caption] = []

    def publish(self, caption: Caption) -> None:
        self.captions.append(caption)

    def finals(self, *, translated: bool) -> list[Caption]:
        return [c for c in self.captions if c.final and c.translated == translated]


def translated_caption(speech: Speech, *, final: bool) -> Caption:
    """The caption of a speech's translation (the mouth's at playout start and end, else the brain's)."""
    utterance = speech.utterance
    return Caption(
        segment_id=utterance.id,  # the channel's copy: "<speaker>-<n>-<language>"
        speaker=utterance.speaker,
        language=speech.language,
        text=speech.text,
        final=final,
        translated=True,
        sentence=utterance.sentence,
    )
