"""Interpreting a whole room: ears for every speaker, a channel (track) for every wanted language.

Room events only enqueue control steps; one control task applies them in order, so speakers and
channels are started and stopped one at a time, with nothing left behind. A step reads the room as it is
when it runs (who is there, their tracks, mutes and attributes, the metadata), so one waiting step covers
any number of events: the control queue stays bounded however fast they come, and the last state wins.
At most MAX_LANGUAGES languages get a track (`wanted_languages` says in which order). Data flows one way:
each speaker's ears → the router → one channel per target language → its published track.

The session orchestrates; its parts each hold one concern: `LanguageChoice` (languages.py: who speaks
what, which languages get a track), `Speakers` (speakers.py: ears per speaker track, own-voice consent),
`Outputs` (outputs.py: a channel and a track per language), `AgentStatus` (status.py: state and faults).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from livekit.agents import llm, stt

from agent.language.codes import base_language
from agent.loops.echo import EchoBook
from agent.loops.pipeline import Demand, PipelineOptions, Router
from agent.loops.queues import StepQueue
from agent.room.attributes import ParticipantAttributes
from agent.room.audience import Audience
from agent.room.auto_language import HeardLanguages
from agent.room.budget import Budget
from agent.room.cloning import OnClone, VoiceCloner, deleted_first, own_voice_handler
from agent.room.handover import Takeover
from agent.room.languages import LanguageChoice
from agent.room.names import SpeakerNames
from agent.room.outputs import Outputs, TtsFactory
from agent.room.presence import own_segment_tag
from agent.room.room_io import ATTR_BUDGET_REACHED, ATTR_LANGUAGES, RoomPublisher, track_frames
from agent.room.speakers import FramesFor, Speakers
from agent.room.status import AgentStatus
from agent.room.voices import VoiceBook
from agent.settings.config import Settings
from agent.settings.room_settings import RoomSettings, parse_room_settings
from agent.telemetry.errors import log_unexpected
from agent.telemetry.latency import LatencyTracker
from agent.telemetry.usage import Usage

logger = logging.getLogger("agent.session")

ClonerFactory = Callable[[OnClone], VoiceCloner]  # given where to hand a clone (the book)


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
        handover_from: str | None = None,
        attributes: ParticipantAttributes | None = None,
        usage: Usage | None = None,
    ) -> None:
        self._room = room
        self._always_speak = settings.synthesis == "always"
        self.usage = usage or Usage(settings.prices)
        self.budget = Budget(self._budget_changed)  # the room's optional limit per hour
        self.usage.on_spent = self.budget.spent
        self._job_metadata = job_metadata
        self.clock = tracker.clock
        options = PipelineOptions.from_settings(settings)
        self.publisher = RoomPublisher(room.local_participant)
        self.status = AgentStatus(self.publisher)
        self.echo = EchoBook(tracker.clock)  # what the interpreter said: never interpreted again
        self.publisher.said = self.echo.said
        self.room_settings = RoomSettings()
        self._settings_problems: list[str] = []
        self.voices = VoiceBook(settings.tts.voice)  # a distinct voice per speaker, per language
        self.heard = HeardLanguages()  # what speakers with no language set (auto) hear, as detected
        self.attributes = attributes or ParticipantAttributes()  # as applied: bounded, storms coalesced
        self.attributes.on_applied = self._sync_soon
        self.languages = LanguageChoice(settings, self.heard, self.attributes)
        self.names = SpeakerNames()  # the name each speaker's captions carry: as first seen (names.py)
        self.publisher.speaker_names = self.names.names
        # own voice, for speakers who consent (`interpreter.voice` = `own`), unless VOICE_CLONING=off
        on_clone = own_voice_handler(self.voices, self.publisher)  # the book, and who is heard in their own
        self.cloner = cloner(on_clone) if cloner is not None and settings.voice_cloning else None
        if self.cloner is not None:
            self.cloner.usage = self.usage
        router = Router()
        self.outputs = Outputs(
            room=room, sample_rate=settings.tts.sample_rate, llm=llm, tts_factory=tts_factory,
            tracker=tracker, options=options, publisher=self.publisher, status=self.status,
            voices=self.voices, router=router, usage=self.usage,
        )  # fmt: skip
        self.speakers = Speakers(
            stt=stt, frames_for=frames_for, tracker=tracker, options=options, publisher=self.publisher,
            status=self.status, languages=self.languages, heard=self.heard, voices=self.voices,
            cloner=self.cloner, router=router, on_heard_changed=self._sync_soon, echo=self.echo,
            segment_tag=own_segment_tag(room, settings.agent_name, taking_over=handover_from is not None),
            usage=self.usage,
        )  # fmt: skip
        self.takeover = None if handover_from is None else Takeover(
            room=room, speakers=self.speakers, outputs=self.outputs, publisher=self.publisher,
            old=handover_from, clock=tracker.clock,
        )  # fmt: skip
        self._control: StepQueue[Callable[[], Awaitable[None]]] = StepQueue()
        self._control_task: asyncio.Task[None] | None = None
        self._handlers = _room_handlers(self)

    @property
    def router(self) -> Router:
        """Where every speaker's utterances go, to one channel per target language."""
        return self.outputs.router

    @router.setter
    def router(self, router: Router) -> None:  # before `start`: a watching router (`python -m bench soak`)
        self.outputs.router = self.speakers.router = router

    # -- life cycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self.status.set_state("initializing")
        for event, handler in self._handlers.items():
            self._room.on(event, handler)
        self._control_task = asyncio.create_task(self._run_control(), name="room-control")
        if self.takeover is not None:
            self.takeover.start()
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

    async def aclose(self, *, at_once: bool = False) -> None:
        """Stop listening; finish what was heard (within a bound); unpublish; leave nothing running.
        If the room is gone, stop everything at once instead; `at_once` too, though the room stays (another
        interpreter interprets it: nothing more is heard, said or sent). Own-voice clones go first."""
        await deleted_first(self.cloner, self._close(at_once))

    async def _close(self, at_once: bool) -> None:
        if not self._room.isconnected():
            self._on_room_gone()
        for event, handler in self._handlers.items():
            if event != "disconnected":  # the room may still close while what was heard is finished
                self._room.off(event, handler)
        self.attributes.close()
        self.budget.cancel()
        if self.takeover is not None:
            await self.takeover.aclose()
        if self._control_task is not None:
            self._control.close()
            await self._control_task  # a track being published is let be published (and goes with the room)
            self._control_task = None
        if at_once:
            self.publisher.stop()
        await self.speakers.stop_all()
        await self.outputs.close_all()
        self._room.off("disconnected", self._handlers["disconnected"])
        await self.publisher.aclose()

    @property
    def pending_control_steps(self) -> int:
        return self._control.qsize()

    def wanted_languages(self) -> list[str]:
        """Every target language asked for, in the order they get a track (`LanguageChoice.wanted`)."""
        return self.languages.wanted(self._room.remote_participants.values())

    # -- control steps, applied one at a time ------------------------------------------------------

    def _do(self, step: Callable[[], Awaitable[None]], key: str | None = None) -> None:
        self._control.put_nowait(step, key)

    def _sync_soon(self, *_: Any) -> None:
        """Every room event asks for the same step, "bring speakers and tracks in line with the room as it
        is now": however fast events come, one such step waits (see `StepQueue`), and nothing is lost,
        since it reads the room's state when it runs (a track muted and unmuted meanwhile keeps its ears)."""
        self._do(self._sync_room, key="room")

    async def _run_control(self) -> None:
        while (step := await self._control.get()) is not None:
            try:
                await step()
            except Exception as e:  # a bug: the next room event brings the session in line again
                log_unexpected(logger, "room control step failed", e)

    async def _listening(self) -> None:
        self.status.set_state("listening")

    async def _apply_room_settings(self) -> None:
        self.room_settings, problems = parse_room_settings(self._job_metadata, self._room.metadata)
        problems += self.languages.follow(self.room_settings)
        self.voices.settings = self.room_settings
        for problem in problems:
            logger.warning("room settings: %s", problem)
        self._settings_problems = problems
        self._publish_warnings()
        self.outputs.follow(self.room_settings)
        self.budget.follow(self.room_settings.budget_usd_per_hour)
        # voices (`voices`, `speaker_voices`) need nothing here: the brain asks the book for each stream
        await self._sync_room()  # the default spoken language may have changed

    async def _sync_room(self) -> None:
        """Bring speakers and tracks in line with the room as it is now: stop the ears of a track gone,
        muted or replaced, of a speaker who left or now speaks another language (what they already heard
        is still interpreted); start ears for every audio track not listened to; then the languages."""
        participants = {p.identity: p for p in self._room.remote_participants.values()}
        self.attributes.forget(participants)
        self.names.follow(participants)
        await self.speakers.stop_stale(participants)
        self.speakers.forget_left(participants)
        self.outputs.forget_speakers_except(participants.keys())
        self.speakers.follow_consent(participants)
        await self.speakers.start_new(participants)
        await self._reconcile_languages()

    async def _reconcile_languages(self) -> None:
        if self.room_gone:  # everyone left because the room closed: `aclose` stops every channel
            return
        wanted, left_out_changed = self.languages.capped(self._room.remote_participants.values())
        if left_out_changed:
            self._publish_warnings()
        for language in list(self.outputs):
            if language not in wanted:
                await self.outputs.close(language)
        audience = Audience(self._room.remote_participants.values(), self.attributes.of, self.languages.asks)
        for language in wanted:
            demand = (
                Demand.NONE if self.budget.reached else audience.demand(language, always=self._always_speak)
            )
            if language not in self.outputs:
                await self.outputs.open(language, demand)
            else:
                self.outputs.set_demand(language, demand)
        self.publisher.set_attributes(**{ATTR_LANGUAGES: ",".join(sorted(map(base_language, self.outputs)))})

    def _budget_changed(self) -> None:
        """The hour's budget was reached, or a new hour began: the room is told, the channels follow."""
        until = str(int(self.budget.resumes_at * 1000)) if self.budget.reached else ""
        self.publisher.set_attributes(**{ATTR_BUDGET_REACHED: until})
        self._sync_soon()

    def _publish_warnings(self) -> None:
        """`interpreter.warnings`: the room settings' problems, then the languages past the cap."""
        self.publisher.set_warnings(self._settings_problems + self.languages.cap_warnings())


def _room_handlers(session: RoomSession) -> dict[str, Callable[..., None]]:
    """The room's events and what the session does on each: most bring it in line with the room (one
    step, however many come); a participant's attribute changes go through `ParticipantAttributes`, which
    coalesces a storm of them; a rename is only counted (captions keep the name first seen)."""
    sync = session._sync_soon
    return {
        "participant_connected": sync,
        "participant_disconnected": sync,
        "track_subscribed": sync,
        "track_unsubscribed": sync,
        "track_muted": sync,
        "track_unmuted": sync,
        "participant_attributes_changed": lambda _, participant: session.attributes.changed(participant),
        "participant_name_changed": lambda participant, *_: session.names.renamed(participant),
        "room_metadata_changed": lambda *_: session._do(session._apply_room_settings, key="settings"),
        "disconnected": lambda *_: session._on_room_gone(),
    }
