"""Brain: utterances → streamed LLM translation → clauses → streaming TTS → `Speech` for the mouth.

Several utterances may be in flight at once (`max_in_flight`), but each one's `Speech` is handed to
the mouth when its translation starts, in utterance order, so audio is played in order while later
utterances are already being translated and synthesized.
"""

from __future__ import annotations

import asyncio
import logging

from livekit.agents import llm, tts

from .captions import Caption, CaptionSink
from .latency import LatencyTracker, Mark
from .models import Speech, Utterance
from .pace import Pace
from .prompt import ContextBook
from .providers import TTS_CONN_OPTIONS
from .queues import UtteranceQueue
from .text import ClauseSplitter, ReasoningFilter, clean_clause, is_speakable

logger = logging.getLogger("agent.brain")


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
    ) -> None:
        self._llm = llm
        self._tts = tts
        self._inbox = inbox
        self._outbox = outbox
        self._tracker = tracker
        self.contexts = contexts
        self._captions = captions
        self._pace = pace
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
        speech.speed = self._set_speed()
        tts_stream = self._tts.stream(conn_options=TTS_CONN_OPTIONS)  # takes the options as they are now
        audio = asyncio.create_task(self._pump_audio(tts_stream, speech), name=f"tts-{utterance.id}")
        ok = False
        try:
            await self._translate(utterance, speech, tts_stream)
            tts_stream.end_input()
            await audio
            ok = bool(speech.clauses)
            if ok:
                self.contexts.for_source(utterance.language).remember(utterance.text, speech.text)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            logger.error(
                "interpretation failed for an utterance",
                extra={
                    "utterance_id": utterance.id,
                    "error": type(e).__name__,
                    "clauses_spoken": len(speech.clauses),
                },
            )
        finally:
            if not audio.done():
                audio.cancel()
            await asyncio.gather(audio, return_exceptions=True)
            await tts_stream.aclose()
            speech.end(failed=not ok)
            if not ok and speech.clauses and not speech.audio_frames and self._captions is not None:
                # no audio, but the words exist: the caption still goes out
                self._captions.publish(translated_caption(speech, final=True))

    def _set_speed(self) -> float:
        if self._pace is None:
            return self.speed
        speed = self._pace.speed
        update = getattr(self._tts, "update_options", None)  # Cartesia: a speaking rate per stream
        if update is not None and speed != self.speed:
            update(speed=speed)
            self.speed = speed
        return self.speed

    async def _translate(
        self, utterance: Utterance, speech: Speech, tts_stream: tts.SynthesizeStream
    ) -> None:
        splitter = ClauseSplitter()
        reasoning = ReasoningFilter()
        ids = utterance.record_ids

        def speak(clauses: list[str]) -> None:
            for raw in clauses:
                clause = clean_clause(raw, first=not speech.clauses)
                if not is_speakable(clause):
                    continue
                if not speech.clauses:
                    self._tracker.mark(ids, Mark.FIRST_CLAUSE)
                speech.clauses.append(clause)
                tts_stream.push_text(clause)

        concise = self._pace is not None and self._pace.concise
        chat_ctx = self.contexts.for_source(utterance.language).chat_context(utterance.text, concise=concise)
        async with self._llm.chat(chat_ctx=chat_ctx) as stream:
            async for chunk in stream:
                content = chunk.delta.content if chunk.delta else None
                if not content:
                    continue
                self._tracker.mark(ids, Mark.LLM_FIRST_TOKEN)
                speak(splitter.push(reasoning.push(content)))
        speak(splitter.push(reasoning.flush()))
        speak(splitter.flush())

    async def _pump_audio(self, tts_stream: tts.SynthesizeStream, speech: Speech) -> None:
        ids = speech.utterance.record_ids
        async for audio in tts_stream:
            if speech.first_audio_at is None:
                speech.first_audio_at = self._tracker.clock()
            self._tracker.mark(ids, Mark.TTS_FIRST_AUDIO, at=speech.first_audio_at)
            speech.push(audio.frame, last=audio.is_final)


def translated_caption(speech: Speech, *, final: bool) -> Caption:
    utterance = speech.utterance
    return Caption(
        segment_id=utterance.id,  # the channel's copy: "<speaker>-<n>-<language>"
        speaker=utterance.speaker,
        language=speech.language,
        text=speech.text,
        final=final,
        translated=True,
    )
