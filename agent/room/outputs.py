"""The room's interpretation outputs: for every target language that gets a track, a channel (brain and
mouth, `agent.loops.pipeline.Channel`) speaking into a published track `interpretation-<language>`.

Opening publishes the track and starts the channel; closing lets the channel finish what it holds (within
STOP_TIMEOUT_S), lets the track play out what its source still holds, then unpublishes it. Once the room
is gone, nothing waits on it: what is left is dropped, and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import llm, tts

from agent.loops.brain.prompt import Instructions
from agent.loops.mouth.loop import OUTPUT_QUEUE_MS
from agent.loops.pipeline import Channel, Demand, PipelineOptions, Router
from agent.room.room_io import RoomPublisher, track_name, unless_gone
from agent.room.running import STOP_TIMEOUT_S, Running, finish
from agent.room.status import AgentStatus
from agent.room.voices import VoiceBook
from agent.settings.room_settings import RoomSettings
from agent.telemetry import metrics
from agent.telemetry.latency import LatencyTracker
from agent.telemetry.usage import Usage

logger = logging.getLogger("agent.session")

TtsFactory = Callable[[str, str | None], tts.TTS]  # (language, voice id or None) → a TTS for that language

# The interpretation track's publish options, chosen by `python -m bench relay` (docs/benchmarks.md). RED
# (each packet also carries the frames before it): at 5 % loss with jitter a listener's speech made up by
# concealment falls from 4.3-5.1 % to 0.4 % (mean of 5 runs), concealment events from 23-37 to 0-5. DTX
# (silence as a trickle of comfort-noise frames): no gain measured, and at 5 % loss 1.0 % of the speech was
# concealed with it against 0.4 % without (equal at 10 %); the mouth plays no dead air anyway (trim.py), so
# there is little silence for DTX to save. Both were on before (the SDK's defaults). Opus in-band FEC is
# the encoder's own (on when it expects loss).
INTERPRETATION_RED = True
INTERPRETATION_DTX = False


def interpretation_publish_options(
    *, red: bool = INTERPRETATION_RED, dtx: bool = INTERPRETATION_DTX
) -> rtc.TrackPublishOptions:
    return rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE, red=red, dtx=dtx)


@dataclass
class Output:
    channel: Channel
    task: asyncio.Task[None]
    source: rtc.AudioSource
    track_sid: str


class Outputs(Running[Output]):
    """The open outputs, by target language."""

    def __init__(
        self,
        *,
        room: Any,  # rtc.Room, or a fake with the same surface
        sample_rate: int,
        llm: llm.LLM,
        tts_factory: TtsFactory,
        tracker: LatencyTracker,
        options: PipelineOptions,
        publisher: RoomPublisher,
        status: AgentStatus,
        voices: VoiceBook,
        router: Router,
        usage: Usage | None = None,
    ) -> None:
        super().__init__()
        self._usage = usage
        self._room = room
        self._sample_rate = sample_rate
        self._llm = llm
        self._tts_factory = tts_factory
        self._tracker = tracker
        self._options = options
        self._publisher = publisher
        self._status = status
        self._voices = voices
        self.router = router
        self._room_settings = RoomSettings()
        # taking a room over: before speaking into a language's track, wait for the other interpreter's
        self.wait_turn: Callable[[str], Awaitable[None]] | None = None

    def queued_utterances(self) -> int:
        return sum(output.channel.inbox.qsize() for output in self._running.values())

    def follow(self, room_settings: RoomSettings) -> None:
        """The room's settings from now on: every open channel gets their instructions (glossary,
        formality); a voice set in them is asked for per stream (the book), or by a new channel's TTS."""
        self._room_settings = room_settings
        for language, output in self._running.items():
            output.channel.brain.contexts.set_instructions(self._instructions(language))

    def forget_speakers_except(self, present: Collection[str]) -> None:
        """The translation contexts of speakers who left are dropped (each speaker has their own)."""
        for output in self._running.values():
            output.channel.brain.contexts.forget_speakers_except(present)

    def _instructions(self, language: str) -> Instructions:
        s = self._room_settings
        return Instructions(
            fixed=tuple(s.glossary.fixed_for(language)), keep=s.glossary.keep, formality=s.formality
        )

    def set_demand(self, language: str, demand: Demand) -> None:
        """What `language`'s channel does from its next utterance on (`agent/room/audience.py`)."""
        channel = self._running[language].channel
        if channel.demand is not demand:
            channel.demand = demand
            logger.info("interpretation demand changed", extra={"language": language, "demand": demand.value})

    async def open(self, language: str, demand: Demand = Demand.SPEAK) -> None:
        source = rtc.AudioSource(self._sample_rate, 1, queue_size_ms=OUTPUT_QUEUE_MS)
        track = rtc.LocalAudioTrack.create_audio_track(track_name(language), source)
        options = interpretation_publish_options()
        publication = await unless_gone(
            self._room.local_participant.publish_track(track, options), self._publisher.gone
        )
        if publication is None:  # the room closed meanwhile
            await source.aclose()
            return
        channel = Channel(
            llm=self._llm,
            tts=self._tts_factory(language, self._room_settings.voice_for(language)),
            output=source,
            tracker=self._tracker,
            language=language,
            captions=self._publisher,
            options=self._options,
            instructions=self._instructions(language),
            on_playing=lambda playing: self._status.on_playing(language, playing),
            on_fault=lambda kind, active: self._status.set_fault(kind, f"channel-{language}", active),
            voice_for=lambda speaker: self._voices.voice_for(speaker, language),
            wait_turn=None if (turn := self.wait_turn) is None else (lambda: turn(language)),
            meter=None if self._usage is None else self._usage.meter(language),
            is_clone=self._voices.is_clone,
        )
        channel.demand = demand
        task = asyncio.create_task(channel.run(), name=f"channel-{language}")
        self._running[language] = Output(channel, task, source, publication.sid)
        self._publisher.language_tracks[language] = publication.sid
        self.router.channels[language] = channel
        metrics.ACTIVE_LANGUAGES.inc()
        logger.info("interpretation track published", extra={"language": language})

    async def close(self, language: str) -> None:
        output = self._running.pop(language)
        self.router.channels.pop(language, None)
        metrics.ACTIVE_LANGUAGES.dec()
        self._status.on_playing(language, False)
        output.channel.close()  # what is queued is still spoken, within a bound
        await finish(output.task, STOP_TIMEOUT_S, self._publisher.gone)
        await self._play_out(language, output)
        self._count_abandoned(language)
        for kind in ("llm", "tts"):
            self._status.set_fault(kind, f"channel-{language}", False)
        await output.channel.tts.aclose()
        await self._unpublish(language, output)
        await output.source.aclose()
        self._publisher.language_tracks.pop(language, None)
        logger.info("interpretation track removed", extra={"language": language})

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(language) for language in list(self._running)))

    async def _play_out(self, language: str, output: Output) -> None:
        """The source still holds up to OUTPUT_QUEUE_MS of speech: let it play before the track goes."""
        gone = self._publisher.gone
        if gone.is_set():
            return

        async def played_out() -> None:  # the source's own coroutine is made only if this one runs
            await asyncio.wait_for(output.source.wait_for_playout(), OUTPUT_QUEUE_MS / 1000 + 1.0)

        try:
            await unless_gone(played_out(), gone)
        except Exception as e:  # the track goes anyway; only its last moment of speech may be cut
            logger.warning(
                "an interpretation track's last audio did not play out",
                extra={"language": language, "error": type(e).__name__},
            )

    def _count_abandoned(self, language: str) -> None:
        if abandoned := self._tracker.abandon(f"-{language}"):
            if self._publisher.gone.is_set():  # nobody was left to hear them: not a fault
                logger.info(
                    "the room closed before every utterance was spoken",
                    extra={"language": language, "utterances": abandoned},
                )
            else:
                logger.error(
                    "an interpretation track closed before everything heard was spoken",
                    extra={"language": language, "utterances": abandoned},
                )

    async def _unpublish(self, language: str, output: Output) -> None:
        gone = self._publisher.gone
        if gone.is_set():
            return
        try:
            await unless_gone(self._room.local_participant.unpublish_track(output.track_sid), gone)
        except Exception as e:  # expected only as the room closes (then LiveKit drops the track itself)
            closing = gone.is_set() or not self._room.isconnected()
            (logger.debug if closing else logger.warning)(
                "could not unpublish an interpretation track",
                extra={"language": language, "error": type(e).__name__},
            )
