"""Speaking a translation, clause by clause: one TTS stream per clause, a few ahead of playback.

A TTS failure costs one clause, and that clause alone is synthesized again: the framework retries a
stream that produced no audio (`TTS_CONN_OPTIONS`); a stream that broke off after some audio is restarted
here, and the mouth skips what the listener already heard. If a clause still fails, the audio of that
utterance stops there (its caption is still published in full) and the TTS is reported down until a
clause is spoken again. The first clause's stream is opened while the LLM thinks (`EarlyStream`).
A draft's first clause (`drafts.py`) is synthesized before its utterance is final (`prepare`): the frames
wait in a `PreparedClause`, poured into the utterance's speech if the final takes the draft (`pour`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from livekit import rtc
from livekit.agents import APIError, tts

from agent.loops.brain.unfolding import Unfolding
from agent.loops.faults import FaultFlag
from agent.loops.models import ClauseAudio, Speech
from agent.loops.pace import Pace
from agent.providers.build import TTS_CONN_OPTIONS, close_stream
from agent.telemetry import metrics
from agent.telemetry.latency import LatencyTracker, Mark
from agent.telemetry.usage import Meter

logger = logging.getLogger("agent.brain")  # the brain's logger: the brain speaks through its synthesizer

CLAUSES_AHEAD = 3  # clauses of one utterance synthesized ahead of what the mouth has played
# tries of a clause whose stream broke off after audio (the framework's own retries come first)
CLAUSE_ATTEMPTS = 2
EARLY_STREAM_DELAY_S = 0.02  # after the LLM request is sent, before its first token (~200 ms with Cerebras)


class Synthesizer:
    """One channel's TTS: a stream per clause, in the speaker's voice, at the pace's speaking rate."""

    def __init__(
        self,
        tts: tts.TTS,
        *,
        tracker: LatencyTracker,
        on_fault: Callable[[bool], None] | None = None,
        meter: Meter | None = None,
        is_clone: Callable[[str], bool] | None = None,
    ) -> None:
        self._tts = tts
        self._meter = meter  # every character sent is counted, as Cartesia bills it (a retry's too)
        self._is_clone = is_clone  # whether a voice id is a speaker's own (cloned) voice
        self._tracker = tracker
        self._fault = FaultFlag(on_fault)  # down since a clause failed, up when one is spoken again
        self.speed = 1.0  # the speaking rate asked of the TTS

    def set_speed(self, pace: Pace | None) -> float:
        """The speaking rate for the next utterance: the pace's, set on the TTS if it changed."""
        if pace is None:
            return self.speed
        speed = pace.speed
        update = getattr(self._tts, "update_options", None)  # Cartesia: a speaking rate per stream
        if update is not None and speed != self.speed:
            update(speed=speed)
            self.speed = speed
        return self.speed

    def early(self, voice: str | None) -> EarlyStream:
        """The first clause's stream, opened in a moment (a cold TTS socket connects while the LLM thinks)."""
        return EarlyStream(lambda: self._open_stream(voice))

    async def voice(
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
                self._send(stream, part.text, voice)
                async for audio in stream:
                    self._first_audio(speech)
                    speech.push(part, audio.frame, final=audio.is_final)
                speech.finish(part)
                self._fault.set(False)
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
                self._fault.set(True)
                speech.fail(part)
                return
            finally:
                await close_stream(stream)

    def prepare(self, text: str, voice: str | None) -> PreparedClause:
        """Synthesize `text` ahead of its utterance (nothing is marked or played until it is poured)."""
        prepared = PreparedClause(text)
        prepared.task = asyncio.create_task(self._prepare(prepared, voice), name="tts-ahead")
        return prepared

    async def _prepare(self, prepared: PreparedClause, voice: str | None) -> None:
        stream = self._open_stream(voice)
        try:
            self._send(stream, prepared.text, voice)
            async for audio in stream:
                prepared.add(audio.frame)
            prepared.end()
        except APIError as e:
            prepared.end(e)  # the clause is synthesized again when poured
        finally:
            await close_stream(stream)

    async def pour(
        self, speech: Speech, part: ClauseAudio, index: int, voice: str | None, prepared: PreparedClause
    ) -> None:
        """Hand a prepared clause's frames to `part` of `speech` as they come; synthesized anew if the
        preparation failed."""
        try:
            async for frame in prepared.replay():
                self._first_audio(speech)
                speech.push(part, frame)
        except APIError:
            if part.frames:
                speech.restart(part)  # the mouth skips what was already heard
            await self.voice(speech, part, index, voice)
        else:
            speech.finish(part)

    def _send(self, stream: tts.SynthesizeStream, text: str, voice: str | None) -> None:
        """A clause's whole text into its stream, counted."""
        stream.push_text(text)
        stream.end_input()
        if self._meter is not None:
            clone = voice is not None and self._is_clone is not None and self._is_clone(voice)
            self._meter.tts(self._tts.model, len(text), clone=clone)

    def _first_audio(self, speech: Speech) -> None:
        if speech.first_audio_at is None:
            speech.first_audio_at = self._tracker.clock()
            self._tracker.mark(speech.utterance.record_ids, Mark.TTS_FIRST_AUDIO, at=speech.first_audio_at)

    def _open_stream(self, voice: str | None) -> tts.SynthesizeStream:
        """A stream speaking with `voice`. The plugin copies its options when a stream is made, so setting
        the voice just before is safe however many utterances (of several speakers) are in flight."""
        if voice is not None:
            update = getattr(self._tts, "update_options", None)  # Cartesia; other TTSs keep their voice
            if update is not None:
                update(voice=voice)
        return self._tts.stream(conn_options=TTS_CONN_OPTIONS)


class EarlyStream:
    """The first clause's TTS stream, opened a moment after the LLM request has gone out, so that a cold
    Cartesia socket (the pool drops idle ones after 5 min) connects while the LLM thinks. Opened at the
    same moment as the request, it delayed the request itself by ~5 ms (`python -m bench overhead`)."""

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


class PreparedClause(Unfolding[rtc.AudioFrame]):
    """A clause synthesized ahead of its utterance: its frames as they come (`Synthesizer.prepare`)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
