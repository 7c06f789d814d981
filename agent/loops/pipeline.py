"""Wiring the loops: ears (one per speaker) → router → channels (one per target language).

A `Channel` is one target language: a brain and a mouth behind one bounded queue, playing into one
output. Utterances of every speaker that target that language share it, in the order their speech
ended, so they are never mixed over each other. The `Router` hands each utterance to every channel
whose language differs from the one it was spoken in. `Interpreter` is the simplest assembly: one
speaker, one target language (file mode, tests).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum

from livekit import rtc
from livekit.agents import llm, tts
from livekit.agents.language import LanguageCode

from agent.loops.brain.loop import Brain, VoiceFor
from agent.loops.brain.prompt import ContextBook, Instructions
from agent.loops.captions import CaptionSink
from agent.loops.ears.loop import Ears
from agent.loops.models import Speech, Utterance
from agent.loops.mouth.loop import AudioOutput, Mouth
from agent.loops.mouth.trim import TrimOptions
from agent.loops.pace import Pace, PaceOptions
from agent.loops.queues import UtteranceQueue
from agent.providers.build import Providers
from agent.settings.config import Settings
from agent.telemetry.latency import LatencyTracker, Mark
from agent.telemetry.usage import METER, Meter, Usage


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    max_in_flight: int = 3
    context_pairs: int = 4
    utterance_queue_size: int = 16
    max_segment_s: float = 0.0  # force a final after this much continuous speech (0: off)
    pause_cut_s: float = 0.0  # the ears end a segment this far into a pause (0: the STT's endpointing)
    clause_cuts: bool = False  # long speech is cut where a clause ends first (`ears/segment_cutter.py`)
    pace: PaceOptions | None = None  # None: never speed up or tighten
    stale_after_s: float = 20.0  # a translation this late is captioned, not spoken
    stt_give_up_after_s: float | None = None  # the STT down this long ends the ears (None: never)
    # silence at clause boundaries beyond a short gap is not played (None: all of it is)
    trim: TrimOptions | None = field(default_factory=TrimOptions)

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineOptions:
        return cls(
            max_in_flight=settings.max_in_flight,
            context_pairs=settings.context_pairs,
            utterance_queue_size=settings.utterance_queue_size,
            max_segment_s=settings.max_segment_s,
            pause_cut_s=settings.pause_cut_ms / 1000,
            clause_cuts=settings.clause_cuts,
            pace=PaceOptions(max_speed=settings.max_speed) if settings.max_speed > 1.0 else None,
            stale_after_s=settings.stale_after_s,
            trim=TrimOptions() if settings.trim_silence else None,
        )


class Demand(Enum):
    """What a target language's channel does, by who is in the room (`agent/room/audience.py`)."""

    SPEAK = "speak"  # someone hears it: translated, spoken and captioned
    CAPTION = "caption"  # someone only reads it: translated and captioned, nothing synthesized
    NONE = "none"  # nobody hears or reads it: nothing at all (its track stays, silent, to be picked)


def same_language(a: str, b: str) -> bool:
    """'en' and 'en-GB' are the same language: speech is never interpreted into its own language."""
    return LanguageCode(a).language == LanguageCode(b).language


class Channel:
    """One target language: utterances in, translated speech out on one output."""

    def __init__(
        self,
        *,
        llm: llm.LLM,
        tts: tts.TTS,
        output: AudioOutput,
        tracker: LatencyTracker,
        language: str,
        captions: CaptionSink | None = None,
        options: PipelineOptions | None = None,
        instructions: Instructions | None = None,
        on_playing: Callable[[bool], None] | None = None,
        on_fault: Callable[[str, bool], None] | None = None,
        voice_for: VoiceFor | None = None,
        wait_turn: Callable[[], Awaitable[None]] | None = None,
        meter: Meter | None = None,
        is_clone: Callable[[str], bool] | None = None,
    ) -> None:
        opts = options or PipelineOptions()
        self.language = language
        self.demand = Demand.SPEAK  # the room sets it as people come, go and say what they hear
        self._meter = meter
        self.tts = tts
        self._tracker = tracker
        self.inbox = UtteranceQueue(opts.utterance_queue_size)
        self.pace = Pace(opts.pace) if opts.pace is not None else None
        self.speeches: asyncio.Queue[Speech | None] = asyncio.Queue(maxsize=opts.max_in_flight)
        self.brain = Brain(
            llm=llm,
            tts=tts,
            inbox=self.inbox,
            outbox=self.speeches,
            tracker=tracker,
            contexts=ContextBook(language, max_pairs=opts.context_pairs, instructions=instructions),
            captions=captions,
            max_in_flight=opts.max_in_flight,
            pace=self.pace,
            on_fault=on_fault,
            stale_after_s=opts.stale_after_s,
            voice_for=voice_for,
            speaks=lambda: self.demand is Demand.SPEAK,
            meter=meter,
            is_clone=is_clone,
        )
        self.mouth = Mouth(
            output=output,
            inbox=self.speeches,
            tracker=tracker,
            captions=captions,
            on_playing=on_playing,
            pace=self.pace,
            trim=opts.trim,
            wait_turn=wait_turn,
        )

    def put_nowait(self, utterance: Utterance) -> None:
        """Take an utterance for this language (a copy: queues may fold utterances together)."""
        own = dataclasses.replace(
            utterance,
            id=f"{utterance.id}-{self.language}",
            record_ids=[f"{rid}-{self.language}" for rid in utterance.record_ids],
        )
        self._tracker.mark(own.record_ids, Mark.SPEECH_END, at=own.speech_end_at)
        self._tracker.mark(own.record_ids, Mark.TRANSCRIPT_FINAL, at=own.final_at)
        self.inbox.put_nowait(own)

    def draft(self, utterance: Utterance) -> None:
        """A draft for this language (`brain/drafts.py`), under the id its final will have here."""
        self.brain.draft(dataclasses.replace(utterance, id=f"{utterance.id}-{self.language}", record_ids=[]))

    def withdraw(self, speaker: str) -> None:
        self.brain.withdraw(speaker)

    def close(self) -> None:
        """No more utterances: what is queued is still spoken, then `run` ends."""
        self.inbox.close()

    async def run(self) -> None:
        METER.set(self._meter)  # this task's, and the tasks it makes: its LLM requests are counted here
        async with asyncio.TaskGroup() as group:
            group.create_task(self.brain.run(), name=f"brain-{self.language}")
            group.create_task(self.mouth.run(), name=f"mouth-{self.language}")


class Router:
    """Hands each utterance to every channel of another language that someone hears or reads, and each
    draft to those that someone hears (a draft is there to speak sooner)."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}

    def put_nowait(self, utterance: Utterance) -> None:
        for language, channel in self.channels.items():
            if not same_language(language, utterance.language) and channel.demand is not Demand.NONE:
                channel.put_nowait(utterance)

    def draft(self, utterance: Utterance) -> None:
        for language, channel in self.channels.items():
            if not same_language(language, utterance.language) and channel.demand is Demand.SPEAK:
                channel.draft(utterance)

    def withdraw(self, speaker: str) -> None:
        for channel in self.channels.values():
            channel.withdraw(speaker)


class Interpreter:
    """One speaker into one target language."""

    def __init__(
        self,
        *,
        providers: Providers,
        frames: AsyncIterable[rtc.AudioFrame],
        output: AudioOutput,
        tracker: LatencyTracker,
        speaker: str,
        source_language: str,
        target_language: str,
        captions: CaptionSink | None = None,
        options: PipelineOptions | None = None,
        on_fault: Callable[[str, bool], None] | None = None,
        usage: Usage | None = None,
    ) -> None:
        opts = options or PipelineOptions()
        self.channel = Channel(
            llm=providers.llm,
            tts=providers.tts,
            output=output,
            tracker=tracker,
            language=target_language,
            captions=captions,
            options=options,
            on_fault=on_fault,
            meter=None if usage is None else usage.meter(target_language),
        )
        self.router = Router()
        self.router.channels[target_language] = self.channel
        self.ears = Ears(
            stt=providers.stt,
            frames=frames,
            out=self.router,
            tracker=tracker,
            speaker=speaker,
            language=source_language,
            captions=captions,
            max_segment_s=opts.max_segment_s,
            pause_cut_s=opts.pause_cut_s,
            clause_cuts=opts.clause_cuts,
            on_fault=None if on_fault is None else lambda down: on_fault("stt", down),
            give_up_after_s=opts.stt_give_up_after_s,
            drafts=self.router,
            usage=usage,
        )

    @property
    def mouth(self) -> Mouth:
        return self.channel.mouth

    async def run(self) -> None:
        """Run until the speaker's audio ends and everything heard has been spoken."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._hear(), name="ears")
            group.create_task(self.channel.run(), name="channel")

    async def _hear(self) -> None:
        try:
            await self.ears.run()
        finally:
            self.channel.close()
