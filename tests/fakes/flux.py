"""Deepgram Flux (`/v2/listen`) for the fake Deepgram: the turn state machine, the messages, the connection.

`FakeDeepgram` (tests/fakes/deepgram.py) serves it at `/v2/listen` next to nova-3's `/v1/listen`, with the
same script, `transcript_for`, `recognizer_for`, languages, faults and records. Like the v1 fake it cannot
recognise speech: the VAD (or the timed recognizer) says when someone speaks, the script says what.

Handshake: `model` must be `flux-general-en` or `flux-general-multi`, `encoding=linear16` and `sample_rate`
are required, `eot_threshold` in 0.5–1.0 (default 0.7), `eager_eot_threshold` in 0.3–0.9 and not above
`eot_threshold`, `eot_timeout_ms` a positive integer (default 5000); anything else is refused with 400 in
Deepgram's error body, as the v1 fake refuses (and `api_key`'s 401 and `refuse_next` are the same).

Server messages (shapes from Deepgram's Flux API reference, as its Python SDK types them): `Connected`
(`request_id`, `sequence_id` 0) first; then `TurnInfo` messages `{"type":"TurnInfo","request_id",
"sequence_id","event","turn_index","audio_window_start","audio_window_end","transcript","words":[{"word",
"confidence"}],"end_of_turn_confidence"}` (words carry no times; `sequence_id` counts every message sent);
with `flux-general-multi`, `languages` too (the turn's languages, most words first: the same `languages` /
`default_language` as the v1 fake's code switching; none on a message without words).

Turns, all on the received audio's timeline (`tests/fakes/audio_clock.py`; the audio clock, not the wall
clock, so what is sent is deterministic):
- speech heard with no turn open starts one: `StartOfTurn` (no words yet);
- an `Update` every `FluxTiming.update_every_s` (0.25 s) of audio while the turn is open, with the turn's
  transcript so far: a growing prefix of the turn's scripted transcript (one more word per Update in which
  speech was heard, as the v1 fake's interims), or `transcript_for.preview` of the speech so far, or the
  timed recognizer's words; `INTERIM_PLACEHOLDER` when none can tell;
- when the speech stops, the end of turn is due `eot_delay` (sampled, default 0.26 ± 0.06 s) of audio after
  the speech ended, or `eot_timeout_ms` after it when that is sooner (then `trigger` is `timeout`, else
  `model`); with an `eager_eot_threshold` (query or Configure), `EagerEndOfTurn` is due `eager_lead`
  (sampled, 0.2 ± 0.05 s) before it, but not sooner than `eager_floor_s` (0.05 s) after the speech ended;
- `EndOfTurn` (with `trigger`) carries the turn's whole transcript: the next scripted transcript (one per
  turn, used up then), or `transcript_for(speech length)`, or the recognizer's words; an `EagerEndOfTurn`
  carries the same transcript the EndOfTurn will, were the speech not to resume; then `turn_index` grows;
- speech again before the end of turn: the turn goes on (no message: a pause shorter than the delay does not
  end a turn), but after an `EagerEndOfTurn` a `TurnResumed` comes first, and Updates go on. With
  `transcript_for` or a recognizer the turn's transcript then grows (the next EagerEndOfTurn / EndOfTurn
  carries the whole turn); a scripted turn's transcript is its whole scripted text from the first
  EagerEndOfTurn on (the script cannot tell which of its words were said before the pause);
- punctuation (`comma_pause_s`, tests/fakes/punctuation.py): a silence at least that long between voiced
  audio inside the turn is a comma after the word before it in what `transcript_for` makes (Updates,
  EagerEndOfTurn, EndOfTurn); an Update sent while the speaker pauses tells the speech so far, so a pause
  going on for `comma_pause_s` already ends it with a comma (the EndOfTurn's last word has the period; an
  Update's never does: the speech goes on);
- between an `EagerEndOfTurn` and what follows it (`TurnResumed` or `EndOfTurn`) no Update is sent (not
  checked against Deepgram);
- `audio_window_start` is the turn's start, `audio_window_end` the audio heard when the message was due (for
  the EndOfTurn, the speech end plus the end-of-turn delay); `end_of_turn_confidence` is 0.05 while speech is
  heard, 0.2 in a pause, the eager threshold on an EagerEndOfTurn and the eot threshold on an EndOfTurn.

Client messages: `{"type":"CloseStream"}` ends the open turn at once (an `EndOfTurn` with what was heard,
`trigger` `manual`) and the fake closes normally; `{"type":"ForceEndTurn"}` ends the open turn the same way
and goes on; `{"type":"Configure","thresholds":{...},"keyterms":[...]}` updates the thresholds (checked as at
the handshake) and is answered `ConfigureSuccess` (the thresholds now in force, `keyterms`) or
`ConfigureFailure`; any other text is answered with an `Error` (`UNPARSABLE_CLIENT_MESSAGE`, as Deepgram's
agent API names it) and a close (1008).

Errors in the stream are Deepgram's v2 `{"type":"Error","sequence_id","code","description"}`, then a close
(1011 for the fake's `error_after_audio_s`; the close codes Deepgram uses after an Error were not checked):
the livekit plugin logs the Error and raises `APIStatusError` (status = the close code) on the close. The v1
faults `close_after_audio_s` and `drop_after_audio_s` work on v2 connections too.

Records (on the FakeDeepgram): `connections` (v1 and v2 alike), `flux_turns` (every turn: its events with
their times on the audio timeline and transcripts; its speech start and end, final transcript and trigger),
and the counts `flux_eager_sent`, `flux_resumed_sent`, `flux_end_of_turn_sent`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tests.fakes.audio_clock import AudioClock
from tests.fakes.latency_model import Delay
from tests.fakes.punctuation import PauseLog, make, tell, unfinished
from tests.fakes.timed_words import TimedRecognizer

if TYPE_CHECKING:
    from tests.fakes.deepgram import DeepgramConnection, FakeDeepgram

logger = logging.getLogger(__name__)

FLUX_MODELS = ("flux-general-en", "flux-general-multi")
FLUX_MULTI = "flux-general-multi"
DEFAULT_EOT_THRESHOLD = 0.7
DEFAULT_EOT_TIMEOUT_MS = 5000
_EPS = 1e-6
# end_of_turn_confidence while speech is heard / in a pause (below any eager threshold, 0.3 at least)
SPEAKING_CONFIDENCE = 0.05
PAUSED_CONFIDENCE = 0.2
WORD_CONFIDENCE = 0.99
CLOSE_AFTER_ERROR = 1011
EOT_DELAY = Delay(0.26, 0.06)  # FluxTiming's defaults (see there)
EAGER_LEAD = Delay(0.2, 0.05)
CLOSE_UNPARSABLE = 1008


@dataclass(frozen=True)
class FluxTiming:
    """When Flux speaks, in seconds of received audio.

    - update_every_s: Deepgram's Flux state guide: an `Update` about every 0.25 s of audio;
    - eot_delay: Deepgram: end of turn about 260 ms after the speech ends at p50 (the jitter is assumed);
    - eager_lead: how much sooner the EagerEndOfTurn comes: Telnyx's and Deepgram's figures, eager saves
      about 150–250 ms (no published figure for eager alone);
    - eager_floor_s: the EagerEndOfTurn comes at least this long after the speech ended (assumed)."""

    update_every_s: float = 0.25
    eot_delay: Delay = EOT_DELAY
    eager_lead: Delay = EAGER_LEAD
    eager_floor_s: float = 0.05

    def __post_init__(self) -> None:
        if self.update_every_s <= 0:
            raise ValueError("update_every_s must be positive")
        if self.eager_floor_s < 0:
            raise ValueError("eager_floor_s cannot be negative")


@dataclass(frozen=True)
class FluxSettings:
    """A connection's end-of-turn settings (query, then Configure)."""

    eot_threshold: float = DEFAULT_EOT_THRESHOLD
    eager_eot_threshold: float | None = None
    eot_timeout_ms: int = DEFAULT_EOT_TIMEOUT_MS

    def check(self) -> None:
        """Raise ValueError with Deepgram-like wording when a setting is out of range."""
        if not 0.5 <= self.eot_threshold <= 1.0:
            raise ValueError(f"eot_threshold must be between 0.5 and 1.0, not {self.eot_threshold}")
        if self.eager_eot_threshold is not None:
            if not 0.3 <= self.eager_eot_threshold <= 0.9:
                raise ValueError(
                    f"eager_eot_threshold must be between 0.3 and 0.9, not {self.eager_eot_threshold}"
                )
            if self.eager_eot_threshold > self.eot_threshold:
                raise ValueError("eager_eot_threshold must not exceed eot_threshold")
        if self.eot_timeout_ms <= 0:
            raise ValueError(f"eot_timeout_ms must be positive, not {self.eot_timeout_ms}")

    def updated(self, thresholds: Mapping[str, Any]) -> FluxSettings:
        """These settings with a Configure's `thresholds` applied (checked)."""
        settings = FluxSettings(
            eot_threshold=float(thresholds.get("eot_threshold", self.eot_threshold)),
            eager_eot_threshold=(
                float(thresholds["eager_eot_threshold"])
                if thresholds.get("eager_eot_threshold") is not None
                else self.eager_eot_threshold
            ),
            eot_timeout_ms=int(thresholds.get("eot_timeout_ms", self.eot_timeout_ms)),
        )
        settings.check()
        return settings

    def thresholds(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"eot_threshold": self.eot_threshold, "eot_timeout_ms": self.eot_timeout_ms}
        if self.eager_eot_threshold is not None:
            shown["eager_eot_threshold"] = self.eager_eot_threshold
        return shown


def handshake_problem(query: Mapping[str, str]) -> str | None:
    """Why Flux would refuse this query with 400 (None: let in)."""
    if query.get("model") not in FLUX_MODELS:
        return f"Bad Request: model must be one of {', '.join(FLUX_MODELS)} on /v2/listen"
    if query.get("encoding") != "linear16":
        return "Bad Request: encoding=linear16 is required"
    if not query.get("sample_rate", "").isdigit():
        return "Bad Request: sample_rate is required"
    try:
        settings_from(query).check()
    except ValueError as e:
        return f"Bad Request: {e}"
    return None


def settings_from(query: Mapping[str, str]) -> FluxSettings:
    """The settings a query asks for (ValueError when a number is not one)."""
    eager = query.get("eager_eot_threshold")
    return FluxSettings(
        eot_threshold=float(query.get("eot_threshold", DEFAULT_EOT_THRESHOLD)),
        eager_eot_threshold=float(eager) if eager else None,
        eot_timeout_ms=int(query.get("eot_timeout_ms", DEFAULT_EOT_TIMEOUT_MS)),
    )


@dataclass(frozen=True)
class FluxEvent:
    """A TurnInfo the fake sent: its event, the audio heard when it was due, its transcript."""

    event: str  # StartOfTurn, Update, EagerEndOfTurn, TurnResumed, EndOfTurn
    at: float
    transcript: str


@dataclass
class FluxTurn:
    """One turn of a Flux connection; times on that connection's audio timeline."""

    connection: int
    turn_index: int
    start: float  # the speech start
    events: list[FluxEvent] = field(default_factory=list)
    end: float | None = None  # the speech end, once the turn ended
    transcript: str | None = None  # the EndOfTurn's
    trigger: str | None = None  # the EndOfTurn's: model, timeout, manual

    @property
    def kinds(self) -> list[str]:
        return [e.event for e in self.events]

    def at(self, event: str) -> float | None:
        """When the first `event` of the turn was due (None: never sent)."""
        return next((e.at for e in self.events if e.event == event), None)


@dataclass(frozen=True)
class TurnStep:
    """A TurnInfo due: the turn's speech so far ran from `start` to `speech_end`; `at` is the audio heard."""

    event: str
    turn_index: int
    start: float
    speech_end: float
    at: float
    words: int = 0  # Updates: how many of a scripted transcript's words were heard
    trigger: str | None = None
    confidence: float = SPEAKING_CONFIDENCE
    pauses: tuple[float, ...] = ()  # where the pauses inside the speech start, from `start` (comma_pause_s)


@dataclass(frozen=True)
class _Configured:
    request: dict[str, Any]
    settings: FluxSettings | None  # None: refused


@dataclass(frozen=True)
class _Fail:
    code: str
    description: str
    close_code: int


@dataclass(frozen=True)
class _Close:
    pass


_Outgoing = TurnStep | _Configured | _Fail | _Close


class FluxTurns(AudioClock):
    """The turn state machine of one Flux connection: queues the TurnInfos due, the sender renders them."""

    def __init__(
        self,
        record: DeepgramConnection,
        *,
        vad_threshold: float,
        timing: FluxTiming,
        sample: Callable[[Delay], float],
        recognizer: TimedRecognizer | None = None,
        comma_pause_s: float | None = None,
    ) -> None:
        super().__init__(
            record,
            sample_rate=int(record.query["sample_rate"]),
            vad_threshold=vad_threshold,
            recognizer=recognizer,
        )
        self.record: DeepgramConnection = record
        self.settings = settings_from(record.query)
        self.timing = timing
        self.outbox: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self.turn_index = 0
        self._sample = sample
        self._start: float | None = None  # the open turn's speech start
        self._speech_end = 0.0
        self._updates = 0
        self._words = 0
        self._voiced_since_update = False
        self._paused = False
        self._eager_at: float | None = None
        self._eager_sent = False
        self._eot_at = 0.0
        self._trigger = "model"
        self._pauses = PauseLog(comma_pause_s)  # the pauses inside the open turn

    @property
    def in_turn(self) -> bool:
        return self._start is not None

    def _emit(self, event: str, at: float, **extra: Any) -> None:
        assert self._start is not None
        # an Update in a pause tells the speech so far: the pause going on is in it (once long enough)
        pauses = self._pauses.starts(now=at if event == "Update" and self._paused else None)
        step = TurnStep(
            event, self.turn_index, self._start, self._speech_end, at, self._words, pauses=pauses, **extra
        )
        self.outbox.put_nowait(step)

    def _on_window(self, voiced: bool, start: float, end: float) -> None:
        if voiced:
            if self._start is None:
                self._pauses.start(start)
            self._pauses.voiced(start, end)
            if self._start is None:
                self._start, self._speech_end = start, end
                self._updates = self._words = 0
                self._emit("StartOfTurn", end)
            elif self._paused and self._eager_sent:
                self._speech_end = end
                self._emit("TurnResumed", end)
            self._paused = self._eager_sent = False
            self._speech_end = end
            self._voiced_since_update = True
        elif self._start is not None and not self._paused:
            self._pause()
        if self._start is None:
            return
        if end - self._start >= (self._updates + 1) * self.timing.update_every_s - _EPS:
            self._updates += 1
            if self._voiced_since_update:
                self._words += 1
                self._voiced_since_update = False
            if not self._eager_sent:
                confidence = PAUSED_CONFIDENCE if self._paused else SPEAKING_CONFIDENCE
                self._emit("Update", end, confidence=confidence)
        if not self._paused:
            return
        if self._eager_at is not None and not self._eager_sent and end >= self._eager_at - _EPS:
            self._eager_sent = True
            self._emit("EagerEndOfTurn", end, confidence=self.settings.eager_eot_threshold)
        if end >= self._eot_at - _EPS:
            self._end_turn(end, self._trigger)

    def _pause(self) -> None:
        """The speech stopped: when the end of turn (and the eager one) are due."""
        self._paused = True
        model_s = self._sample(self.timing.eot_delay)
        timeout_s = self.settings.eot_timeout_ms / 1000
        delay_s, self._trigger = (timeout_s, "timeout") if timeout_s < model_s else (model_s, "model")
        self._eot_at = self._speech_end + delay_s
        self._eager_at = None
        if self.settings.eager_eot_threshold is not None:
            eager_at = max(
                self._speech_end + self.timing.eager_floor_s,
                self._eot_at - self._sample(self.timing.eager_lead),
            )
            if eager_at < self._eot_at - _EPS:
                self._eager_at = eager_at

    def _end_turn(self, at: float, trigger: str) -> None:
        self._emit("EndOfTurn", at, trigger=trigger, confidence=self.settings.eot_threshold)
        self.turn_index += 1
        self._start = None
        self._paused = self._eager_sent = False

    def force_end(self) -> None:
        """End the open turn now (CloseStream, ForceEndTurn), with what was heard."""
        self.flush()
        if self._start is not None:
            self._end_turn(self.heard_s, "manual")

    def configure(self, request: dict[str, Any]) -> None:
        try:
            self.settings = self.settings.updated(request.get("thresholds") or {})
        except (TypeError, ValueError):
            self.outbox.put_nowait(_Configured(request, None))
            return
        self.outbox.put_nowait(_Configured(request, self.settings))

    def fail(self, code: str, description: str, close_code: int = CLOSE_AFTER_ERROR) -> None:
        self.outbox.put_nowait(_Fail(code, description, close_code))


def turn_info(
    step: TurnStep,
    words: list[str],
    *,
    request_id: str,
    languages: list[str] | None = None,
) -> dict[str, Any]:
    """A TurnInfo message (the sender adds its `sequence_id`); `languages` (multi): each word's language."""
    message: dict[str, Any] = {
        "type": "TurnInfo",
        "request_id": request_id,
        "event": step.event,
        "turn_index": step.turn_index,
        "audio_window_start": round(step.start, 3),
        "audio_window_end": round(step.at, 3),
        "transcript": " ".join(words),
        "words": [{"word": w, "confidence": WORD_CONFIDENCE} for w in words],
        "end_of_turn_confidence": step.confidence,
    }
    if step.trigger is not None:
        message["trigger"] = step.trigger
    if languages is not None and words:
        counts = {code: languages.count(code) for code in dict.fromkeys(languages)}
        message["languages"] = sorted(counts, key=lambda code: -counts[code])  # stable: first heard first
    return message


class _TurnText:
    """What a connection's turns say: the script, `transcript_for` or the timed recognizer."""

    def __init__(self, fake: FakeDeepgram, turns: FluxTurns) -> None:
        self.fake = fake
        self.turns = turns
        self.multi = turns.record.query.get("model") == FLUX_MULTI
        self.script_language = "multi" if self.multi else "en"  # scripts keyed by `multi` serve multi
        self._made: tuple[int, float, str] | None = None  # transcript_for's answer for (turn, speech length)
        self._eager_turn: int | None = None  # the last turn an EagerEndOfTurn was sent for

    def words(self, step: TurnStep) -> tuple[list[str], list[str] | None]:
        """The words of a TurnInfo and, with multi, their languages; EndOfTurn uses the script's up."""
        if step.event == "EagerEndOfTurn":
            self._eager_turn = step.turn_index
        recognizer = self.turns.recognizer
        if recognizer is not None:
            final = step.event == "EndOfTurn"
            ending = step.event in ("EagerEndOfTurn", "EndOfTurn")
            heard = recognizer.words(step.start, step.speech_end if ending else step.at, final=final)
            return [w.word for w in heard], [w.language for w in heard] if self.multi else None
        remaining = self.fake.remaining_for(self.script_language)
        if remaining:
            scripted = remaining[0]
            words = scripted.split()
            if step.event in ("StartOfTurn", "Update") and not self._past_eager(step):
                words = words[: step.words]
            if step.event == "EndOfTurn":
                self.fake.use_script(self.script_language)
            return words, self._languages(scripted, len(words))
        transcript_for = self.fake.transcript_for
        if transcript_for is None:
            return [], None
        length = step.speech_end - step.start
        told = None
        if step.event in ("StartOfTurn", "Update", "TurnResumed", "EagerEndOfTurn"):
            told = tell(transcript_for, length, step.pauses)  # what it will answer, not used up
        if told is not None:
            text = told
            if self.fake.comma_pause_s is not None and step.event != "EagerEndOfTurn":
                text = unfinished(text)
        elif step.event in ("StartOfTurn", "Update", "TurnResumed"):
            return [self.fake.placeholder], None
        elif self._made is not None and self._made[:2] == (step.turn_index, length):
            text = self._made[2]  # the EndOfTurn after an EagerEndOfTurn: the same transcript
        else:
            text = make(transcript_for, length, step.pauses)
            self._made = (step.turn_index, length, text)
        return text.split(), self._languages(text, len(text.split()))

    def _past_eager(self, step: TurnStep) -> bool:
        return self._eager_turn == step.turn_index

    def _languages(self, transcript: str, count: int) -> list[str] | None:
        if not self.multi:
            return None
        return self.fake.word_languages(transcript, count)


async def serve(fake: FakeDeepgram, request: web.Request) -> web.StreamResponse:
    """One `/v2/listen` websocket, after the handshake was let in."""
    record = fake.record_connection(request)
    turns = FluxTurns(
        record,
        vad_threshold=fake.vad_threshold,
        timing=fake.flux_timing,
        sample=lambda delay: delay.sample(fake.rng),
        recognizer=fake.recognizer_for(record) if fake.recognizer_for is not None else None,
        comma_pause_s=fake.comma_pause_s,
    )
    ws = await fake.open_socket(request)
    request_id = str(uuid.uuid4())
    sender = asyncio.create_task(_send_loop(fake, ws, turns, request_id))
    close_requested = False
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                turns.feed(msg.data)
                if await fake.end_on_audio_fault(record, request, ws, sender):
                    break
                if (error := fake.due_flux_error(record)) is not None:
                    turns.fail(*error)
                    close_requested = True
                    break
            elif msg.type == WSMsgType.TEXT:
                try:
                    message = json.loads(msg.data)
                    kind = str(message.get("type", ""))
                except (ValueError, AttributeError):
                    message, kind = {}, ""
                record.control_messages.append(kind)
                if kind == "CloseStream":
                    turns.force_end()
                    turns.outbox.put_nowait(_Close())
                    close_requested = True
                    break
                if kind == "ForceEndTurn":
                    turns.force_end()
                elif kind == "Configure":
                    turns.configure(message)
                else:
                    turns.fail(
                        "UNPARSABLE_CLIENT_MESSAGE",
                        "Text message received from client did not match any of the formats we expect.",
                        CLOSE_UNPARSABLE,
                    )
                    close_requested = True
                    break
    finally:
        await fake.finish_socket(record, ws, sender, close_requested=close_requested)
    return ws


async def _send_loop(
    fake: FakeDeepgram, ws: web.WebSocketResponse, turns: FluxTurns, request_id: str
) -> None:
    text = _TurnText(fake, turns)
    sequence = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal sequence
        await ws.send_json({**message, "sequence_id": sequence})
        sequence += 1

    await send({"type": "Connected", "request_id": request_id})
    while True:
        item = await turns.outbox.get()
        if isinstance(item, _Close):
            await ws.close()
            return
        if isinstance(item, _Fail):
            turns.record.close_code = item.close_code
            await send({"type": "Error", "code": item.code, "description": item.description})
            await ws.close(code=item.close_code, message=item.code.encode())
            return
        if isinstance(item, _Configured):
            if item.settings is None:
                await send({"type": "ConfigureFailure", "request_id": request_id})
            else:
                keyterms = item.request.get("keyterms") or []
                await send(
                    {
                        "type": "ConfigureSuccess",
                        "request_id": request_id,
                        "thresholds": item.settings.thresholds(),
                        "keyterms": keyterms,
                    }
                )
            continue
        async with fake.script_lock:
            words, languages = text.words(item)
            message = turn_info(item, words, request_id=request_id, languages=languages)
            await send(message)
        fake.record_flux_step(turns.record.index, item, message["transcript"])
