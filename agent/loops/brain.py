"""Brain: utterances → streamed translation → one TTS stream per clause → `Speech` for the mouth.

Several utterances may be in flight at once (`max_in_flight`), but each one's `Speech` is handed to
the mouth when its translation starts, in utterance order, so audio is played in order while later
utterances are already being translated and synthesized.

Each clause gets its own TTS stream (a few at once, ahead of playback), so a TTS failure costs one
clause, and that clause alone is synthesized again: the framework retries a stream that produced no
audio (`TTS_CONN_OPTIONS`); a stream that broke off after some audio is restarted here, and the
mouth skips what the listener already heard. If a clause still fails, the audio of that utterance
stops there, its caption is still published in full, and the next utterance plays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from livekit.agents import APIError, llm, tts

from agent.loops.captions import CaptionSink, translated_caption
from agent.loops.faults import FaultFlag
from agent.loops.models import ClauseAudio, Speech
from agent.loops.pace import Pace
from agent.loops.prompt import ContextBook
from agent.loops.queues import UtteranceQueue
from agent.loops.translate import TranslationAbandoned, TranslationRejected, Translator
from agent.providers.build import TTS_CONN_OPTIONS, close_stream
from agent.telemetry import metrics
from agent.telemetry.errors import log_unexpected
from agent.telemetry.latency import LatencyTracker, Mark

logger = logging.getLogger("agent.brain")

CLAUSES_AHEAD = 3  # clauses of one utterance synthesized ahead of what the mouth has played
# tries of a clause whose stream broke off after audio (the framework's own retries come first)
CLAUSE_ATTEMPTS = 2
VoiceFor = Callable[[str], str]  # a speaker's identity → the voice id their words are spoken with
EARLY_STREAM_DELAY_S = 0.02  # after the LLM request is sent, before its first token (~200 ms with Cerebras)


class Brain:
    def __init__(
        self,
        *,
        llm: llm.LLM,
        tts: tts.TTS,
        inbox: UtteranceQueue,
        outbox: asyncio.Queue[Speech | None],
        tracker: LatencyTracker,
        contexts: ContextBook,
        captions: CaptionSink | None = None,
        max_in_flight: int = 3,
        pace: Pace | None = None,
        on_fault: Callable[[str, bool], None] | None = None,
        stale_after_s: float = 20.0,
        voice_for: VoiceFor | None = None,
    ) -> None:
        self._tts = tts
        self._voice_for = voice_for
        self._stale_after_s = stale_after_s
        self._inbox = inbox
        self._outbox = outbox
        self._tracker = tracker
        self.contexts = contexts
        self._captions = captions
        self._pace = pace

        def report(kind: str) -> Callable[[bool], None] | None:
            return None if on_fault is None else lambda down: on_fault(kind, down)

        self.translator = Translator(llm, on_fault=report("llm"), clock=tracker.clock)
        self._tts_fault = FaultFlag(report("tts"))
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self.speed = 1.0

    @property
    def target_language(self) -> str:
        return self.contexts.target_language

    async def run(self) -> None:
        try:
            while (utterance := await self._inbox.get()) is not None:
                await self._slots.acquire()
                speech = Speech(utterance, self.target_language)
                task = asyncio.create_task(self._interpret(speech), name=f"brain-{utterance.id}")
                self._tasks.add(task)
                task.add_done_callback(self._on_done)
                await self._outbox.put(speech)
            if self._tasks:
                await asyncio.gather(*self._tasks)
            await self._outbox.put(None)  # tells the mouth that nothing more will come
        finally:
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _interpret(self, speech: Speech) -> None:
        utterance = speech.utterance
        ids = utterance.record_ids
        speech.speed = self._set_speed()
        voices: list[asyncio.Task[None]] = []
        speaker_voice = self._voice_for(utterance.speaker) if self._voice_for is not None else None
        # a cold TTS socket connects while the LLM thinks
        early = _EarlyStream(lambda: self._open_stream(speaker_voice))
        translated = False
        concise = self._pace is not None and self._pace.concise
        context = self.contexts.for_source(utterance.language)
        try:
            clauses = self.translator.clauses(
                context,
                utterance.text,
                concise=concise,
                on_token=lambda: self._tracker.mark(ids, Mark.LLM_FIRST_TOKEN),
                utterance_id=utterance.id,
                # an outage lasting until its translation would be too late to speak fails it
                give_up_at=utterance.speech_end_at + self._stale_after_s,
            )
            async with contextlib.aclosing(clauses):
                async for clause in clauses:
                    if not speech.parts:
                        self._tracker.mark(ids, Mark.FIRST_CLAUSE)
                        late = self._tracker.clock() - utterance.speech_end_at
                        if late > self._stale_after_s:
                            speech.caption_only = True
                            logger.warning(
                                "translation too late to speak; captioning it",
                                extra={"utterance_id": utterance.id, "late_s": round(late, 1)},
                            )
                    part = speech.add_clause(clause)
                    if not speech.failed and not speech.caption_only:
                        opened = early.take()
                        voices.append(
                            asyncio.create_task(
                                self._voice(speech, part, len(speech.parts) - 1, speaker_voice, opened),
                                name=f"tts-{utterance.id}-{len(voices)}",
                            )
                        )
            translated = True
            speech.end_input()
            await asyncio.gather(*voices)
            if speech.parts:
                context.remember(utterance.text, speech.text)
        except asyncio.CancelledError:
            raise
        except TranslationAbandoned:
            pass  # every LLM refused it, or none answered in time: the translator logged which
        except TranslationRejected as e:
            logger.error(
                "no translation for an utterance: the LLM replies were not translations",
                extra={"utterance_id": utterance.id, "reason": e.reason},
            )
        except (APIError, TimeoutError) as e:  # a reply broke off too often
            logger.error(
                "interpretation failed for an utterance",
                extra={"utterance_id": utterance.id, "error": type(e).__name__, "clauses": len(speech.parts)},
            )
        except Exception as e:  # a bug: this utterance fails, the next ones are still interpreted
            log_unexpected(
                logger,
                "interpretation failed for an utterance: unexpected error",
                e,
                utterance_id=utterance.id,
                clauses=len(speech.parts),
            )
        finally:
            for voice in voices:
                voice.cancel()
            await asyncio.gather(*voices, return_exceptions=True)
            await early.aclose()
            speech.end(failed=not (translated and speech.parts) and not speech.caption_only)
            self._publish_final_caption(speech)

    async def _voice(
        self,
        speech: Speech,
        part: ClauseAudio,
        index: int,
        voice: str | None,
        opened: tts.SynthesizeStream | None = None,
    ) -> None:
        """Synthesize one clause (`part`, the `index`-th) into `part` with `voice` (None: the TTS's own),
        restarting it if its stream breaks off after audio. `opened`: a stream already opened for it."""
        if index >= CLAUSES_AHEAD:  # bounded memory: not too far ahead of what the mouth has played
            await speech.parts[index - CLAUSES_AHEAD].played.wait()
        for attempt in range(1, CLAUSE_ATTEMPTS + 1):
            if speech.failed:
                return
            stream, opened = opened or self._open_stream(voice), None
            try:
                stream.push_text(part.text)
                stream.end_input()
                async for audio in stream:
                    if speech.first_audio_at is None:
                        speech.first_audio_at = self._tracker.clock()
                        self._tracker.mark(
                            speech.utterance.record_ids, Mark.TTS_FIRST_AUDIO, at=speech.first_audio_at
                        )
                    speech.push(part, audio.frame, final=audio.is_final)
                speech.finish(part)
                self._tts_fault.set(False)
                return
            except APIError as e:
                if attempt < CLAUSE_ATTEMPTS and e.retryable and part.frames:
                    metrics.TTS_CLAUSE_RETRIES.inc()
                    logger.warning(
                        "a TTS stream broke off mid-clause; synthesizing the clause again",
                        extra={"utterance_id": speech.utterance.id, "error": type(e).__name__},
                    )
                    speech.restart(part)
                    continue
                logger.error(
                    "TTS failed for a clause: the rest of this utterance is captioned, not spoken",
                    extra={"utterance_id": speech.utterance.id, "error": type(e).__name__},
                )
                self._tts_fault.set(True)
                speech.fail(part)
                return
            finally:
                await close_stream(stream)

    def _publish_final_caption(self, speech: Speech) -> None:
        """The full translation as the final caption, unless the mouth publishes it at playout end."""
        if self._captions is None or speech.caption_final or not speech.parts:
            return
        if speech.audio_frames and not speech.mouth_done:
            return  # the mouth will, when it has played what there is
        speech.caption_final = True
        self._captions.publish(translated_caption(speech, final=True))

    def _open_stream(self, voice: str | None) -> tts.SynthesizeStream:
        """A stream speaking with `voice`. The plugin copies its options when a stream is made, so setting
        the voice just before is safe however many utterances (of several speakers) are in flight."""
        if voice is not None:
            update = getattr(self._tts, "update_options", None)  # Cartesia; other TTSs keep their voice
            if update is not None:
                update(voice=voice)
        return self._tts.stream(conn_options=TTS_CONN_OPTIONS)

    def _set_speed(self) -> float:
        if self._pace is None:
            return self.speed
        speed = self._pace.speed
        update = getattr(self._tts, "update_options", None)  # Cartesia: a speaking rate per stream
        if update is not None and speed != self.speed:
            update(speed=speed)
            self.speed = speed
        return self.speed


class _EarlyStream:
    """The first clause's TTS stream, opened a moment after the LLM request has gone out, so that a cold
    Cartesia socket (the pool drops idle ones after 5 min) connects while the LLM thinks. Opened at the
    same moment as the request, it delayed the request itself by ~5 ms (`bench.overhead`)."""

    def __init__(
        self, open_stream: Callable[[], tts.SynthesizeStream], delay_s: float = EARLY_STREAM_DELAY_S
    ) -> None:
        self._open_stream = open_stream
        self._stream: tts.SynthesizeStream | None = None
        self._taken = False
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._open)

    def _open(self) -> None:
        self._stream = self._open_stream()

    def take(self) -> tts.SynthesizeStream | None:
        """The stream if it is open by now (once); the first clause's voice then owns it."""
        self._timer.cancel()
        stream = None if self._taken else self._stream
        self._taken = True
        return stream

    async def aclose(self) -> None:
        """Close it, used or not: a voice that took it closes it too (twice is harmless), but a voice
        cancelled before it ran never did."""
        self._timer.cancel()
        if self._stream is not None:
            await close_stream(self._stream)
