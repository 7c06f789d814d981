"""Ears: one speaker's audio → streaming STT → utterances on a bounded queue (and source captions).

The ears take the speaker's frames (never blocking on the STT or the brain) into the replay buffer
(`replay.py`) and, while it is up, the STT link (`stt_link.py`: reconnect with backoff, replay, refusal
vs outage; `failure` tells why the ears stopped reaching for the STT). Anything else that goes wrong is a
bug: logged with its traceback (messages withheld), raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Callable

from livekit import rtc
from livekit.agents import stt

from agent.language.codes import AUTO, UNDETECTED_FALLBACK, detected_language
from agent.language.text import clean_transcript, is_substantive
from agent.loops.captions import Caption, CaptionSink
from agent.loops.faults import FaultFlag
from agent.loops.models import Utterance
from agent.loops.queues import UtteranceSink
from agent.loops.replay import ReplayBuffer
from agent.loops.segment_cutter import SegmentCutter
from agent.loops.stt_link import Backoff, SttFailure, SttLink
from agent.telemetry.errors import log_unexpected
from agent.telemetry.latency import Clock, LatencyTracker

logger = logging.getLogger("agent.ears")


class Ears:
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
    ) -> None:
        self._frames = frames
        self._out = out
        self._clock: Clock = tracker.clock
        self.speaker = speaker
        self.language = language  # AUTO: each utterance's language is the one Deepgram detected
        # AUTO: the language Deepgram detected in this speaker's last final (each final's, in turn)
        self.detected: str | None = None
        self._on_detected = on_detected
        self._caption_language = language if language != AUTO else UNDETECTED_FALLBACK
        self._captions = captions
        self._cutter = SegmentCutter(speaker=speaker, max_segment_s=max_segment_s, pause_cut_s=pause_cut_s)
        self._tap = tap  # sees every frame received (the own-voice cloner: `agent/room/cloning.py`)
        self._interim_shown = False  # an interim caption of the segment being heard is on screen

        self._replay = ReplayBuffer(replay_limit_s, speaker=speaker)  # the timeline, what is not finalized
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
        )
        self._seq = 0
        self._prefix = segment_prefix or speaker
        self._intake_task: asyncio.Task[None] | None = None
        self._stopped = False
        self.utterances = 0

    @property
    def segment_id(self) -> str:
        """The id of the segment being heard now (it becomes the next utterance's id)."""
        return f"{self._prefix}-{self._seq}"

    @property
    def failure(self) -> SttFailure | None:
        """Why the ears stopped reaching for the STT (refused, or down too long); None while they do."""
        return self._link.failure

    @property
    def fault(self) -> FaultFlag:
        """Down while the STT link fails (`Backoff.report_after` times running), or once it was given up."""
        return self._link.fault

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    @property
    def pause_cuts(self) -> int:
        """Segments the ears ended at a pause (Finalize)."""
        return self._cutter.pause_cuts

    @property
    def timer_cuts(self) -> int:
        """Segments cut after `max_segment_s` of speech with no pause (Finalize)."""
        return self._cutter.timer_cuts

    @property
    def dropped_audio_s(self) -> float:
        """Audio that fell off the replay buffer while the STT link was down: never transcribed."""
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
        try:
            await self._link.run(self._on_event, on_open=self._cutter.stream_opened)
        except Exception as e:
            log_unexpected(
                logger, "the ears failed; no longer listening to this speaker", e, speaker=self.speaker
            )
            raise
        finally:
            if self._intake_task is not None:
                await _cancel(self._intake_task)
            await self._link.close()
            self._take_back_interim()  # nothing more will finalize it

    # -- audio intake: never blocks on the STT or the brain --------------------------------------

    async def _intake(self) -> None:
        try:
            async for frame in self._frames:
                self._replay.add(frame, self._clock(), link_up=self._link.up)
                self._cutter.hear(frame)
                if self._tap is not None:
                    try:
                        self._tap(frame)
                    except Exception as e:  # a bug there must not stop the speaker being heard
                        self._tap = None
                        log_unexpected(logger, "the own-voice tap failed; no longer tapping this speaker", e)
                if self._link.push(frame):
                    self._cutter.check(self._replay.timeline, self._link.flush)
        finally:
            await self._close_frames()

    async def _close_frames(self) -> None:
        """Let go of the audio source (the track's stream) as soon as nothing more is read from it."""
        if (close := getattr(self._frames, "aclose", None)) is not None:
            await close()

    # -- recognition: the STT's events made into utterances and captions ---------------------------

    def _on_event(self, event: stt.SpeechEvent) -> bool:
        """Handle one STT event; True when it proves the link works."""
        if event.type == stt.SpeechEventType.INTERIM_TRANSCRIPT and event.alternatives:
            interim = event.alternatives[0]
            if text := clean_transcript(interim.text):
                self._caption_language = self._language_of(interim)
                self._caption(text, final=False)
                self._interim_shown = True
                start = self._link.origin + interim.start_time if interim.end_time > 0 else None
                self._cutter.words(start)
            return True
        if event.type == stt.SpeechEventType.START_OF_SPEECH:
            self._cutter.speech_started(self._replay.timeline)
            return True
        if event.type == stt.SpeechEventType.END_OF_SPEECH:
            self._cutter.speech_ended()
            # an endpoint with no final since the interim: the STT heard nothing there in the end
            self._take_back_interim()
            return True
        if event.type != stt.SpeechEventType.FINAL_TRANSCRIPT or not event.alternatives:
            return event.type != stt.SpeechEventType.RECOGNITION_USAGE
        data = event.alternatives[0]
        final_at = self._clock()
        audio_end = self._link.origin + data.end_time if data.end_time > 0 else self._replay.timeline
        audio_start = self._link.origin + data.start_time if data.end_time > 0 else audio_end
        self._replay.finalized_until(audio_end)
        self._cutter.finalized(audio_end)
        text = clean_transcript(data.text)
        if not is_substantive(text):
            logger.debug("dropped a non-substantive segment", extra={"speaker": self.speaker})
            self._take_back_interim()
            return True
        speech_end_at = self._replay.clock.to_clock(audio_end)
        language = self._language_of(data, final=True)
        utterance = Utterance(
            id=self.segment_id,
            speaker=self.speaker,
            text=text,
            language=language,
            audio_start=audio_start,
            audio_end=audio_end,
            speech_end_at=speech_end_at if speech_end_at is not None else final_at,
            final_at=final_at,
        )
        self._caption_language = language
        self._caption(utterance.text, final=True, span=(audio_start, audio_end))
        self._interim_shown = False
        self._seq += 1
        self.utterances += 1
        self._out.put_nowait(utterance)
        return True

    def _language_of(self, data: stt.SpeechData, *, final: bool = False) -> str:
        """The language of what was heard: the speaker's own, or with AUTO the one Deepgram detected (the
        plugin takes the first of the result's `languages`, the one with most words); a detection missing
        or unsupported: this speaker's last detected language, else UNDETECTED_FALLBACK. A final's
        detection is this speaker's detected language from then on (and `on_detected` hears it)."""
        if self.language != AUTO:
            return self.language
        detected = detected_language(data.language)
        if detected is None:
            logger.debug(
                "no usable language detected; the speaker's last one is used", extra={"speaker": self.speaker}
            )
            return self.detected or UNDETECTED_FALLBACK
        if final:
            if detected != self.detected:
                logger.info(
                    "speaker's language detected", extra={"speaker": self.speaker, "language": detected}
                )
            self.detected = detected
            if self._on_detected is not None:
                self._on_detected(detected)
        return detected

    def _take_back_interim(self) -> None:
        """An interim caption is on screen but its words never became a final (Deepgram revised them to
        nothing): close its segment with an empty final, so no stale text stays shown, and hear the
        next words as a new segment."""
        if self._interim_shown:
            self._interim_shown = False
            self._caption("", final=True)
            self._seq += 1

    def _caption(self, text: str, *, final: bool, span: tuple[float, float] | None = None) -> None:
        if self._captions is None:
            return
        self._captions.publish(
            Caption(
                segment_id=self.segment_id,
                speaker=self.speaker,
                language=self._caption_language,
                text=text.strip(),
                final=final,
                translated=False,
                start_s=round(span[0], 3) if span else None,
                end_s=round(span[1], 3) if span else None,
            )
        )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
