"""Brain: utterances → streamed translation → one TTS stream per clause → `Speech` for the mouth.

Several utterances may be in flight at once (`max_in_flight`), but each one's `Speech` is handed to
the mouth when its translation starts, in utterance order, so audio is played in order while later
utterances are already being translated and synthesized.

An utterance whose draft (`drafts.py`: an eager end of turn's transcript, translated ahead) said the same
takes the draft's translation instead of asking the LLM again.

Each clause gets its own TTS stream (a few at once, ahead of playback: `synthesis.py`), so a TTS
failure costs one clause, and that clause alone is synthesized again. If a clause still fails, the
audio of that utterance stops there, its caption is still published in full, and the next utterance
plays.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable

from livekit.agents import APIError, llm, tts

from agent.loops.brain.drafts import Draft, Drafts
from agent.loops.brain.prompt import ContextBook, TranslationContext
from agent.loops.brain.synthesis import EarlyStream, PreparedClause, Synthesizer
from agent.loops.brain.translate import TranslationAbandoned, TranslationRejected, Translator
from agent.loops.captions import CaptionSink, translated_caption
from agent.loops.models import Speech, Utterance
from agent.loops.pace import Pace
from agent.loops.queues import UtteranceQueue
from agent.telemetry.errors import log_unexpected
from agent.telemetry.latency import LatencyTracker, Mark
from agent.telemetry.usage import METER, Meter

logger = logging.getLogger("agent.brain")

VoiceFor = Callable[[str], str]  # a speaker's identity → the voice id their words are spoken with


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
        speaks: Callable[[], bool] | None = None,
        meter: Meter | None = None,
        is_clone: Callable[[str], bool] | None = None,
    ) -> None:
        self._voice_for = voice_for
        self._speaks = speaks  # False: nobody hears this language now; its translations are captioned only
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
        self._synthesizer = Synthesizer(
            tts, tracker=tracker, on_fault=report("tts"), meter=meter, is_clone=is_clone
        )
        self.drafts = Drafts(
            self.translator,
            contexts,
            tracker.clock,
            stale_after_s,
            prepare=self._prepare,
        )
        # drafts are started from the ears' task: their LLM requests run in this context, counted here
        self._draft_context = contextvars.copy_context()
        self._draft_context.run(METER.set, meter)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def target_language(self) -> str:
        return self.contexts.target_language

    @property
    def tasks_in_flight(self) -> int:
        """Utterances being translated and synthesized now (at most `max_in_flight`)."""
        return len(self._tasks)

    def _prepare(self, utterance: Utterance, text: str) -> PreparedClause:
        """A draft's first clause, synthesized ahead in its speaker's voice."""
        return self._synthesizer.prepare(text, self._voice_of(utterance.speaker))

    def _voice_of(self, speaker: str) -> str | None:
        return self._voice_for(speaker) if self._voice_for is not None else None

    def draft(self, utterance: Utterance) -> None:
        """An eager end of turn's transcript, to translate ahead of its final; not while utterances wait
        (the final would be folded into them, so the draft would be wasted), nor while nobody hears it."""
        if self._inbox.qsize() == 0 and (self._speaks is None or self._speaks()):
            self._draft_context.run(self.drafts.start, utterance, concise=self._concise)

    def withdraw(self, speaker: str) -> None:
        self.drafts.withdraw(speaker)

    @property
    def _concise(self) -> bool:
        """Translations are asked to be concise (the mouth runs behind)."""
        return self._pace is not None and self._pace.concise

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
            await self.drafts.aclose()

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _interpret(self, speech: Speech) -> None:
        utterance = speech.utterance
        speech.speed = self._synthesizer.set_speed(self._pace)
        voices: list[asyncio.Task[None]] = []
        speaker_voice = self._voice_of(utterance.speaker)
        # a cold TTS socket connects while the LLM thinks
        early = self._synthesizer.early(speaker_voice)
        if self._speaks is not None and not self._speaks():  # decided as it starts: no backlog is spoken
            speech.caption_only = True
            early.take()  # (so it never opens)
        translated = False
        context = self.contexts.for_speaker(utterance.speaker, utterance.language)
        draft = self.drafts.take(utterance)
        try:
            await self._translate(speech, context, speaker_voice, early, voices, draft)
            translated = True
            speech.end_input()
            await asyncio.gather(*voices)
            if speech.parts:
                context.remember(utterance.text, speech.text)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            _log_failure(speech, e)
        finally:
            for voice in voices:
                voice.cancel()
            await asyncio.gather(*voices, return_exceptions=True)
            await early.aclose()
            if draft is not None:
                draft.cancel()  # (done by now, unless this utterance failed)
            speech.end(failed=not (translated and speech.parts) and not speech.caption_only)
            self._publish_final_caption(speech)

    async def _translate(
        self,
        speech: Speech,
        context: TranslationContext,
        voice: str | None,
        early: EarlyStream,
        voices: list[asyncio.Task[None]],
        draft: Draft | None = None,
    ) -> None:
        """The translation into `speech`, clause by clause (`draft`'s, if it has one); each clause's
        synthesis starts as it comes (its task added to `voices`), the first one's on the early stream if
        that is open by then."""
        utterance = speech.utterance
        ids = utterance.record_ids

        def first_token() -> None:
            self._tracker.mark(ids, Mark.LLM_FIRST_TOKEN)

        if draft is not None:  # its first token came already, or is yet to come
            draft.on_token = first_token
            if draft.first_token_at is not None:
                first_token()
            clauses = draft.replay()
        else:
            clauses = self.translator.clauses(
                context,
                utterance.text,
                concise=self._concise,
                on_token=first_token,
                utterance_id=utterance.id,
                # an outage lasting until its translation would be too late to speak fails it
                give_up_at=utterance.speech_end_at + self._stale_after_s,
            )
        async with contextlib.aclosing(clauses):
            async for clause in clauses:
                if not speech.parts:
                    self._first_clause(speech)
                part = speech.add_clause(clause)
                if not speech.failed and not speech.caption_only:
                    index = len(speech.parts) - 1
                    prepared = draft.prepared if draft is not None and index == 0 else None
                    if prepared is not None and prepared.text == clause:  # synthesized ahead
                        voicing = self._synthesizer.pour(speech, part, index, voice, prepared)
                    else:
                        voicing = self._synthesizer.voice(speech, part, index, voice, early.take())
                    voices.append(asyncio.create_task(voicing, name=f"tts-{utterance.id}-{len(voices)}"))

    def _first_clause(self, speech: Speech) -> None:
        """The translation's first clause came; if that is too late to speak, it is captioned only."""
        utterance = speech.utterance
        self._tracker.mark(utterance.record_ids, Mark.FIRST_CLAUSE)
        late = self._tracker.clock() - utterance.speech_end_at
        if late > self._stale_after_s:
            speech.caption_only = True
            logger.warning(
                "translation too late to speak; captioning it",
                extra={"utterance_id": utterance.id, "late_s": round(late, 1)},
            )

    def _publish_final_caption(self, speech: Speech) -> None:
        """The full translation as the final caption, unless the mouth publishes it at playout end."""
        if self._captions is None or speech.caption_final or not speech.parts:
            return
        if speech.audio_frames and not speech.mouth_done:
            return  # the mouth will, when it has played what there is
        speech.caption_final = True
        self._captions.publish(translated_caption(speech, final=True))


def _log_failure(speech: Speech, error: Exception) -> None:
    """Say why an utterance has no (complete) translation; a bug is logged with its traceback."""
    utterance_id = speech.utterance.id
    if isinstance(error, TranslationAbandoned):
        return  # every LLM refused it, or none answered in time: the translator logged which
    if isinstance(error, TranslationRejected):
        logger.error(
            "no translation for an utterance: the LLM replies were not translations",
            extra={"utterance_id": utterance_id, "reason": error.reason},
        )
    elif isinstance(error, APIError | TimeoutError):  # a reply broke off too often
        logger.error(
            "interpretation failed for an utterance",
            extra={"utterance_id": utterance_id, "error": type(error).__name__, "clauses": len(speech.parts)},
        )
    else:  # a bug: this utterance fails, the next ones are still interpreted
        log_unexpected(
            logger,
            "interpretation failed for an utterance: unexpected error",
            error,
            utterance_id=utterance_id,
            clauses=len(speech.parts),
        )
