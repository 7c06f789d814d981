"""Interpreting a whole room: ears for every speaker, a channel (track) for every wanted language.

Room events only enqueue control steps; one control task applies them in order, so speakers and
channels are started and stopped one at a time, with nothing left behind. A step reads the room as it is
when it runs (who is there, their tracks, mutes and attributes, the metadata), so one waiting step covers
any number of events: the control queue stays bounded however fast they come, and the last state wins.
At most MAX_LANGUAGES languages get a track (`wanted_languages` says in which order). Data flows one way:
each speaker's ears → the router → one channel per target language → its published track.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import llm, stt

from agent.language.codes import AUTO
from agent.loops.ears import Ears
from agent.loops.pipeline import PipelineOptions, Router
from agent.loops.queues import StepQueue
from agent.room.auto_language import HeardLanguages
from agent.room.cloning import ATTR_VOICE, OnClone, VoiceCloner
from agent.room.languages import LanguageChoice
from agent.room.outputs import Outputs, TtsFactory
from agent.room.room_io import (
    ATTR_LANGUAGES,
    RoomPublisher,
    is_speaker,
    track_frames,
)
from agent.room.status import AgentStatus
from agent.room.stopping import STOP_TIMEOUT_S, finish
from agent.room.voices import VoiceBook
from agent.settings.config import Settings
from agent.settings.room_settings import RoomSettings, parse_room_settings
from agent.telemetry import metrics
from agent.telemetry.errors import log_unexpected
from agent.telemetry.latency import LatencyTracker

logger = logging.getLogger("agent.session")

FramesFor = Callable[[Any], AsyncIterator[rtc.AudioFrame]]
ClonerFactory = Callable[[OnClone], VoiceCloner]  # given where to hand a clone (the book)


@dataclass
class _Speaker:
    identity: str
    language: str
    track: Any  # the subscribed track its ears read (a new subscription is a new track)
    ears: Ears
    task: asyncio.Task[None]


class RoomSession:
    def __init__(
        self,
        *,
        room: Any,  # rtc.Room, or a fake with the same surface
        settings: Settings,
        stt: stt.STT,
        llm: llm.LLM,
        tts_factory: TtsFactory,
        tracker: LatencyTracker,
        job_metadata: str | None = None,
        frames_for: FramesFor = track_frames,
        cloner: ClonerFactory | None = None,
    ) -> None:
        self._room = room
        self._stt = stt
        self._tracker = tracker
        self._job_metadata = job_metadata
        self._frames_for = frames_for
        self._options = PipelineOptions.from_settings(settings)
        self.publisher = RoomPublisher(room.local_participant)
        self.status = AgentStatus(self.publisher)
        self.speakers: dict[str, _Speaker] = {}  # by audio track sid
        self.room_settings = RoomSettings()
        self.voices = VoiceBook(settings.tts.voice)  # a distinct voice per speaker, per language
        self.heard = HeardLanguages()  # what speakers with no language set (auto) hear, as detected
        self.languages = LanguageChoice(settings, self.heard)
        # own voice, for speakers who consent (`interpreter.voice` = `own`), unless VOICE_CLONING=off
        self.cloner = cloner(self.voices.set_clone) if cloner is not None and settings.voice_cloning else None
        self._ears_started: dict[str, int] = {}
        self._settings_problems: list[str] = []
        self.outputs = Outputs(
            room=room, sample_rate=settings.tts.sample_rate, llm=llm, tts_factory=tts_factory,
            tracker=tracker, options=self._options, publisher=self.publisher, status=self.status,
            voices=self.voices, router=Router(),
        )  # fmt: skip
        self._control: StepQueue[Callable[[], Awaitable[None]]] = StepQueue()
        self._control_task: asyncio.Task[None] | None = None
        # every room event asks for the same step, "bring speakers and tracks in line with the room as it
        # is now": however fast events come, one such step waits (see `StepQueue`), and nothing is lost,
        # since it reads the room's state when it runs (a track muted and unmuted meanwhile keeps its ears)
        sync = lambda *_: self._do(self._sync_room, key="room")  # noqa: E731
        self._handlers: dict[str, Callable[..., None]] = {
            "participant_connected": sync,
            "participant_disconnected": sync,
            "track_subscribed": sync,
            "track_unsubscribed": sync,
            "track_muted": sync,
            "track_unmuted": sync,
            "participant_attributes_changed": sync,
            "room_metadata_changed": lambda *_: self._do(self._apply_room_settings, key="settings"),
            "disconnected": lambda *_: self._on_room_gone(),
        }

    @property
    def router(self) -> Router:
        """Where every speaker's utterances go, to one channel per target language."""
        return self.outputs.router

    @router.setter
    def router(self, router: Router) -> None:  # before `start`: a router that watches (bench/soak.py)
        self.outputs.router = router

    # -- life cycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self.status.set_state("initializing")
        for event, handler in self._handlers.items():
            self._room.on(event, handler)
        self._control_task = asyncio.create_task(self._run_control(), name="room-control")
        self._do(self._apply_room_settings, key="settings")  # and then the room's speakers and languages
        self._do(self._listening)
        await self.settled()

    async def settled(self) -> None:
        """Wait until every control step queued so far has been applied."""
        done = asyncio.get_running_loop().create_future()

        async def mark() -> None:
            done.set_result(None)

        self._do(mark)
        await done

    @property
    def room_gone(self) -> bool:
        return self.publisher.gone.is_set()

    def _on_room_gone(self) -> None:
        """The room closed (deleted, or the agent removed): nobody can hear or read anything any more, so
        nothing waits to be heard and nothing more is sent."""
        if not self.room_gone:
            logger.info("the room closed")
            self.publisher.room_gone()

    async def aclose(self) -> None:
        """Stop listening; finish what was heard (within a bound); unpublish; leave nothing running.
        If the room is gone, stop everything at once instead."""
        if not self._room.isconnected():
            self._on_room_gone()
        for event, handler in self._handlers.items():
            self._room.off(event, handler)
        if self._control_task is not None:
            self._control.close()
            await self._control_task
            self._control_task = None
        await asyncio.gather(*(self._stop_ears(sid) for sid in list(self.speakers)))
        await self.outputs.close_all()
        if self.cloner is not None:
            await self.cloner.aclose()  # every clone deleted (the drain comes here too)
        await self.publisher.aclose()

    def queued_utterances(self) -> int:
        return self.outputs.queued_utterances()

    @property
    def pending_control_steps(self) -> int:
        return self._control.qsize()

    def _do(self, step: Callable[[], Awaitable[None]], key: str | None = None) -> None:
        self._control.put_nowait(step, key)

    async def _run_control(self) -> None:
        while (step := await self._control.get()) is not None:
            try:
                await step()
            except Exception as e:  # a bug: the next room event brings the session in line again
                log_unexpected(logger, "room control step failed", e)

    async def _listening(self) -> None:
        self.status.set_state("listening")

    # -- settings and languages --------------------------------------------------------------------

    async def _apply_room_settings(self) -> None:
        self.room_settings, problems = parse_room_settings(self._job_metadata, self._room.metadata)
        problems += self.languages.follow(self.room_settings)
        self.voices.settings = self.room_settings
        for problem in problems:
            logger.warning("room settings: %s", problem)
        self._settings_problems = problems
        self._publish_warnings()
        self.outputs.follow(self.room_settings)
        # voices (`voices`, `speaker_voices`) need nothing here: the brain asks the book for each stream
        await self._sync_room()  # the default spoken language may have changed

    def wanted_languages(self) -> list[str]:
        """Every target language asked for, in the order they get a track (`LanguageChoice.wanted`)."""
        return self.languages.wanted(self._room.remote_participants.values())

    async def _reconcile_languages(self) -> None:
        if self.room_gone:  # everyone left because the room closed: `aclose` stops every channel
            return
        wanted, left_out_changed = self.languages.capped(self._room.remote_participants.values())
        if left_out_changed:
            self._publish_warnings()
        for language in list(self.outputs):
            if language not in wanted:
                await self.outputs.close(language)
        for language in wanted:
            if language not in self.outputs:
                await self.outputs.open(language)
        self.publisher.set_attributes(**{ATTR_LANGUAGES: ",".join(sorted(self.outputs))})

    def _publish_warnings(self) -> None:
        """`interpreter.warnings`: the room settings' problems, then the languages past the cap."""
        self.publisher.set_warnings(self._settings_problems + self.languages.cap_warnings())

    @property
    def faults(self) -> list[str]:
        return self.status.faults

    def set_fault(self, kind: str, reporter: str, active: bool) -> None:
        self.status.set_fault(kind, reporter, active)

    # -- speakers ----------------------------------------------------------------------------------

    async def _start_ears(self, participant: Any, publication: Any, track: Any) -> None:
        if (
            track is None
            or publication.kind != rtc.TrackKind.KIND_AUDIO
            or publication.muted
            or not is_speaker(participant)
            or publication.sid in self.speakers
        ):
            return
        identity = participant.identity
        language = self.languages.spoken_language(participant)
        self.voices.join(identity, self.heard.heard(identity) if language == AUTO else language)
        count = self._ears_started.get(identity, 0)
        self._ears_started[identity] = count + 1
        ears = Ears(
            stt=self._stt,
            frames=self._frames_for(track),
            out=self.router,
            tracker=self._tracker,
            speaker=identity,
            language=language,
            captions=self.publisher,
            segment_prefix=identity if count == 0 else f"{identity}.{count}",
            max_segment_s=self._options.max_segment_s,
            pause_cut_s=self._options.pause_cut_s,
            on_fault=lambda active: self.status.set_fault("stt", f"speaker-{identity}", active),
            tap=(lambda frame: cloner.hear(identity, frame)) if (cloner := self.cloner) is not None else None,
            on_detected=(lambda code: self._on_detected(identity, code)) if language == AUTO else None,
        )
        task = asyncio.create_task(ears.run(), name=f"ears-{identity}")
        task.add_done_callback(lambda t: self._on_ears_ended(identity, t))
        self.speakers[publication.sid] = _Speaker(identity, language, track, ears, task)
        metrics.ACTIVE_SPEAKERS.inc()
        self.publisher.speaker_tracks[identity] = publication.sid
        logger.info("listening to a speaker", extra={"speaker": identity, "language": language})

    def _on_detected(self, identity: str, language: str) -> None:
        """A final of a speaker with no language set was detected as `language` (it is routed by that
        already); what they hear follows the language of most of their recent utterances."""
        if self.heard.note(identity, language):
            logger.info(
                "a speaker now hears their detected language",
                extra={"speaker": identity, "language": language},
            )
            self.voices.join(identity, language)
            self._do(self._sync_room, key="room")  # the target languages: theirs joins them

    def _on_ears_ended(self, identity: str, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # a bug, logged by the ears with its traceback: this speaker is no longer transcribed
            self.status.set_fault("stt", f"speaker-{identity}", True)

    async def _stop_ears(self, track_sid: str) -> None:
        speaker = self.speakers.pop(track_sid, None)
        if speaker is None:
            return
        metrics.ACTIVE_SPEAKERS.dec()
        if not speaker.task.done():  # else they ended by themselves (a failure was logged by the ears)
            speaker.ears.stop()  # what was already heard is still finalized and interpreted
            await finish(speaker.task, STOP_TIMEOUT_S, self.publisher.gone)
        self.status.set_fault("stt", f"speaker-{speaker.identity}", False)
        logger.info("stopped listening to a speaker", extra={"speaker": speaker.identity})

    async def _sync_room(self) -> None:
        """Bring speakers and tracks in line with the room as it is now: stop the ears of a track gone,
        muted or replaced, of a speaker who left or now speaks another language (what they already heard
        is still interpreted); start ears for every audio track not listened to; then the languages."""
        participants = {p.identity: p for p in self._room.remote_participants.values()}
        for sid, speaker in list(self.speakers.items()):
            participant = participants.get(speaker.identity)
            publication = participant.track_publications.get(sid) if participant is not None else None
            if (
                publication is None
                or publication.muted
                or publication.track is not speaker.track
                or self.languages.spoken_language(participant, warn=False) != speaker.language
            ):
                await self._stop_ears(sid)
        for identity in list(self.publisher.speaker_tracks):
            if identity not in participants:
                del self.publisher.speaker_tracks[identity]
                self.voices.leave(identity)
        self._sync_consent(participants)
        for participant in participants.values():
            for publication in list(participant.track_publications.values()):
                await self._start_ears(participant, publication, publication.track)
        await self._reconcile_languages()

    def _sync_consent(self, participants: dict[str, Any]) -> None:
        """Own voice for the speakers who ask for it now; withdrawn (and the clone deleted) for those who
        no longer do, or left."""
        if self.cloner is None:
            return
        for identity, participant in participants.items():
            wants = is_speaker(participant) and participant.attributes.get(ATTR_VOICE, "").strip() == "own"
            if wants and not self.cloner.consented(identity):
                self.cloner.consent(identity, self.languages.speaks(participant))
            elif not wants:
                self.cloner.withdraw(identity)
        for identity in self.cloner.speakers():
            if identity not in participants:
                self.cloner.withdraw(identity)
