"""The room's speakers: ears (`agent.loops.ears.loop.Ears`) on every audio track a speaker publishes and
has not muted, in the language they speak, handing each utterance to the router.

A track gone, muted or replaced, or a speaker who now speaks another language, stops its ears (what they
already heard is still finalized and interpreted); a speaker with no language set (`auto`) is routed per
utterance by its detected language, and what they hear follows the language of most of their recent
utterances (`HeardLanguages`). Ears that end by themselves with an error report an STT fault.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from livekit import rtc
from livekit.agents import stt

from agent.language.codes import AUTO
from agent.loops.crosstalk import CrossTalk
from agent.loops.ears.loop import Ears
from agent.loops.echo import EchoBook
from agent.loops.models import Utterance
from agent.loops.pipeline import PipelineOptions, Router
from agent.room.auto_language import HeardLanguages
from agent.room.cloning import ATTR_VOICE, VoiceCloner
from agent.room.languages import LanguageChoice
from agent.room.room_io import RoomPublisher, is_speaker
from agent.room.running import STOP_TIMEOUT_S, Running, finish
from agent.room.status import AgentStatus
from agent.room.voices import VoiceBook
from agent.telemetry import metrics
from agent.telemetry.latency import LatencyTracker
from agent.telemetry.usage import Usage

logger = logging.getLogger("agent.session")

FramesFor = Callable[[Any], AsyncIterator[rtc.AudioFrame]]


@dataclass
class Speaker:
    identity: str
    language: str
    track: Any  # the subscribed track its ears read (a new subscription is a new track)
    ears: Ears
    task: asyncio.Task[None]


class Speakers(Running[Speaker]):
    """The speakers listened to, by audio track sid. `on_heard_changed`: what an `auto` speaker hears
    changed (the room's target languages may follow)."""

    def __init__(
        self,
        *,
        stt: stt.STT,
        frames_for: FramesFor,
        tracker: LatencyTracker,
        options: PipelineOptions,
        publisher: RoomPublisher,
        status: AgentStatus,
        languages: LanguageChoice,
        heard: HeardLanguages,
        voices: VoiceBook,
        cloner: VoiceCloner | None,
        router: Router,
        on_heard_changed: Callable[[], None],
        segment_tag: str | None = None,
        echo: EchoBook | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__()
        self._usage = usage
        self._stt = stt
        self._frames_for = frames_for
        self._tracker = tracker
        self._options = options
        self._publisher = publisher
        self._status = status
        self._languages = languages
        self._heard = heard
        self._voices = voices
        self._cloner = cloner
        self.router = router
        self._echo = echo  # what the interpreter said: a speaker's microphone hearing it is not them
        self.crosstalk = CrossTalk(self._route, mid_speech=self._others_mid_speech, captions=publisher)
        self._on_heard_changed = on_heard_changed
        self._ears_started: dict[str, int] = {}  # identity → ears started for them (segment ids stay unique)
        self._segment_tag = segment_tag  # in segment ids, so that they differ from another interpreter's
        # a handover (`agent/room/handover.py`): new ears start on hold while `holding` (taking over); none
        # start once `frozen` (handing over: speakers the other interpreter has not heard cut are its own)
        self.holding = False
        self.frozen = False

    @property
    def ears_started(self) -> Mapping[str, int]:
        """Every speaker listened to in this session → how many ears were started for them (read-only)."""
        return MappingProxyType(self._ears_started)

    async def stop_stale(self, participants: dict[str, Any]) -> None:
        """Stop the ears of a track gone, muted or replaced, of a speaker who left or now speaks another
        language (what they already heard is still interpreted)."""
        for sid, speaker in list(self._running.items()):
            participant = participants.get(speaker.identity)
            publication = participant.track_publications.get(sid) if participant is not None else None
            if (
                publication is None
                or publication.muted
                or publication.track is not speaker.track
                or self._languages.spoken_language(participant, warn=False) != speaker.language
            ):
                await self.stop(sid)

    def forget_left(self, participants: dict[str, Any]) -> None:
        """The speakers who left: no captions on their track any more, their voice free for others."""
        for identity in list(self._publisher.speaker_tracks):
            if identity not in participants:
                del self._publisher.speaker_tracks[identity]
                self._voices.leave(identity)

    def follow_consent(self, participants: dict[str, Any]) -> None:
        """Own voice for the speakers who ask for it now; withdrawn (and the clone deleted) for those who
        no longer do, or left."""
        if self._cloner is None:
            return
        for identity, participant in participants.items():
            wants = (
                is_speaker(participant)
                and self._languages.attributes.of(participant).get(ATTR_VOICE, "").strip() == "own"
            )
            if wants and not self._cloner.consented(identity):
                self._cloner.consent(identity, self._languages.speaks(participant))
            elif not wants:
                self._cloner.withdraw(identity)
        for identity in self._cloner.speakers():
            if identity not in participants:
                self._cloner.withdraw(identity)

    async def start_new(self, participants: dict[str, Any]) -> None:
        """Ears for every audio track not listened to."""
        for participant in participants.values():
            for publication in list(participant.track_publications.values()):
                await self._start(participant, publication, publication.track)

    async def _start(self, participant: Any, publication: Any, track: Any) -> None:
        if (
            track is None
            or publication.kind != rtc.TrackKind.KIND_AUDIO
            or publication.muted
            or not is_speaker(participant)
            or publication.sid in self._running
            or self.frozen
        ):
            return
        identity = participant.identity
        language = self._languages.spoken_language(participant)
        self._voices.join(identity, self._heard.heard(identity) if language == AUTO else language)
        count = self._ears_started.get(identity, 0)
        self._ears_started[identity] = count + 1
        ears = Ears(
            stt=self._stt,
            frames=self._frames_for(track),
            out=self.crosstalk,
            tracker=self._tracker,
            speaker=identity,
            language=language,
            captions=self._publisher,
            segment_prefix=self._segment_prefix(identity, count),
            max_segment_s=self._options.max_segment_s,
            pause_cut_s=self._options.pause_cut_s,
            clause_cuts=self._options.clause_cuts,
            on_fault=lambda active: self._status.set_fault("stt", f"speaker-{identity}", active),
            tap=None if (cloner := self._cloner) is None else (lambda frame: cloner.hear(identity, frame)),
            on_detected=(lambda code: self._on_detected(identity, code)) if language == AUTO else None,
            standby=self.holding,
            echo=self._echo,
            drafts=self.router,
            usage=self._usage,
        )
        task = asyncio.create_task(ears.run(), name=f"ears-{identity}")
        task.add_done_callback(lambda t: self._on_ears_ended(identity, t))
        self._running[publication.sid] = Speaker(identity, language, track, ears, task)
        metrics.ACTIVE_SPEAKERS.inc()
        self._publisher.speaker_tracks[identity] = publication.sid
        logger.info("listening to a speaker", extra={"speaker": identity, "language": language})

    def _route(self, utterance: Utterance) -> None:
        self.router.put_nowait(utterance)

    def _others_mid_speech(self, identity: str) -> bool:
        return any(s.identity != identity and s.ears.mid_speech for s in self._running.values())

    def _segment_prefix(self, identity: str, count: int) -> str:
        tagged = identity if self._segment_tag is None else f"{identity}~{self._segment_tag}"
        return tagged if count == 0 else f"{tagged}.{count}"

    # -- a handover ---------------------------------------------------------------------------------

    def hearing(self, sid: str) -> bool:
        """Ears listen to this track and its audio has started arriving."""
        speaker = self._running.get(sid)
        return speaker is not None and speaker.ears.handover.hearing.is_set()

    def release(self, cuts: Mapping[str, float], default: float | None) -> None:
        """Taking over: every speaker's ears (held) interpret from their cut (clock time), a speaker
        without one from `default` (None: all their ears hold); ears started from now on do not wait."""
        self.holding = False
        for speaker in self._running.values():
            cut = cuts.get(speaker.identity)
            speaker.ears.handover.release(default if cut is None else cut, at_pause=cut is not None)

    async def cut_all(self, within_s: float) -> dict[str, float]:
        """Handing over: cut every speaker's ears at their next pause (or at once after `within_s`), and
        start no new ones. Each speaker's cut (clock time; the latest of their tracks')."""
        self.frozen = True
        speakers = list(self._running.values())
        cut = await asyncio.gather(*(s.ears.handover.cut(within_s) for s in speakers))
        cuts: dict[str, float] = {}
        for speaker, at in zip(speakers, cut, strict=True):
            if at is not None:
                cuts[speaker.identity] = max(at, cuts.get(speaker.identity, at))
        return cuts

    def _on_detected(self, identity: str, language: str) -> None:
        """A final of a speaker with no language set was detected as `language` (it is routed by that
        already); what they hear follows the language of most of their recent utterances."""
        if self._heard.note(identity, language):
            logger.info(
                "a speaker now hears their detected language",
                extra={"speaker": identity, "language": language},
            )
            self._voices.join(identity, language)
            self._on_heard_changed()  # the target languages: theirs joins them

    def _on_ears_ended(self, identity: str, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # a bug, logged by the ears with its traceback: this speaker is no longer transcribed
            self._status.set_fault("stt", f"speaker-{identity}", True)

    async def stop(self, track_sid: str) -> None:
        speaker = self._running.pop(track_sid, None)
        if speaker is None:
            return
        metrics.ACTIVE_SPEAKERS.dec()
        if not speaker.task.done():  # else they ended by themselves (a failure was logged by the ears)
            speaker.ears.stop()  # what was already heard is still finalized and interpreted
            await finish(speaker.task, STOP_TIMEOUT_S, self._publisher.gone)
        self._status.set_fault("stt", f"speaker-{speaker.identity}", False)
        logger.info("stopped listening to a speaker", extra={"speaker": speaker.identity})

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(sid) for sid in list(self._running)))
        self.crosstalk.flush()  # no other transcript will come: what waits goes on
