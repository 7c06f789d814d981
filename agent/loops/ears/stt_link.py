"""The ears' link to the STT: one speaker's provider stream, reopened with backoff when it dies.

The provider stream runs without framework retries; when it dies the link reopens it with backoff and
first replays the audio that was not yet finalized (`replay.py`: kept since the last final word, and
what arrived while the link was down), then goes on live.

Only provider errors are an outage. A request the provider refuses (a status it will not answer
differently when asked again: 401/403 for the key, 400 for the request) is not retried: the link stops,
reports the STT as down (its fault flag) and says why once. With `give_up_after_s` (the file mode's),
an outage that lasts that long ends the link too; in a room it never gives up while audio flows.
Either way `failure` tells what happened. Anything else that goes wrong is a bug, raised to the ears.

A stream's times (its words' start and end) count the audio it heard; a dropout spliced out of the live
audio (`dropouts.py`) was not heard, so `to_timeline` maps them back onto the speaker's timeline.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import APIError, APIStatusError, stt
from livekit.agents.stt import SpeechStream

from agent.loops.ears.dropouts import DropoutSplice
from agent.loops.ears.replay import ReplayBuffer
from agent.loops.ears.voicing import Voicing
from agent.loops.faults import FaultFlag
from agent.providers.build import STT_CONN_OPTIONS, close_stream, stt_language
from agent.telemetry import metrics
from agent.telemetry.latency import Clock

logger = logging.getLogger("agent.ears")  # the ears' logger: what the link says, the ears say

# what an STT outage looks like: the plugin's errors, and a stream that ends early; anything else is a bug
STT_OUTAGES: tuple[type[Exception], ...] = (APIError, ConnectionError)


@dataclass(frozen=True, slots=True)
class SttFailure:
    """Why the ears stopped reaching for the STT: it refused the request, or stayed out of reach."""

    provider: str  # "deepgram"
    error: str  # the error's type, or the underlying one's (ClientConnectorError, TimeoutError...)
    status: int | None  # the HTTP status of a refused handshake, or the websocket close code
    refused: bool  # True: refused (not retryable); False: unreachable (or failing) too long

    @property
    def cause(self) -> str:
        """`deepgram 401`, `deepgram ClientConnectorError`: provider and status, else error type."""
        return f"{self.provider} {self.status if self.status is not None else self.error}"

    @classmethod
    def of(cls, provider: str, error: BaseException, *, refused: bool) -> SttFailure:
        status = error.status_code if isinstance(error, APIStatusError) and error.status_code >= 0 else None
        return cls(provider.lower(), _error_type(error), status, refused)

    @property
    def fields(self) -> dict[str, Any]:
        """What a log record says of it, in structured fields."""
        return {"provider": self.provider, "status": self.status, "error": self.error}


def _error_type(error: BaseException) -> str:
    """The type of what went wrong underneath the plugin's wrapping: the first error in the chain that is
    not an `APIError`, else the type the plugin names in its message (`failed to connect to deepgram
    (ClientConnectorError)`: it raises `from None`, and the framework re-raises the error while handling
    a `StopAsyncIteration`, which replaces its context), else the error's own type."""
    if isinstance(error, APIStatusError):
        return type(error).__name__
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            break
        if not isinstance(seen, APIError | StopAsyncIteration):
            return type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    if isinstance(error, APIError) and (named := _NAMED_TYPE.search(error.message)):
        return named.group(1)
    return type(error).__name__


_NAMED_TYPE = re.compile(r"\((\w+(?:Error|Exception|Timeout))\)$")


class StreamTimes:
    """Where a stream's times lie on the speaker's audio timeline: from `origin` (its t=0), plus the audio
    spliced out of the stream before them."""

    def __init__(self, origin: float = 0.0) -> None:
        self.origin = origin
        self.heard_s = 0.0  # audio the stream was sent
        self._skips: list[tuple[float, float]] = []  # (stream time, audio skipped until then, in all)

    def sent(self, frame: rtc.AudioFrame) -> None:
        self.heard_s += frame.samples_per_channel / frame.sample_rate

    def skipped(self, seconds: float) -> None:
        """Audio of the timeline never sent to the stream, at the point it has reached."""
        if seconds > 0:
            total = (self._skips[-1][1] if self._skips else 0.0) + seconds
            self._skips.append((self.heard_s, total))

    def to_timeline(self, stream_t: float) -> float:
        """A time of the stream on the timeline (at a splice: after it, where the speech came back)."""
        i = bisect.bisect_right(self._skips, stream_t + _EPS, key=lambda skip: skip[0])
        return self.origin + stream_t + (self._skips[i - 1][1] if i else 0.0)


_EPS = 1e-6


@dataclass(slots=True)
class Backoff:
    initial_s: float = 0.1
    max_s: float = 5.0
    report_after: int = 5  # consecutive failures before a clear error is logged

    def delay(self, failures: int) -> float:
        return min(self.max_s, self.initial_s * (2 ** max(0, failures - 1)))


class SttLink:
    """One speaker's STT stream, (re)opened by `run` with the replay of what is not finalized, until the
    input has ended and the stream drained, the provider refused, or the link gave up."""

    def __init__(
        self,
        *,
        stt: stt.STT,
        language: str,
        speaker: str,
        replay: ReplayBuffer,
        clock: Clock,
        backoff: Backoff | None = None,
        drain_idle_s: float = 1.5,
        give_up_after_s: float | None = None,
        on_fault: Callable[[bool], None] | None = None,
        on_sent: Callable[[float], None] | None = None,
    ) -> None:
        self._stt = stt
        self._language = language
        self._speaker = speaker
        self._replay = replay
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._drain_idle_s = drain_idle_s
        self._give_up_after_s = give_up_after_s  # None: never give up on an outage while audio flows
        self._on_sent = on_sent  # told the seconds of every frame sent (usage)
        self._provider = ""
        self._failures = 0  # failures in a row
        self._down_since: float | None = None  # clock time of the first failure in a row
        self._stream: SpeechStream | None = None
        self.times = StreamTimes()  # the current stream's times on the audio timeline
        self.dropouts = DropoutSplice()  # a dropout's silence never reaches the stream as a pause
        self.input_done = asyncio.Event()
        self.reconnects = 0
        self.fault = FaultFlag(on_fault)  # down once the link has failed `report_after` times running
        self.failure: SttFailure | None = None  # set when the link stopped reaching for the STT

    @property
    def up(self) -> bool:
        """A stream is open: live audio goes to it."""
        return self._stream is not None

    def push(self, frame: rtc.AudioFrame, voicing: Voicing = Voicing.QUIET) -> bool:
        """Send a live frame (it stays in the replay buffer until finalized), unless it is a dropout's, held
        back (`voicing`: what the ears' gate made of it); True when it went (with what was held before it,
        if the gap was silence after all). False while the link is down or the frame is held."""
        passed = self.dropouts.hear(frame, voicing)
        if self._stream is None or not passed.frames:
            return False
        if passed.skipped_s:  # a dropout spliced out: the stream's times after it shift by its length
            self.times.skipped(passed.skipped_s)
            metrics.DROPOUTS_SPLICED.inc()
        for sent in passed.frames:
            # a closing stream refuses it; the frame stays pending for the next stream
            with contextlib.suppress(RuntimeError):
                self._stream.push_frame(sent)
                self._sent(sent)
        return True

    def to_timeline(self, stream_t: float) -> float:
        """Where a time the current stream gives (a word's start or end) lies on the audio timeline."""
        return self.times.to_timeline(stream_t)

    def flush(self) -> None:
        """Ask the STT to finalize what it heard so far (Deepgram's Finalize)."""
        if self._stream is not None:
            with contextlib.suppress(RuntimeError):
                self._stream.flush()

    def end_input(self) -> None:
        """No more audio will come: what was heard is still finalized, then `run` ends."""
        self.input_done.set()
        if self._stream is not None:
            with contextlib.suppress(RuntimeError):  # a closing stream: its input has ended anyway
                self._stream.end_input()

    async def close(self) -> None:
        if self._stream is not None:
            await close_stream(self._stream)
            self._stream = None

    async def run(self, on_event: Callable[[stt.SpeechEvent], bool], on_open: Callable[[], None]) -> None:
        """Hand every STT event to `on_event` (True: the event proves the link works); `on_open` is told
        when a stream has been opened (and the replay sent)."""
        self._provider = self._stt.provider.lower()
        while True:
            if self.input_done.is_set() and not self._replay:
                return  # stopped before anything was heard: nothing to recognize
            stream = self._open()
            on_open()
            try:
                await self._hear(stream, on_event)
                if self.input_done.is_set():
                    return  # the input ended and the stream drained: done
                raise ConnectionError("speech stream ended early")
            except STT_OUTAGES as e:
                if isinstance(e, APIError) and not e.retryable:
                    self._refused(SttFailure.of(self._provider, e, refused=True))
                    return
                failure = SttFailure.of(self._provider, e, refused=False)
                delay = self._outage(failure)
            finally:
                self._stream = None
                await close_stream(stream)
            if self._ends(failure):
                return
            await asyncio.sleep(delay)

    async def _hear(self, stream: SpeechStream, on_event: Callable[[stt.SpeechEvent], bool]) -> None:
        async with contextlib.aclosing(_drained(stream, self.input_done, self._drain_idle_s)) as events:
            async for event in events:
                if on_event(event):
                    self._failures, self._down_since = 0, None
                    self.fault.set(False)

    def _outage(self, failure: SttFailure) -> float:
        """The stream failed: count it, report it (a fault from `report_after` failures in a row on);
        the delay before the next try."""
        self._failures += 1
        failures = self._failures
        self._down_since = self._clock() if self._down_since is None else self._down_since
        self.reconnects += 1
        metrics.STT_RECONNECTS.inc()
        delay = self._backoff.delay(failures)
        log = logger.error if failures >= self._backoff.report_after else logger.warning
        if failures >= self._backoff.report_after:
            self.fault.set(True)
        log(
            "speech recognition stream failed (%s); reconnecting",
            failure.cause,
            extra={"speaker": self._speaker, "failures": failures, "retry_in_s": delay, **failure.fields},
        )
        return delay

    def _ends(self, failure: SttFailure) -> bool:
        """After an outage: True when the link gives up (the input ended, or it was down too long)."""
        failures = self._failures
        if self.input_done.is_set() and (not self._replay or failures >= self._backoff.report_after):
            if self._replay:
                self._give_up(
                    failure,
                    "input ended while speech recognition was down (%s); unrecognized audio remains",
                    failure.cause,
                )
            return True
        assert self._down_since is not None
        down_for = self._clock() - self._down_since
        if self._give_up_after_s is not None and down_for >= self._give_up_after_s:
            detail = failure.status if failure.status is not None else failure.error
            self._give_up(
                failure,
                "speech recognition given up: %s unreachable for %.0f s (%s)",
                failure.provider,
                down_for,
                detail,
            )
            return True
        return False

    def _refused(self, failure: SttFailure) -> None:
        """The provider refused the request: asking again cannot help (a wrong or revoked key, a request
        it does not accept). Stop, show the fault, say so once."""
        self.failure = failure
        self.fault.set(True)
        logger.error(
            "speech recognition refused (%s): not retried; no longer listening to this speaker",
            failure.cause,
            extra={"speaker": self._speaker, **failure.fields},
        )

    def _give_up(self, failure: SttFailure, message: str, *args: object) -> None:
        self.failure = failure
        self.fault.set(True)
        logger.error(
            message, *args, extra={"speaker": self._speaker, "failures": self._failures, **failure.fields}
        )

    def _sent(self, frame: rtc.AudioFrame) -> None:
        """A frame went to the STT (a replayed one too: it is billed again)."""
        self.times.sent(frame)
        if self._on_sent is not None:
            self._on_sent(frame.samples_per_channel / frame.sample_rate)

    def _open(self) -> SpeechStream:
        stream = self._stt.stream(language=stt_language(self._language), conn_options=STT_CONN_OPTIONS)
        # replay what was not finalized (and what arrived while the link was down), then go live
        self.times = StreamTimes(self._replay.start)
        self.dropouts.forget()
        for frame in self._replay.frames():
            stream.push_frame(frame)
            self._sent(frame)
        if self.input_done.is_set():
            stream.end_input()
        self._stream = stream
        return stream


async def _drained(
    stream: SpeechStream, input_done: asyncio.Event, idle_s: float
) -> AsyncGenerator[stt.SpeechEvent, None]:
    """The stream's events. Once the input has ended, a quiet spell of `idle_s` counts as drained: the
    plugin's own stream lingers for its keep-alive period after the last result. (The spell starts when
    the input ends, even if the stream is silent then.)"""
    events = aiter(stream)
    ended: asyncio.Future[Any] = asyncio.ensure_future(input_done.wait())
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            if not ended.done():
                await asyncio.wait({pending, ended}, return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.wait({pending}, timeout=idle_s)
                if not pending.done():
                    return
            if not pending.done():
                continue  # the input ended: from now on a quiet spell ends the stream
            try:
                event: stt.SpeechEvent = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield event
    finally:
        ended.cancel()
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
