"""What the ears make of the STT's transcripts: source captions, and an utterance for each final.

Every segment being heard has an id (`<prefix>-<n>`), shared by its interim captions and its final one,
and by the utterance the final becomes. The language of what was heard is the speaker's own, or with
`auto` the one Deepgram detected. An interim caption whose words never become a final is taken back.

Segments are pieces of sentences (the ears cut long speech, `STT_MAX_SEGMENT_S`, and at pauses): every
caption carries the id of the speaker's sentence its segment belongs to (`<prefix>-s<k>`), decided when the
segment's first caption is made. A final whose text ends a sentence (`ends_sentence`: . ? ! … 。 and the
like) closes it; so does more than `SENTENCE_PAUSE_S` of the speaker's silence after a final without one
(the next segment, starting later than that, begins the next sentence).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from livekit.agents import stt

from agent.language.codes import AUTO, UNDETECTED_FALLBACK, detected_language
from agent.language.text import clean_transcript, ends_sentence, is_substantive
from agent.loops.captions import Caption, CaptionSink
from agent.loops.ears.replay import ReplayBuffer
from agent.loops.models import Utterance
from agent.telemetry import metrics

logger = logging.getLogger("agent.ears")  # the ears' logger: these are the ears' transcripts

# a speaker silent this long (seconds, on their audio timeline) after a piece that ended no sentence: what
# they say next is a new sentence (a caption line of its own on the page)
SENTENCE_PAUSE_S = 2.0


class EchoCheck(Protocol):
    """Tells a speaker's own words from an echo of the interpretation (`agent.loops.echo.EchoBook`)."""

    def own_words(
        self, text: str, start: float, end: float, *, language: str | None = None, count: bool = True
    ) -> tuple[str, int]: ...

    def languages(self, start: float, end: float) -> set[str]: ...


class Transcripts:
    """One speaker's transcripts: the segment being heard, its captions, its language, its utterance."""

    def __init__(
        self,
        *,
        speaker: str,
        language: str,
        prefix: str,
        captions: CaptionSink | None = None,
        on_detected: Callable[[str], None] | None = None,
        echo: EchoCheck | None = None,
    ) -> None:
        self._speaker = speaker
        self._echo = echo  # what the interpreter itself said recently: not the speaker's words
        self._language = language  # AUTO: each utterance's language is the one Deepgram detected
        # AUTO: the language Deepgram detected in this speaker's last final (each final's, in turn)
        self.detected: str | None = None
        self._on_detected = on_detected
        self._caption_language = language if language != AUTO else UNDETECTED_FALLBACK
        self._captions = captions
        self._prefix = prefix
        self._seq = 0
        self._interim_shown = False  # an interim caption of the segment being heard is on screen
        self._sentence = 0  # the speaker's sentences so far: the open one's number
        self._sentence_until: float | None = (
            None  # where the open sentence's last piece ended (None: none yet)
        )
        self._segment_sentence: str | None = None  # the sentence of the segment being heard, once decided

    @property
    def segment_id(self) -> str:
        """The id of the segment being heard now (it becomes the next utterance's id)."""
        return f"{self._prefix}-{self._seq}"

    def interim(self, data: stt.SpeechData, *, at: float | None = None, start: float | None = None) -> bool:
        """Words heard, not final yet: shown as the segment's caption, but for sentences that are echo of
        what the interpreter said (`at`: clock time, now; `start`: where the words start on the speaker's
        audio timeline, when known). False: there were no words."""
        text = clean_transcript(data.text)
        if not text:
            return False
        if self._echo is not None and at is not None:
            text, _ = self._echo.own_words(text, at, at, language=self._own_language, count=False)
        if text:
            self._caption_language = self._language_of(data)
            self._caption(text, final=False, sentence=self._sentence_of_segment(start))
            self._interim_shown = True
        return True

    def final(
        self, data: stt.SpeechData, *, span: tuple[float, float], heard: ReplayBuffer, final_at: float
    ) -> Utterance | None:
        """The segment's final: its caption, and the utterance it makes (None: nothing worth translating).
        `span`: where it lies on the speaker's audio timeline (`heard`, not finalized there yet: when it
        was spoken, and how loud); `final_at`: clock time."""
        speech_end_at = heard.clock.to_clock(span[1])
        speech_end_at = final_at if speech_end_at is None else speech_end_at
        text = clean_transcript(data.text)
        start_at = heard.clock.to_clock(span[0])
        text, echo_languages = self._without_echo(
            text, speech_end_at if start_at is None else start_at, speech_end_at
        )
        if not is_substantive(text):
            logger.debug("dropped a non-substantive segment", extra={"speaker": self._speaker})
            self.take_back_interim()
            return None
        language = self._language_of(data, final=True, not_in=echo_languages)
        sentence = self._sentence_of_segment(span[0])
        utterance = Utterance(
            id=self.segment_id,
            speaker=self._speaker,
            text=text,
            language=language,
            sentence=sentence,
            audio_start=span[0],
            audio_end=span[1],
            speech_end_at=speech_end_at,
            final_at=final_at,
            level=heard.level(*span),
        )
        self._caption_language = language
        self._caption(utterance.text, final=True, span=span, sentence=sentence)
        self._interim_shown = False
        self._seq += 1
        self._segment_sentence = None
        if ends_sentence(text):
            self._sentence, self._sentence_until = self._sentence + 1, None
        else:
            self._sentence_until = span[1]
        return utterance

    def draft(
        self, data: stt.SpeechData, *, span: tuple[float, float], heard: ReplayBuffer, at: float
    ) -> Utterance | None:
        """An eager end of turn: what the segment's final will say if the turn ends now, as an utterance
        with the final's id, for a draft translation (no caption; None: nothing worth translating)."""
        text = clean_transcript(data.text)
        if not is_substantive(text):
            return None
        speech_end_at = heard.clock.to_clock(span[1])
        return Utterance(
            id=self.segment_id,
            speaker=self._speaker,
            text=text,
            language=self._language_of(data),
            audio_start=span[0],
            audio_end=span[1],
            speech_end_at=at if speech_end_at is None else speech_end_at,
            final_at=at,
        )

    def _sentence_of_segment(self, start: float | None) -> str:
        """The id of the sentence the segment being heard is a piece of (decided at its first caption):
        the open one, or the next when the speaker was silent more than SENTENCE_PAUSE_S since its last
        piece (`start`: where this segment's words start on the audio timeline; None: not known)."""
        if self._segment_sentence is None:
            until = self._sentence_until
            if until is not None and start is not None and start - until > SENTENCE_PAUSE_S:
                self._sentence, self._sentence_until = self._sentence + 1, None
            self._segment_sentence = f"{self._prefix}-s{self._sentence}"
        return self._segment_sentence

    def _without_echo(self, text: str, start: float, end: float) -> tuple[str, set[str]]:
        """The text without what is the interpreter's own words played back (counted), and the languages of
        what was on the air then if any was dropped (the rest is not in those: it is the speaker's)."""
        if self._echo is None or not text:
            return text, set()
        kept, dropped = self._echo.own_words(text, start, end, language=self._own_language)
        if not dropped:
            return kept, set()
        metrics.NOT_INTERPRETED.labels(reason="echo").inc(dropped)
        logger.info(
            "dropped an echo of the interpretation",
            extra={"speaker": self._speaker, "sentences": dropped, "kept_chars": len(kept)},
        )
        return kept, self._echo.languages(start, end)

    @property
    def _own_language(self) -> str | None:
        """The speaker's language: their own, or with AUTO the one last detected (None: not yet)."""
        return self._language if self._language != AUTO else self.detected

    def take_back_interim(self) -> None:
        """An interim caption is on screen but its words never became a final (Deepgram revised them to
        nothing): close its segment with an empty final, so no stale text stays shown, and hear the
        next words as a new segment."""
        if self._interim_shown:
            self._interim_shown = False
            self._caption("", final=True, sentence=self._segment_sentence)
            self._seq += 1
        self._segment_sentence = None

    def _language_of(
        self, data: stt.SpeechData, *, final: bool = False, not_in: set[str] | None = None
    ) -> str:
        """The language of what was heard: the speaker's own, or with AUTO the one Deepgram detected (the
        plugin takes the first of the result's `languages`, the one with most words); a detection missing
        or unsupported: this speaker's last detected language, else UNDETECTED_FALLBACK. A final's
        detection is this speaker's detected language from then on (and `on_detected` hears it). A
        detection in `not_in` (an echo's language, the echo dropped from the text) is the echo's words
        detected, not the speaker's: their last detected language stands, if there is one."""
        if self._language != AUTO:
            return self._language
        detected = detected_language(data.language)
        if detected is not None and self.detected is not None and detected in (not_in or set()):
            return self.detected
        if detected is None:
            logger.debug(
                "no usable language detected; the speaker's last one is used",
                extra={"speaker": self._speaker},
            )
            return self.detected or UNDETECTED_FALLBACK
        if final:
            if detected != self.detected:
                logger.info(
                    "speaker's language detected", extra={"speaker": self._speaker, "language": detected}
                )
            self.detected = detected
            if self._on_detected is not None:
                self._on_detected(detected)
        return detected

    def _caption(
        self, text: str, *, final: bool, sentence: str | None, span: tuple[float, float] | None = None
    ) -> None:
        if self._captions is None:
            return
        self._captions.publish(
            Caption(
                segment_id=self.segment_id,
                speaker=self._speaker,
                language=self._caption_language,
                text=text.strip(),
                final=final,
                translated=False,
                start_s=round(span[0], 3) if span else None,
                end_s=round(span[1], 3) if span else None,
                sentence=sentence,
            )
        )
