"""Where the ears end a segment themselves instead of waiting for the STT's endpointing of silence.

A cut asks the STT to finalize what it heard so far (Deepgram's Finalize), at two kinds of moment:
- at a pause (PAUSE_CUT_MS), once per pause, as the pause detector hears it (`pauses.py`);
- in long continuous speech, once the segment being heard has run about `max_segment_s`
  (STT_MAX_SEGMENT_S), so the brain starts translating mid-sentence instead of waiting for the speaker to
  pause: the timer backstop. With the pause detector, it takes the first gap (or dip) between two words
  from `WORD_GAP_FROM` of that span on, and cuts anyway at `HARD_AT` of it, a word still going on at
  `max_segment_s` having that much longer to end (with the dip, cuts inside words fell from 20 of 65 to
  5 of 62 over the monologue and the dialogue, clean and in 20 dB of hum and babble: docs/benchmarks.md).
With clause cuts (CLAUSE_CUTS), the timer first looks for the end of a clause, from `CLAUSE_FROM` of that
span on: a pause (PAUSE_CUT_MS of silence), or the freshest transcript ending in a clause mark (, ; : . ?
and the like, `ends_clause`) with the speaker silent since its last word (`CLAUSE_GAP_S`; a turn-based STT's
piece is that transcript's words, so it needs no silence). It waits for one `CLAUSE_WAIT` of the span longer
before it takes any gap between words.
The cutter follows the speaker's frames and what the STT says it hears (speech started, words, a final,
the end of speech), so it knows where the segment being heard began.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from livekit import rtc

from agent.language.text import ends_clause
from agent.loops.ears.pauses import PauseDetector, PausePolicy, frame_voicing
from agent.loops.ears.voicing import VoiceGate, Voicing

logger = logging.getLogger("agent.ears")  # the ears' logger: the cuts are the ears'
WORD_GAP_FROM = 0.7  # long speech: from this share of `max_segment_s` on, a gap between words is cut at
HARD_AT = 1.3  # ... and at this share, wherever it falls (the pause detector off: at `max_segment_s`)
VOICE_TAIL_S = 0.25  # voiced audio this far past a final's last word is that word's tail, not more speech
# clause cuts: from this share of `max_segment_s` on, a clause's end is cut at; a word gap only from
# `WORD_GAP_FROM + CLAUSE_WAIT` of it on (and anywhere from `HARD_AT + CLAUSE_WAIT`)
CLAUSE_FROM = 0.5
CLAUSE_WAIT = 0.5
CLAUSE_GAP_S = 0.06  # silence after the freshest transcript's clause mark: the speaker is between clauses
FRESH_S = 0.15  # ... whose last word ends this close to the speaker's last voiced audio
# a turn-based STT (Flux): no timer cut once the speaker has been silent this long (a cut in the pause before
# its end of turn would only take the turn's words from its end of turn, and from a draft begun on them)
TURN_SILENT_S = 0.1


class SegmentCutter:
    def __init__(
        self,
        *,
        speaker: str,
        max_segment_s: float = 0.0,
        pause_cut_s: float = 0.0,
        clause_cuts: bool = False,
        turn_based: bool = False,
    ) -> None:
        self._speaker = speaker
        self._clause_cuts = clause_cuts
        self._turn_based = turn_based  # a cut takes the freshest transcript's words (`turns.py`)
        self._clause_until: float | None = None  # where the freshest transcript ends, if it ends a clause
        self._max_segment_s = max_segment_s  # 0: segments end only where the speaker pauses
        # 0: segments end at Deepgram's endpointing; else at a pause this long heard here (`loops/pauses.py`)
        policy = PausePolicy.of(pause_cut_s)
        self._pauses = PauseDetector(policy) if policy is not None else None
        self._gate = VoiceGate() if self._pauses is None else None  # else the pause detector's says it
        self._requested = False  # a Finalize was asked for: the timer waits for this segment's final
        self._speaking = False  # the STT hears speech that is not finalized yet
        self._segment_start = 0.0  # audio time where the segment being heard began (at the latest)
        self.pause_cuts = 0  # segments ended by the ears at a pause (Finalize)
        self.timer_cuts = 0  # segments cut after `max_segment_s` of speech with no pause (Finalize)
        self.clause_cuts = 0  # ... of which at a clause's end
        self._timeline = 0.0  # audio heard (s)
        self._voiced_until = 0.0  # where the last voiced frame ends on the timeline
        self._finalized_until = 0.0  # where the last final's words end

    # -- the speaker's audio -----------------------------------------------------------------------

    def hear(self, frame: rtc.AudioFrame, voicing: Voicing | None = None) -> None:
        """Every frame the speaker sends; `voicing`: what the ears' gate made of it (None: ask our own)."""
        self._timeline += frame.samples_per_channel / frame.sample_rate
        if self._pauses is not None:
            self._pauses.hear(frame, voicing)
            voiced = self._pauses.voiced
        else:
            assert self._gate is not None
            voiced = (voicing if voicing is not None else frame_voicing(self._gate, frame)) is Voicing.VOICED
        if voiced:  # above the room's noise floor, as the pause detector hears it (`voicing.py`)
            self._voiced_until = self._timeline

    @property
    def voiced_until(self) -> float:
        """Where the speaker's last voiced frame ends on the timeline."""
        return self._voiced_until

    @property
    def mid_speech(self) -> bool:
        """The STT hears speech, and voiced audio no final covered yet: a transcript may still come."""
        return self._speaking and self._voiced_until > self._finalized_until + VOICE_TAIL_S

    def check(self, timeline: float, finalize: Callable[[], None]) -> None:
        """A frame went to a live STT stream (`timeline`: seconds of audio received): `finalize` when a
        cut is due, at a pause first, else by the timer."""
        if self._pauses is not None:
            self._cut_at_pause(finalize)
        if self._max_segment_s:
            self._cut_long_speech(timeline, finalize)

    def _cut_long_speech(self, timeline: float, finalize: Callable[[], None]) -> None:
        """Long continuous speech: once the segment being heard has run `max_segment_s` of audio, ask
        the STT to finalize what it has. With the pause detector, a gap between words in the last part
        of that span (`WORD_GAP_FROM`) is taken instead of an arbitrary point."""
        if not self._speaking or self._requested:
            return
        elapsed = timeline - self._segment_start
        if self._pauses is not None:  # never longer than its speech: the STT's events may come late
            elapsed = min(elapsed, self._pauses.since_speech_s)
        wait = CLAUSE_WAIT if self._clause_cuts else 0.0
        at_clause = (
            self._clause_cuts and elapsed >= CLAUSE_FROM * self._max_segment_s and self._at_clause_end()
        )
        at_gap = (
            self._pauses is not None
            and elapsed >= (WORD_GAP_FROM + wait) * self._max_segment_s
            and self._pauses.at_word_gap()
        )
        hard_at = self._max_segment_s * ((HARD_AT if self._pauses is not None else 1.0) + wait)
        # the speaker stopped: a turn-based STT's end of turn (or its eager one, a draft) is on its way, and
        # only a clause mark in its latest transcript is worth a cut before it
        silent = self._turn_based and self._timeline - self._voiced_until + 1e-6 >= TURN_SILENT_S
        if ((elapsed >= hard_at or at_gap) and not silent) or at_clause:
            self._requested = True
            self.timer_cuts += 1
            self.clause_cuts += at_clause
            if self._pauses is not None:
                self._pauses.cut()  # the next pause ends what is said from here
            logger.debug("long speech cut", extra={"speaker": self._speaker, "at_word_gap": at_gap})
            finalize()

    def _at_clause_end(self) -> bool:
        """The speaker is between two clauses: pausing, or silent since the freshest transcript's clause
        mark (a turn-based STT's piece ends at that mark whatever followed)."""
        if self._pauses is not None and self._pauses.silence_s + 1e-6 >= self._pauses.policy.pause_s:
            return True
        until = self._clause_until
        if until is None or until <= self._segment_start:
            return False
        if self._turn_based:
            return True
        silent = self._timeline - self._voiced_until + 1e-6 >= CLAUSE_GAP_S
        return silent and until >= self._voiced_until - FRESH_S

    def _cut_at_pause(self, finalize: Callable[[], None]) -> None:
        """The speaker went quiet after speech the STT is hearing: end the segment now, once per pause,
        instead of waiting for the STT's own endpointing of silence."""
        assert self._pauses is not None
        if not (self._speaking and self._pauses.cut_due()):
            return
        speech_s, silence_s = self._pauses.speech_s, self._pauses.silence_s
        self._pauses.cut()
        self._requested = True  # the timer waits for this segment's final
        self.pause_cuts += 1
        logger.debug(
            "segment ended at a pause",
            extra={
                "speaker": self._speaker,
                "speech_ms": round(speech_s * 1000),
                "silence_ms": round(silence_s * 1000),
            },
        )
        finalize()

    # -- what the STT hears ------------------------------------------------------------------------

    def nothing_to_cut(self) -> None:
        """The cut asked for found nothing to end yet (a turn-based STT's transcript had no new words)."""
        self._requested = False

    def stream_opened(self) -> None:
        """A new stream hears the replay: no Finalize is pending on it."""
        self._requested = False

    def words(self, start: float | None, end: float | None = None, text: str = "") -> None:
        """The STT heard words (an interim); `start` and `end`: where they lie on the timeline, if it says;
        `text`: what they say (does it end a clause?)."""
        if start is not None and not self._speaking:
            self._segment_start = max(self._segment_start, start)
        self._speaking = True
        self._clause_until = end if end is not None and ends_clause(text) else None

    def speech_started(self, timeline: float) -> None:
        if not self._speaking:  # the event comes a little after the speech began
            self._segment_start = max(self._segment_start, timeline - 0.2)
        self._speaking = True

    def speech_ended(self) -> None:
        self._speaking = False  # the speaker paused: the next segment starts with their next word
        self._requested = False  # nothing is left to finalize (a Finalize may have found nothing)
        if self._pauses is not None and self._pauses.silence_s > 0:
            self._pauses.cut()  # the STT ended the segment itself: the next one starts with new speech

    def finalized(self, audio_end: float) -> None:
        """The STT finalized the segment up to `audio_end` (on the timeline)."""
        self._requested = False
        self._finalized_until = max(self._finalized_until, audio_end)
        self._segment_start = max(self._segment_start, audio_end)  # speech may go on right after the cut
