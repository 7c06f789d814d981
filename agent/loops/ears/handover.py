"""Handing one speaker over between two interpreters (a deploy: make before break, docs/architecture.md).

The interpreter that hands the room over asks its ears for a cut (`CutRequest`): they stop taking audio at
the speaker's next pause, a point in the middle of a silence of at least CUT_PAUSE_S, so that the two
interpreters, each hearing the speaker a few milliseconds apart, both put the cut in that silence. What
came before the cut is theirs to finish; what comes after, the other interpreter's.

The interpreter taking over starts its ears on hold (`Hold`): they keep what the speaker says (bounded by
the replay buffer) and send nothing to the STT until released from a moment (their clock's time of the cut,
or None: from everything they hold). Then the replay machinery sends the STT the audio from that moment on.
The two interpreters' clocks and jitter buffers can disagree by more than the cut's margin (a machine busy as
it drains): the cut as the new ears place it moves into the pause they heard nearest to it (within SNAP_S),
so that neither the tail of the sentence before it is heard twice nor the start of the one after lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from livekit import rtc

from agent.loops.ears.pauses import frame_voicing
from agent.loops.ears.replay import ReplayBuffer
from agent.loops.ears.voicing import VoiceGate, Voicing
from agent.telemetry.latency import Clock

logger = logging.getLogger("agent.ears")  # the ears' logger: the handover is the ears'

CUT_PAUSE_S = 0.4  # the silence that makes a pause to cut at (longer than a gap between words)
CUT_MARGIN_S = CUT_PAUSE_S / 2  # the cut lies this far inside the silence, on either side
AUDIO_AHEAD_WAIT_S = 2.0  # released from a moment not heard yet: wait this long for its audio
SNAP_S = 0.8  # the new ears move the cut into a pause at most this far from where their clock puts it
_EPS = 1e-6


class CutRequest:
    """Ears asked to stop at the speaker's next pause: `hear` each frame until it says the cut is here;
    `point` is then the cut's place on the audio timeline."""

    def __init__(self, timeline: float) -> None:
        self.quiet_from = timeline  # where the silence being heard began (or the request, if later)
        self.point: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def hear(self, voiced: bool, timeline: float) -> bool:
        """A frame that ends at `timeline` arrived (`voiced`: speech); True: cut here (before it goes on)."""
        if voiced:
            self.quiet_from = timeline
            return False
        if timeline - self.quiet_from + _EPS < CUT_PAUSE_S:
            return False
        if not self.point.done():
            self.point.set_result(timeline - CUT_MARGIN_S)
        return True


def pauses(frames: Iterable[tuple[float, rtc.AudioFrame]]) -> list[tuple[float, float]]:
    """The silences of at least CUT_PAUSE_S in timed frames (start on the timeline, frame), as (from, to);
    a dropout counts as silence here (one alone is shorter than CUT_PAUSE_S)."""
    gate = VoiceGate()
    out: list[tuple[float, float]] = []
    quiet_from: float | None = None
    end = 0.0
    for start, frame in frames:
        end = start + frame.samples_per_channel / frame.sample_rate
        if frame_voicing(gate, frame) is Voicing.VOICED:
            if quiet_from is not None and start - quiet_from + _EPS >= CUT_PAUSE_S:
                out.append((quiet_from, start))
            quiet_from = None
        elif quiet_from is None:
            quiet_from = start
    if quiet_from is not None and end - quiet_from + _EPS >= CUT_PAUSE_S:
        out.append((quiet_from, end))
    return out


def snap_to_pause(frames: Iterable[tuple[float, rtc.AudioFrame]], point: float) -> float:
    """`point` moved into the nearest pause within SNAP_S (CUT_MARGIN_S inside it); unmoved with none."""
    nearest = min(pauses(frames), key=lambda p: max(p[0] - point, point - p[1], 0.0), default=None)
    if nearest is None or max(nearest[0] - point, point - nearest[1]) > SNAP_S:
        return point
    quiet_from, quiet_to = nearest
    return min(max(point, quiet_from + CUT_MARGIN_S), quiet_to - CUT_MARGIN_S)


class Hold:
    """Ears on standby: released once, from a moment of their clock (None: from all they hold)."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.at: float | None = None
        self.at_pause = False  # `at` is another's cut at a pause: moved into the pause heard here nearest it
        self.missed_s = 0.0  # released from before the first audio held: that much was never heard here

    def release(self, at: float | None, *, at_pause: bool = False) -> None:
        if not self.released.is_set():
            self.at, self.at_pause = at, at_pause
            self.released.set()

    async def start_point(self, replay: ReplayBuffer, intake: asyncio.Task[None]) -> float | None:
        """Once released: where on the timeline to start interpreting (the audio before it is dropped:
        the other interpreter has it), waiting for that moment's audio if it has not arrived yet. None:
        the intake ended first (the speaker stopped, or left, while held: nothing is interpreted)."""
        waiter = asyncio.ensure_future(self.released.wait())
        try:
            waits: set[asyncio.Future[Any]] = {waiter, intake}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not self.released.is_set():
            return None
        start = replay.start if self.at is None else replay.clock.to_audio(self.at)
        if start is None:  # nothing heard yet
            return replay.timeline
        loop = asyncio.get_running_loop()
        until = loop.time() + AUDIO_AHEAD_WAIT_S
        # the intake advances the timeline frame by frame (20 ms): polled at that pace; the audio around
        # the point is awaited too, for the pause it may move into
        ahead = SNAP_S if self.at_pause else 0.0
        while replay.timeline < start + ahead and not intake.done() and loop.time() < until:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if self.at_pause:
            start = snap_to_pause(replay.timed_frames(), start)
        start = min(start, replay.timeline)
        self.missed_s = max(0.0, replay.start - start)
        replay.finalized_until(start)  # the audio before the cut is never sent to this STT
        return start


class EarsHandover:
    """One speaker's ears in a handover (`Ears.handover`): on standby (`standby`) until `release`d, or `cut`
    at the speaker's next pause. The ears hand it every frame (`heard`) and their intake (`intake`)."""

    def __init__(
        self, replay: ReplayBuffer, clock: Clock, stop: Callable[[], None], *, standby: bool
    ) -> None:
        self._replay = replay
        self._clock = clock
        self._stop = stop  # the ears' `stop`: no frame is taken after it
        self.hold = Hold() if standby else None
        self._cut: CutRequest | None = None
        self.intake: asyncio.Task[None] | None = None
        self.hearing = asyncio.Event()  # the speaker's first frame arrived
        self._gate = VoiceGate()  # follows every frame, so a cut's pause is found in the room's noise
        self.voicing = Voicing.QUIET  # the last frame's, by this gate: the ears' one gate (the cutter's too)

    @property
    def held(self) -> bool:
        """On standby: keeping the speaker's audio, interpreting none of it until released."""
        return self.hold is not None and not self.hold.released.is_set()

    def release(self, at: float | None, *, at_pause: bool = False) -> None:
        """Interpret from clock time `at` on (None: all that is held); the audio before it is not ours.
        `at_pause`: `at` is the other ears' cut at a pause (not the moment the other was last live)."""
        if self.hold is not None:
            self.hold.release(at, at_pause=at_pause)

    def heard(self, frame: rtc.AudioFrame) -> bool:
        """A frame was added to the timeline; True: the ears are cut here (it is not sent on)."""
        self.hearing.set()
        self.voicing = frame_voicing(self._gate, frame)
        return self._cut is not None and self._cut.hear(self.voicing is Voicing.VOICED, self._replay.timeline)

    async def cut(self, within_s: float) -> float | None:
        """Stop taking audio at the speaker's next pause (or at once after `within_s`); what came before is
        still finalized and interpreted. The clock time of the cut; None if the ears had stopped."""
        intake = self.intake
        if intake is None or intake.done() or self._cut is not None:
            return None
        request = self._cut = CutRequest(self._replay.timeline)
        waits: set[asyncio.Future[Any]] = {request.point, intake}
        await asyncio.wait(waits, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
        self._stop()  # the intake takes no frame after this: the timeline ends where it is cut
        point = request.point.result() if request.point.done() else self._replay.timeline
        at = self._replay.clock.to_clock(point)
        return self._clock() if at is None else at

    async def held_until_released(self) -> bool:
        """On standby until released (True); False if the intake ended first (the speaker stopped or left
        while held: nothing is interpreted)."""
        assert self.hold is not None and self.intake is not None
        start = await self.hold.start_point(self._replay, self.intake)
        if start is None:
            self.intake.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.intake
            return False
        if self.hold.missed_s > 0.05:
            logger.warning(
                "took over a speaker from a moment before their first audio here",
                extra={"missed_ms": round(self.hold.missed_s * 1000)},
            )
        return True
