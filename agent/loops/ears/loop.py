"""Ears: one speaker's audio → streaming STT → utterances on a bounded queue (and source captions).

The ears are the loop that ties their parts together. Each frame of the speaker's, taken without ever
blocking on the STT or the brain, goes to the replay buffer (`replay.py`), the segment cutter
(`segment_cutter.py`: at a pause, and the long-speech timer), the own-voice tap, and while it is up the
STT link (`stt_link.py`: reconnect with backoff, replay, refusal vs outage; `failure` tells why the ears
stopped reaching for the STT), but for a dropout's frames, held back (`dropouts.py`). The STT's events go
to the cutter and the transcripts (`transcripts.py`: each utterance's language, the source captions); each
final's utterance goes onto the queue. A turn-based STT (Deepgram Flux) is cut into pieces by the ears
themselves (`turns.py`), and its eager ends of turn go to `drafts` (a draft translation, `brain/drafts.py`).
Anything else that goes wrong is a bug: logged with its traceback (messages withheld), raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterable, Callable

from livekit import rtc
from livekit.agents import stt

from agent.language.text import clean_transcript
from agent.loops.captions import CaptionSink
from agent.loops.ears.handover import EarsHandover
from agent.loops.ears.replay import ReplayBuffer
from agent.loops.ears.segment_cutter import SegmentCutter
from agent.loops.ears.stt_link import Backoff, SttFailure, SttLink
from agent.loops.ears.transcripts import EchoCheck, Transcripts
from agent.loops.ears.turns import TurnPieces
from agent.loops.faults import FaultFlag
from agent.loops.models import Utterance
from agent.loops.queues import DraftSink, UtteranceSink
from agent.providers.build import ends_turns
from agent.telemetry.errors import log_unexpected
from agent.telemetry.latency import Clock, LatencyTracker
from agent.telemetry.usage import Usage

logger = logging.getLogger("agent.ears")
# a turn's audio window runs this long past its speech at most (Flux's end of turn: about 0.26 s at p50); a
# voice that ended earlier than that before the window's end is a speaker the gate does not hear (quiet)
TURN_TAIL_S = 1.0


class Ears:
    """One speaker's ears: `run` until their audio ends (or `stop`) and what was heard is finalized."""

    def __init__(
        self,
        *,
        stt: stt.STT,
        frames: AsyncIterable[rtc.AudioFrame],
        out: UtteranceSink,
        tracker: LatencyTracker,
        speaker: str,
        language: str,
        captions: CaptionSink | None = None,
        segment_prefix: str | None = None,
        replay_limit_s: float = 30.0,
        backoff: Backoff | None = None,
        drain_idle_s: float = 1.5,
        max_segment_s: float = 0.0,
        pause_cut_s: float = 0.0,
        on_fault: Callable[[bool], None] | None = None,
        give_up_after_s: float | None = None,
        tap: Callable[[rtc.AudioFrame], None] | None = None,
        on_detected: Callable[[str], None] | None = None,
        standby: bool = False,
        echo: EchoCheck | None = None,
        drafts: DraftSink | None = None,
        clause_cuts: bool = False,
        usage: Usage | None = None,
    ) -> None:
        self._frames = frames
        self._drafts = drafts
        self._draft: Utterance | None = None  # the draft of the segment being heard, if one went out
        # Flux: its turns are cut into pieces here, and its end of turn is the pause cut (ours would cut
        # before the last words of a pause reached its transcript). A piece never splits a word (it is an
        # update's words), so its timer needs no gap between words: it cuts at STT_MAX_SEGMENT_S
        self._turns = TurnPieces() if ends_turns(stt) else None
        if self._turns is not None:
            pause_cut_s = 0.0
        self._out = out
        self._clock: Clock = tracker.clock
        self.speaker = speaker
        self.language = language  # AUTO: each utterance's language is the one Deepgram detected
        self._transcripts = Transcripts(
            speaker=speaker,
            language=language,
            prefix=segment_prefix or speaker,
            captions=captions,
            on_detected=on_detected,
            echo=echo,
        )
        self._cutter = SegmentCutter(
            speaker=speaker,
            max_segment_s=max_segment_s,
            pause_cut_s=pause_cut_s,
            clause_cuts=clause_cuts,
            turn_based=self._turns is not None,
        )
        self._tap = tap  # sees every frame received (the own-voice cloner: `agent/room/cloning.py`)
        self._replay = ReplayBuffer(replay_limit_s, speaker=speaker)  # the timeline, what is not finalized
        # the audio sent, counted as Deepgram bills it (per speaker stream)
        sent = None if usage is None else functools.partial(usage.stt, speaker, stt.model, language=language)
        self._link = SttLink(
            stt=stt,
            language=language,
            speaker=speaker,
            replay=self._replay,
            clock=self._clock,
            backoff=backoff,
            drain_idle_s=drain_idle_s,
            give_up_after_s=give_up_after_s,
            on_fault=on_fault,
            on_sent=sent,
        )
        self._intake_task: asyncio.Task[None] | None = None
        self._stopped = False
        self.utterances = 0
        # a deploy (`handover.py`): on standby until released (taking over), or cut at a pause (handing over)
        self.handover = EarsHandover(self._replay, self._clock, self.stop, standby=standby)

    @property
    def segment_id(self) -> str:
        """The id of the segment being heard now (it becomes the next utterance's id)."""
        return self._transcripts.segment_id

    @property
    def detected(self) -> str | None:
        """With `auto`: the language Deepgram detected in this speaker's last final."""
        return self._transcripts.detected

    @property
    def failure(self) -> SttFailure | None:
        """Why the ears stopped reaching for the STT (refused, or down too long); None while they do."""
        return self._link.failure

    @property
    def fault(self) -> FaultFlag:
        """Down while the STT link fails (`Backoff.report_after` times running), or once it was given up."""
        return self._link.fault

    @property
    def mid_speech(self) -> bool:  # a transcript may still come (`SegmentCutter.mid_speech`)
        return self._cutter.mid_speech

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    @property
    def pause_cuts(self) -> int:  # segments the ears ended at a pause (Finalize)
        return self._cutter.pause_cuts

    @property
    def timer_cuts(self) -> int:  # segments cut after `max_segment_s` of speech with no pause (Finalize)
        return self._cutter.timer_cuts

    @property
    def dropouts_spliced(self) -> int:  # kept from the STT, so they did not end an utterance
        return self._link.dropouts.spliced

    @property
    def replay(self) -> ReplayBuffer:
        """The speaker's audio timeline and what of it is not finalized yet (to read: the ears write it)."""
        return self._replay

    @property
    def dropped_audio_s(self) -> float:  # fell off the replay buffer while the STT link was down: lost
        return self._replay.dropped_s

    def stop(self) -> None:
        """Stop taking audio (mute, unpublish, leave): what was heard is still finalized, then `run` ends.
        Stopped before `run` has started, `run` ends at once (nothing was heard)."""
        self._stopped = True
        if self._intake_task is not None:
            self._intake_task.cancel()

    async def run(self) -> None:
        if self._stopped:
            self._link.end_input()
            await self._close_frames()
        else:
            intake = self._intake_task = asyncio.create_task(
                self._intake(), name=f"ears-intake-{self.speaker}"
            )
            # a task cancelled before its first step never runs its `finally`: end the input from outside
            intake.add_done_callback(lambda _: self._link.end_input())
            self.handover.intake = intake
            if self.handover.hold is not None and not await self.handover.held_until_released():
                return
        try:
            await self._link.run(self._on_stream_event, on_open=self._opened)
        except Exception as e:
            log_unexpected(
                logger, "the ears failed; no longer listening to this speaker", e, speaker=self.speaker
            )
            raise
        finally:
            if self._intake_task is not None:
                await _cancel(self._intake_task)
            await self._link.close()
            self._transcripts.take_back_interim()  # nothing more will finalize it

    # -- audio intake: never blocks on the STT or the brain --------------------------------------

    async def _intake(self) -> None:
        try:
            async for frame in self._frames:
                # on standby, audio falling off the buffer is the other interpreter's: not lost
                self._replay.add(frame, self._clock(), link_up=self._link.up or self.handover.held)
                if self.handover.heard(frame):
                    break  # handed over: this frame and what follows are the other interpreter's
                self._cutter.hear(frame, self.handover.voicing)  # one gate per frame, not one each
                if self._tap is not None:
                    try:
                        self._tap(frame)
                    except Exception as e:  # a bug there must not stop the speaker being heard
                        self._tap = None
                        log_unexpected(logger, "the own-voice tap failed; no longer tapping this speaker", e)
                if self._link.push(frame, self.handover.voicing):
                    self._cutter.check(self._replay.timeline, self._cut)
        finally:
            await self._close_frames()

    async def _close_frames(self) -> None:
        """Let go of the audio source (the track's stream) as soon as nothing more is read from it."""
        if (close := getattr(self._frames, "aclose", None)) is not None:
            await close()

    # -- recognition: the STT's events made into utterances and captions ---------------------------

    def _opened(self) -> None:
        """A stream was opened: it hears the replay of what no final holds, from its own time 0."""
        self._cutter.stream_opened()
        if self._turns is not None:
            self._turns.reset()
        self._withdraw_draft()

    def _cut(self) -> None:
        """End the segment being heard here: Deepgram's Finalize, or with Flux a piece of the turn."""
        if self._turns is None:
            self._link.flush()
        elif (piece := self._turns.cut()) is not None:
            self._on_event(piece)
        else:
            self._cutter.nothing_to_cut()  # no update since the last piece: the cutter tries again

    def _on_stream_event(self, event: stt.SpeechEvent) -> bool:
        """One event of the stream (a turn-based STT's made into pieces first); True: the link works."""
        if self._turns is None:
            return self._on_event(event)
        for each in self._turns.events(event):
            self._on_event(each)
        return event.type != stt.SpeechEventType.RECOGNITION_USAGE

    def _on_event(self, event: stt.SpeechEvent) -> bool:
        """Handle one STT event; True when it proves the link works."""
        if event.type == stt.SpeechEventType.PREFLIGHT_TRANSCRIPT and event.alternatives:
            self._preflight(event.alternatives[0])
            return True
        if event.type == stt.SpeechEventType.INTERIM_TRANSCRIPT and event.alternatives:
            interim = event.alternatives[0]
            if self._draft is not None and clean_transcript(interim.text) != self._draft.text:
                self._withdraw_draft()  # the turn resumed: the final will say more
            start = self._link.to_timeline(interim.start_time) if interim.end_time > 0 else None
            if self._transcripts.interim(interim, at=self._clock(), start=start):
                end = self._link.to_timeline(interim.end_time) if interim.end_time > 0 else None
                self._cutter.words(start, end, interim.text)
            return True
        if event.type == stt.SpeechEventType.START_OF_SPEECH:
            self._cutter.speech_started(self._replay.timeline)
            return True
        if event.type == stt.SpeechEventType.END_OF_SPEECH:
            self._withdraw_draft()  # (a final took it already)
            self._cutter.speech_ended()
            # an endpoint with no final since the interim: the STT heard nothing there in the end
            self._transcripts.take_back_interim()
            return True
        if event.type != stt.SpeechEventType.FINAL_TRANSCRIPT or not event.alternatives:
            return event.type != stt.SpeechEventType.RECOGNITION_USAGE
        self._final(event.alternatives[0])
        return True

    def _span(self, data: stt.SpeechData) -> tuple[float, float]:
        """Where a transcript lies on the speaker's audio timeline. A turn's audio window runs past its
        speech (Flux's words carry no times): a piece of it ends where the speaker's voice last did, if
        before (the last piece of a turn cut in its pause then lies at the end of the speech)."""
        audio_end = self._link.to_timeline(data.end_time) if data.end_time > 0 else self._replay.timeline
        audio_start = self._link.to_timeline(data.start_time) if data.end_time > 0 else audio_end
        voiced_until = self._cutter.voiced_until
        if self._turns is not None and audio_end - TURN_TAIL_S <= voiced_until < audio_end:
            audio_end = voiced_until
            audio_start = min(audio_start, audio_end)
        return audio_start, audio_end

    def _preflight(self, data: stt.SpeechData) -> None:
        """An eager end of turn: what the final will likely say goes to the drafts, once per transcript."""
        if self._drafts is None:
            return
        draft = self._transcripts.draft(data, span=self._span(data), heard=self._replay, at=self._clock())
        if draft is None or (self._draft is not None and self._draft.text == draft.text):
            return
        self._withdraw_draft()
        self._draft = draft
        self._drafts.draft(draft)

    def _withdraw_draft(self) -> None:
        if self._draft is not None:
            self._draft = None
            if self._drafts is not None:
                self._drafts.withdraw(self.speaker)

    def _final(self, data: stt.SpeechData) -> None:
        """A final: the audio up to its end is never replayed, and what it says goes to the brain."""
        final_at = self._clock()
        self._draft = None  # the brain takes it, or translates the final anew
        span = self._span(data)
        audio_end = span[1]
        utterance = self._transcripts.final(data, span=span, heard=self._replay, final_at=final_at)
        self._replay.finalized_until(audio_end)  # (after: the transcripts read the level of its audio)
        self._cutter.finalized(audio_end)
        if utterance is not None:
            self.utterances += 1
            self._out.put_nowait(utterance)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
