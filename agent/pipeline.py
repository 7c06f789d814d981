"""One interpretation: ears → brain → mouth for one speaker into one target language.

The loops are joined by bounded queues and run side by side; data flows one way. When the speaker's
audio ends, each loop drains what it holds and ends, so nothing already heard is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from dataclasses import dataclass

from livekit import rtc

from .brain import Brain
from .captions import CaptionSink
from .config import Settings
from .ears import Ears
from .latency import LatencyTracker
from .models import Speech
from .mouth import AudioOutput, Mouth
from .prompt import TranslationContext
from .providers import Providers
from .queues import UtteranceQueue


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    max_in_flight: int = 3
    context_pairs: int = 4
    utterance_queue_size: int = 16

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineOptions:
        return cls(
            max_in_flight=settings.max_in_flight,
            context_pairs=settings.context_pairs,
            utterance_queue_size=settings.utterance_queue_size,
        )


class Interpreter:
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
    ) -> None:
        opts = options or PipelineOptions()
        self.utterances = UtteranceQueue(opts.utterance_queue_size)
        self.speeches: asyncio.Queue[Speech | None] = asyncio.Queue(maxsize=opts.max_in_flight)
        self.tracker = tracker
        self.ears = Ears(
            stt=providers.stt,
            frames=frames,
            out=self.utterances,
            tracker=tracker,
            speaker=speaker,
            language=source_language,
            captions=captions,
        )
        self.brain = Brain(
            llm=providers.llm,
            tts=providers.tts,
            inbox=self.utterances,
            outbox=self.speeches,
            tracker=tracker,
            context=TranslationContext(
                source_language=source_language,
                target_language=target_language,
                max_pairs=opts.context_pairs,
            ),
            captions=captions,
            max_in_flight=opts.max_in_flight,
        )
        self.mouth = Mouth(output=output, inbox=self.speeches, tracker=tracker, captions=captions)

    async def run(self) -> None:
        """Run until the speaker's audio ends and everything heard has been spoken."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._hear(), name="ears")
            group.create_task(self.brain.run(), name="brain")
            group.create_task(self.mouth.run(), name="mouth")

    async def _hear(self) -> None:
        try:
            await self.ears.run()
        finally:
            self.utterances.close()
