"""A scripted Deepgram live-transcription server (the `/v1/listen` websocket) for hermetic tests.

The same server also speaks Deepgram Flux at `/v2/listen` (`flux_url`; turns, eager end of turn,
`flux_timing`, the records `flux_turns` and the `flux_*_sent` counts): tests/fakes/flux.py describes it. It
shares the script, `transcript_for`, `recognizer_for`, languages, `api_key`, `refuse_next`, the
`close_after_audio_s` / `drop_after_audio_s` faults and `connections`; `flux_error_after_audio_s` is its own.
What follows is `/v1/listen` (nova-3).

It cannot recognise speech. An energy VAD over the received linear16 audio finds speech segments, and each
finished segment is answered with the next scripted transcript; word times are on the connection's own
audio timeline, which restarts at 0 on every new connection, as Deepgram's does.

Server messages, as the livekit deepgram plugin parses them:
- `SpeechStarted` when a segment starts (only if the query has `vad_events=true`);
- interim `Results` (`is_final` false) about every `interim_every_s` of speech, with a growing prefix of
  the next transcript (only if `interim_results=true`);
- a final `Results` (`is_final` and `speech_final` true) after `endpointing` ms of silence;
- with `max_segment_s`, a final `Results` (`is_final` true, `speech_final` false) once a segment of
  continuous speech lasted that long on the audio timeline; the speech goes on in a new segment;
- on `{"type":"Finalize"}` a final `Results` for the open segment at once, with `from_finalize` true and
  `speech_final` false (Deepgram does not mark a forced flush as an endpoint, so the plugin emits
  FINAL_TRANSCRIPT there but no END_OF_SPEECH); speech after the Finalize point is a new segment;
- on `{"type":"CloseStream"}` the same flush, then a `Metadata` message and a normal close;
- an endpoint-only `Results` (`is_final` and `speech_final` true, empty transcript, no words) when the
  endpoint comes after the speech was already finalized (by a Finalize or a `max_segment_s` cut), as
  Deepgram does: the plugin reports END_OF_SPEECH for it and no transcript.

Interims grow as prefixes of the final unless `interims` scripts them: Deepgram revises interims, so the
texts given for a transcript are sent in turn (the last one repeated), whether or not they are prefixes of
the final. An empty scripted transcript (`""`) is a segment Deepgram heard as nothing: its final is a
`Results` with an empty transcript (after any scripted interims, as when noise was first taken for words).

Faults, as Deepgram shows them: `refuse_next` answers handshakes with an HTTP status and Deepgram's error
body (`err_code`, `err_msg`, `request_id`, and the `dg-error` header); with `api_key` set, a handshake
with another key gets 401 (`INVALID_AUTH`); a handshake missing `model`, `language`, `encoding` or
`sample_rate` gets 400 (Deepgram itself refuses an `encoding` without `sample_rate` and defaults the
rest: the fake is stricter, so a request that Deepgram would hear with the wrong model, language or
audio format fails loudly); `close_after_audio_s` closes the websocket with a close code and reason
(1011 `NET-0000`/`NET-0001`, 1008 `DATA-0000`); `drop_after_audio_s` drops the TCP connection.

Every final is held back by the finalize delay (`finalize_delay_s`, or a sampled `finalize_delay`) from the
moment it was due (endpoint detected, segment too long, Finalize received); `DeepgramFinal.delay_s` says by
how much. Finals of a connection are sent in order, so a final due while an earlier one is still held waits
for it too: `delay_s` then includes that wait.

Code switching (`language=multi`, nova-3): every `Results` of such a connection carries, as Deepgram's
multilingual code-switching documentation shows, each word's `language` and the alternative's `languages`
(every language of its words, most words first; of languages with as many words, the first heard first).
`languages` says which language a scripted transcript is in: one code for all its words, or one code per
word (a code-switched sentence); a transcript it does not name (and `transcript_for`'s) is in
`default_language` (English). Interims carry the languages of their words (a prefix of the final's). An
empty result (no words) carries no `languages` (what Deepgram sends there was not checked). Connections
with another `language` get neither field, as from Deepgram.

Timed recognition (`recognizer_for`, `tests/fakes/timed_words.py`): a connection given a `TimedRecognizer`
hears words by time instead of the script: its voice activity is the recognizer's (the words of the
microphone's timeline, not the audio's energy), its interims and finals carry the words whose midpoint lies
in the segment, unless their audio was lost on the way; every other behaviour is the same.

A segment with no scripted transcript left is ignored, unless `transcript_for(duration_s)` makes one (see
`numbered_words`). Interims need to know the transcript in advance: they come from the script, or from
`transcript_for.preview(duration_s)` when it has one (as `numbered_words` does), else they carry the
placeholder `INTERIM_PLACEHOLDER` (their times are right all the same); with neither, none are sent.

Punctuation (`comma_pause_s`, off by default; `tests/fakes/punctuation.py`): Deepgram punctuates, putting a
comma where the speaker pauses briefly between clauses. With `comma_pause_s` set, the silences of at least
that long between voiced audio inside a segment are recorded, and a `transcript_for` with `with_pauses` (as
`numbered_words`) puts a comma after the word before each, in the segment's interims and final alike; an
interim then ends with no period (the speech goes on: only a final closes the sentence).
Scripted transcripts and a timed recognizer's words are not changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes import flux
from tests.fakes._server import FakeServer, abort_connection
from tests.fakes.audio_clock import AudioClock
from tests.fakes.flux import FluxTiming, FluxTurn
from tests.fakes.latency_model import Delay
from tests.fakes.punctuation import PauseLog, make, punctuate, tell, unfinished
from tests.fakes.timed_words import TimedRecognizer

logger = logging.getLogger(__name__)

ANY_LANGUAGE = "*"
_EPS = 1e-6  # timeline comparisons: 0.9 - 0.6 must count as 0.3
DEFAULT_ENDPOINTING_MS = 300
INTERIM_PLACEHOLDER = "…"  # an interim's text when transcript_for cannot preview what the final will say
REQUIRED_QUERY = ("model", "language", "encoding", "sample_rate")
MULTI = "multi"  # the `language` of code switching
# close codes and reasons as Deepgram sends them (its streaming error documentation; the reasons as seen
# from the service)
CLOSE_NO_AUDIO = (
    1011,
    "Deepgram did not receive audio data or a text message within the timeout window. "
    "See https://dpgr.am/net0001",
)
CLOSE_NO_RESPONSE = (
    1011,
    "Deepgram did not provide a response message within the timeout window. See https://dpgr.am/net0000",
)
CLOSE_UNDECODABLE = (1008, "DATA-0000")
_ERROR_CODES = {
    400: "Bad Request",
    401: "INVALID_AUTH",
    402: "ASR_PAYMENT_REQUIRED",
    403: "INSUFFICIENT_PERMISSIONS",
}


@dataclass
class DeepgramConnection:
    """What one websocket connection asked for and sent."""

    index: int
    query: dict[str, str]
    authorization: str | None
    audio_s: float = 0.0
    control_messages: list[str] = field(default_factory=list)
    dropped: bool = False
    closed: bool = False  # the handler is done with this connection, for whatever reason
    close_stream_handled: bool = False  # closed normally after the client's CloseStream
    close_code: int | None = None  # closed by the fake with this code (close_after_audio_s)


@dataclass(frozen=True)
class DeepgramFinal:
    """A final transcript the fake sent; start/end are on that connection's audio timeline."""

    transcript: str
    start: float
    end: float
    connection: int
    from_finalize: bool = False
    delay_s: float = 0.0  # how long the fake held it back after it was due
    finalized_at: float | None = None  # a Finalize's: the audio received when it came (where the cut is)


@dataclass(frozen=True)
class IgnoredSegment:
    """A finished speech segment that got no transcript because the script was exhausted."""

    start: float
    end: float
    connection: int


@dataclass(frozen=True)
class _SpeechStarted:
    timestamp: float


@dataclass(frozen=True)
class _Result:
    start: float
    end: float
    is_final: bool
    speech_final: bool = False
    from_finalize: bool = False
    interim_words: int = 0
    delay_s: float = 0.0  # finals: the sampled finalize delay
    due_at: float = 0.0  # finals: loop time when it became due
    endpoint_only: bool = False  # the endpoint of speech already finalized: an empty transcript
    finalized_at: float | None = None  # a Finalize's: where on the timeline it came (all audio sent)
    pauses: tuple[float, ...] = ()  # where the pauses inside it start, from its start (`comma_pause_s`)


@dataclass(frozen=True)
class _Close:
    pass


_Outgoing = _SpeechStarted | _Result | _Close

TranscriptFor = Callable[[float], str]


class NumberedWords:
    """Transcripts "w1 w2 w3." of `max(1, round(duration_s * rate_wps))` words, numbered on across calls so
    every transcript is unique. `preview` tells the next transcript without using the numbers up.
    `with_pauses` (`tests/fakes/punctuation.py`) puts a comma at each pause: the words are taken as said
    one after another at `rate_wps` from the speech's start (word k, from 0, ends at (k + 1) / rate_wps s),
    and the comma goes after the last word ending at or before the pause's start."""

    def __init__(self, rate_wps: float = 2.5) -> None:
        if rate_wps <= 0:
            raise ValueError("rate_wps must be positive")
        self.rate_wps = rate_wps
        self.next_number = 1

    def count(self, duration_s: float) -> int:
        return max(1, round(duration_s * self.rate_wps))

    def preview(self, duration_s: float) -> str:
        return self.with_pauses(duration_s, (), preview=True)

    def __call__(self, duration_s: float) -> str:
        return self.with_pauses(duration_s, ())

    def with_pauses(self, duration_s: float, pauses_s: Sequence[float], *, preview: bool = False) -> str:
        count, first = self.count(duration_s), self.next_number
        words = [f"w{n}" for n in range(first, first + count)]
        text = punctuate(words, [(k + 1) / self.rate_wps for k in range(count)], pauses_s, duration_s)
        if not preview:
            self.next_number += count
        return text


def numbered_words(rate_wps: float = 2.5) -> NumberedWords:
    """A `transcript_for` for FakeDeepgram: unique numbered words at `rate_wps` words per second of speech."""
    return NumberedWords(rate_wps)


def _query_bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.lower() == "true"


def _endpointing_s(value: str | None) -> float:
    if value is None or not value.isdigit():  # absent or "false"
        return DEFAULT_ENDPOINTING_MS / 1000
    return int(value) / 1000


class _Listener(AudioClock):
    """VAD and timeline of one connection; queues what should be sent, the sender renders it."""

    def __init__(
        self,
        record: DeepgramConnection,
        *,
        vad_threshold: float,
        interim_every_s: float,
        max_segment_s: float | None = None,
        final_delay: Callable[[], float] = lambda: 0.0,
        recognizer: TimedRecognizer | None = None,
        comma_pause_s: float | None = None,
    ) -> None:
        query = record.query
        super().__init__(
            record,
            sample_rate=int(query.get("sample_rate", "16000")),
            vad_threshold=vad_threshold,
            recognizer=recognizer,
        )
        self.record: DeepgramConnection = record
        self.endpointing_s = _endpointing_s(query.get("endpointing"))
        self.vad_events = _query_bool(query.get("vad_events"), False)
        self.interim_results = _query_bool(query.get("interim_results"), False)
        self.outbox: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._interim_every_s = interim_every_s
        self._max_segment_s = max_segment_s
        self._final_delay = final_delay
        self._segment_start: float | None = None
        self._segment_end = 0.0
        self._interims = 0
        # speech since the last endpoint, maybe cut into several segments (by Finalize or max_segment_s)
        self._in_speech = False
        self._voice_end = 0.0
        self._pauses = PauseLog(comma_pause_s)  # the pauses inside the open segment

    def _on_window(self, voiced: bool, start: float, end: float) -> None:
        if voiced:
            self._on_voice(start, end)
        elif self._in_speech and end - self._voice_end >= self.endpointing_s - _EPS:
            self._in_speech = False
            if self._segment_start is None:  # finalized already (a Finalize or a cut): the endpoint alone
                self.outbox.put_nowait(
                    _Result(
                        self._segment_end,
                        end,
                        is_final=True,
                        speech_final=True,
                        endpoint_only=True,
                        delay_s=self._final_delay(),
                        due_at=asyncio.get_running_loop().time(),
                    )
                )
            else:
                self.finalize(speech_final=True)

    def _on_voice(self, start: float, end: float) -> None:
        if self._segment_start is None:
            self._segment_start = start
            self._interims = 0
            self._pauses.start(start)
            if self.vad_events and not self._in_speech:
                self.outbox.put_nowait(_SpeechStarted(timestamp=start))
        self._in_speech = True
        self._voice_end = end
        self._segment_end = end
        self._pauses.voiced(start, end)
        if self._max_segment_s is not None and end - self._segment_start >= self._max_segment_s - _EPS:
            self.finalize(speech_final=False)  # too long: the speech goes on in a new segment
            return
        next_interim_at = (self._interims + 1) * self._interim_every_s - _EPS
        if self.interim_results and end - self._segment_start >= next_interim_at:
            self._interims += 1
            self.outbox.put_nowait(
                _Result(
                    self._segment_start,
                    end,
                    is_final=False,
                    interim_words=self._interims,
                    pauses=self._pauses.starts(),
                )
            )

    def finalize(self, *, speech_final: bool, from_finalize: bool = False) -> None:
        if self._segment_start is None:
            return
        self.outbox.put_nowait(
            _Result(
                self._segment_start,
                self._segment_end,
                is_final=True,
                speech_final=speech_final,
                from_finalize=from_finalize,
                delay_s=self._final_delay(),
                due_at=asyncio.get_running_loop().time(),
                finalized_at=self._samples / self.sample_rate if from_finalize else None,
                pauses=self._pauses.starts(),
            )
        )
        self._segment_start = None


def _plain_word(word: str) -> str:
    return re.sub(r"[^\w'-]", "", word).lower()


def _results_message(
    words: list[str],
    item: _Result,
    *,
    request_id: str,
    confidence: float = 0.99,
    word_languages: list[str] | None = None,
) -> dict[str, Any]:
    """`word_languages` (language=multi): each word's language, one per word."""
    step = (item.end - item.start) / len(words) if words else 0.0
    timed: list[dict[str, Any]] = [
        {
            "word": _plain_word(w),
            "punctuated_word": w,
            "start": round(item.start + i * step, 3),
            "end": round(item.start + (i + 1) * step, 3),
            "confidence": confidence,
        }
        for i, w in enumerate(words)
    ]
    alternative: dict[str, Any] = {"transcript": " ".join(words), "confidence": confidence, "words": timed}
    if word_languages is not None and words:
        for word, language in zip(timed, word_languages, strict=True):
            word["language"] = language
        counts = {code: word_languages.count(code) for code in dict.fromkeys(word_languages)}
        # most words first; a stable sort keeps languages with as many words in the order first heard
        alternative["languages"] = sorted(counts, key=lambda code: -counts[code])
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": round(item.end - item.start, 3),
        "start": round(item.start, 3),
        "is_final": item.is_final,
        "speech_final": item.speech_final,
        "from_finalize": item.from_finalize,
        "channel": {"alternatives": [alternative]},
        "metadata": {
            "request_id": request_id,
            "model_info": {"name": "fake-nova-3", "version": "0", "arch": "fake"},
            "model_uuid": "00000000-0000-0000-0000-000000000000",
        },
    }


class FakeDeepgram(FakeServer):
    """Deepgram live STT at `/v1/listen`; `transcripts` are handed out in order, one per speech segment.

    `transcripts` may also map a language (the connection's `language` query) to its own script, so
    speakers of different languages, each on their own connection, can speak at the same time.

    `finalize_delay` (sampled per final with the fake's `random.Random(seed)`) replaces `finalize_delay_s`.
    `max_segment_s` cuts continuous speech into segments of at most that long (audio timeline).
    `transcript_for(duration_s)` makes the transcript of a segment the script has none left for.
    `interims` maps a scripted transcript to the interims sent before its final (revisions, see above).
    `api_key`: when set, only `Authorization: Token <api_key>` is let in.
    `languages` maps a transcript to its language (or one per word), for `language=multi` connections;
    `default_language` is the language of the others. Scripts may be keyed by `multi` too.
    `flux_timing`: when Flux's Updates and ends of turn come (`/v2/listen`, tests/fakes/flux.py); Flux
    connections use the script keyed `en` (flux-general-en) or `multi` (flux-general-multi), else the
    unkeyed one.
    `comma_pause_s` (None: off): a silence at least this long between voiced audio inside a segment (a
    turn) is punctuated with a comma in what `transcript_for` makes of it, when it can place commas
    (`tests/fakes/punctuation.py`).
    """

    def __init__(
        self,
        transcripts: list[str] | Mapping[str, list[str]] | None = None,
        *,
        finalize_delay_s: float = 0.0,
        vad_threshold: float = 0.02,
        interim_every_s: float = 0.5,
        finalize_delay: Delay | None = None,
        max_segment_s: float | None = None,
        transcript_for: TranscriptFor | None = None,
        seed: int | None = None,
        interims: Mapping[str, list[str]] | None = None,
        api_key: str | None = None,
        languages: Mapping[str, str | Sequence[str]] | None = None,
        default_language: str = "en",
        flux_timing: FluxTiming | None = None,
        comma_pause_s: float | None = None,
    ) -> None:
        super().__init__()
        if comma_pause_s is not None and comma_pause_s <= 0:
            raise ValueError("comma_pause_s must be positive")
        if max_segment_s is not None and max_segment_s <= 0:
            raise ValueError("max_segment_s must be positive")
        self.scripts: dict[str, list[str]] = (
            {lang: list(t) for lang, t in transcripts.items()}
            if isinstance(transcripts, Mapping)
            else {ANY_LANGUAGE: list(transcripts or [])}
        )
        self.finalize_delay_s = finalize_delay_s
        self.finalize_delay = finalize_delay
        self.vad_threshold = vad_threshold
        self.interim_every_s = interim_every_s
        self.max_segment_s = max_segment_s
        self.transcript_for = transcript_for
        self.rng = random.Random(seed)
        self.interims = {final: list(texts) for final, texts in (interims or {}).items()}
        self.api_key = api_key
        self.languages = dict(languages or {})
        self.default_language = default_language
        self.flux_timing = flux_timing or FluxTiming()
        self.comma_pause_s = comma_pause_s
        self.placeholder = INTERIM_PLACEHOLDER  # Flux's Updates when transcript_for cannot preview
        # a timed recognizer for a new connection (None: the script, as ever): see tests/fakes/timed_words.py
        self.recognizer_for: Callable[[DeepgramConnection], TimedRecognizer | None] | None = None
        # records
        self.connections: list[DeepgramConnection] = []
        self.finals: list[DeepgramFinal] = []
        self.ignored_segments: list[IgnoredSegment] = []
        self.interims_sent = 0
        self.endpoints_only_sent = 0  # endpoint-only Results (empty transcript, speech_final)
        self.refused = 0
        self.refusals: list[int] = []  # the HTTP status of every refused handshake, in order
        self.flux_turns: list[FluxTurn] = []  # every turn of every Flux connection, in order
        self.flux_eager_sent = 0  # EagerEndOfTurn messages
        self.flux_resumed_sent = 0  # TurnResumed messages
        self.flux_end_of_turn_sent = 0  # EndOfTurn messages
        # script and faults
        self._next: dict[str, int] = dict.fromkeys(self.scripts, 0)
        self.script_lock = asyncio.Lock()
        self._drop_after_s: float | None = None
        self._close_after: tuple[float, int, str] | None = None
        self._flux_error_after: tuple[float, str, str] | None = None
        self._refuse_remaining = 0
        self._refuse_status = 503
        self._close_stream_handled = asyncio.Event()

    def _setup(self, app: web.Application) -> None:
        app.router.add_get("/v1/listen", self._listen)
        app.router.add_get("/v2/listen", self._listen_flux)

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1/listen"

    @property
    def flux_url(self) -> str:
        """Deepgram Flux's `/v2/listen` (tests/fakes/flux.py), for `deepgram.STTv2(base_url=...)`."""
        return f"{self.root_url}/v2/listen"

    @property
    def transcripts(self) -> list[str]:
        return [t for script in self.scripts.values() for t in script]

    @property
    def remaining_transcripts(self) -> list[str]:
        return [t for lang in self.scripts for t in self.remaining_for(lang)]

    def _script_key(self, language: str | None) -> str:
        return language if language in self.scripts else ANY_LANGUAGE

    def remaining_for(self, language: str | None) -> list[str]:
        key = self._script_key(language)
        return self.scripts.get(key, [])[self._next.get(key, 0) :]

    def use_script(self, language: str | None) -> None:
        """The next scripted transcript for `language` was sent: on to the one after it."""
        key = self._script_key(language)
        self._next[key] = self._next.get(key, 0) + 1  # a script added after start counts too

    def _word_languages(self, query_language: str | None, transcript: str, count: int) -> list[str] | None:
        """The languages of the first `count` words of `transcript`, on a `language=multi` connection."""
        if query_language != MULTI:
            return None
        return self.word_languages(transcript, count)

    def word_languages(self, transcript: str, count: int) -> list[str]:
        """The languages of the first `count` words of `transcript` (`languages`, `default_language`)."""
        given = self.languages.get(transcript, self.default_language)
        codes = [given] if isinstance(given, str) else list(given)
        if not codes:
            raise ValueError(f"no language given for the transcript {transcript!r}")
        return [codes[min(i, len(codes) - 1)] for i in range(count)]

    def _sample_final_delay(self) -> float:
        if self.finalize_delay is not None:
            return self.finalize_delay.sample(self.rng)
        return max(0.0, self.finalize_delay_s)

    def drop_after_audio_s(self, seconds: float) -> None:
        """Once: abort the current connection (no finalize) after it received `seconds` of audio."""
        self._drop_after_s = seconds

    def close_after_audio_s(self, seconds: float, close: tuple[int, str] = CLOSE_NO_RESPONSE) -> None:
        """Once: close the current connection with Deepgram's close `(code, reason)` after it received
        `seconds` of audio (nothing pending is finalized first)."""
        self._close_after = (seconds, *close)

    def flux_error_after_audio_s(
        self, seconds: float, code: str = "INTERNAL_SERVER_ERROR", description: str = "Internal server error."
    ) -> None:
        """Once: the current Flux connection sends Deepgram's v2 `Error` message with `code` and
        `description` after it received `seconds` of audio, then closes (1011)."""
        self._flux_error_after = (seconds, code, description)

    def refuse_next(self, n: int = 1, status: int = 503) -> None:
        """Reject the next `n` websocket handshakes with HTTP `status`."""
        self._refuse_remaining = n
        self._refuse_status = status

    def _refuse(self, status: int, message: str) -> web.Response:
        """A handshake refused as Deepgram refuses one: the status, its error body, `dg-error`."""
        self.refused += 1
        self.refusals.append(status)
        logger.info("fake deepgram: refusing a handshake with %d", status)
        request_id = str(uuid.uuid4())
        body = {"err_code": _ERROR_CODES.get(status, "SERVICE_UNAVAILABLE"), "err_msg": message}
        return web.json_response(
            {**body, "request_id": request_id},
            status=status,
            headers={"dg-error": message, "dg-request-id": request_id},
        )

    def _let_in(self, request: web.Request) -> web.Response | None:
        """The refusal of a handshake (scripted, or another key), else None."""
        if self._refuse_remaining > 0:
            self._refuse_remaining -= 1
            return self._refuse(self._refuse_status, "scripted refusal")
        if self.api_key is not None and request.headers.get("Authorization") != f"Token {self.api_key}":
            return self._refuse(401, "Invalid credentials.")
        return None

    def record_connection(self, request: web.Request) -> DeepgramConnection:
        record = DeepgramConnection(
            index=len(self.connections),
            query=dict(request.query),
            authorization=request.headers.get("Authorization"),
        )
        self.connections.append(record)
        return record

    def track_websocket(self, ws: web.WebSocketResponse, open_: bool) -> None:
        """Keep an open websocket for aclose() to close (open_ False: it is done)."""
        if open_:
            self._websockets.add(ws)
        else:
            self._websockets.discard(ws)

    def audio_fault(self, record: DeepgramConnection) -> str | tuple[int, str] | None:
        """After audio arrived: "drop" to abort the connection, a `(code, reason)` to close it with, or
        None (`drop_after_audio_s`, `close_after_audio_s`; each once)."""
        if self._drop_after_s is not None and record.audio_s >= self._drop_after_s:
            self._drop_after_s = None
            record.dropped = True
            logger.info("fake deepgram: dropping connection %d", record.index)
            return "drop"
        if self._close_after is not None and record.audio_s >= self._close_after[0]:
            _, code, reason = self._close_after
            self._close_after = None
            record.close_code = code
            logger.info("fake deepgram: closing connection %d with %d", record.index, code)
            return code, reason
        return None

    async def end_on_audio_fault(
        self,
        record: DeepgramConnection,
        request: web.Request,
        ws: web.WebSocketResponse,
        sender: asyncio.Task[None],
    ) -> bool:
        """Apply a fault due after the audio that arrived (`audio_fault`): True when the connection ended."""
        fault = self.audio_fault(record)
        if fault is None:
            return False
        sender.cancel()
        if isinstance(fault, tuple):
            code, reason = fault
            await ws.close(code=code, message=reason.encode())
        else:
            abort_connection(request)
        return True

    def due_flux_error(self, record: DeepgramConnection) -> tuple[str, str] | None:
        """After audio arrived on a Flux connection: the `(code, description)` of an Error now due."""
        if self._flux_error_after is not None and record.audio_s >= self._flux_error_after[0]:
            _, code, description = self._flux_error_after
            self._flux_error_after = None
            logger.info("fake deepgram: Flux error on connection %d", record.index)
            return code, description
        return None

    def close_stream_handled(self) -> None:
        self._close_stream_handled.set()

    def record_flux_step(self, connection: int, step: flux.TurnStep, transcript: str) -> None:
        """A TurnInfo was sent on a Flux connection."""
        if step.event == "StartOfTurn":
            self.flux_turns.append(FluxTurn(connection, step.turn_index, step.start))
        turn = next(
            t
            for t in reversed(self.flux_turns)
            if (t.connection, t.turn_index) == (connection, step.turn_index)
        )
        turn.events.append(flux.FluxEvent(step.event, step.at, transcript))
        if step.event == "EagerEndOfTurn":
            self.flux_eager_sent += 1
        elif step.event == "TurnResumed":
            self.flux_resumed_sent += 1
        elif step.event == "EndOfTurn":
            self.flux_end_of_turn_sent += 1
            turn.end, turn.transcript, turn.trigger = step.speech_end, transcript, step.trigger
            logger.info("fake deepgram: end of turn %d on Flux connection %d", step.turn_index, connection)

    async def _listen_flux(self, request: web.Request) -> web.StreamResponse:
        if (refusal := self._let_in(request)) is not None:
            return refusal
        if (problem := flux.handshake_problem(request.query)) is not None:
            return self._refuse(400, problem)
        return await flux.serve(self, request)

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        if (refusal := self._let_in(request)) is not None:
            return refusal
        if missing := [name for name in REQUIRED_QUERY if not request.query.get(name)]:
            return self._refuse(400, f"Bad Request: missing query parameter(s): {', '.join(missing)}")

        record = self.record_connection(request)
        listener = _Listener(
            record,
            vad_threshold=self.vad_threshold,
            interim_every_s=self.interim_every_s,
            max_segment_s=self.max_segment_s,
            final_delay=self._sample_final_delay,
            recognizer=self.recognizer_for(record) if self.recognizer_for is not None else None,
            comma_pause_s=self.comma_pause_s,
        )
        ws = await self.open_socket(request)
        request_id = str(uuid.uuid4())
        sender = asyncio.create_task(self._send_loop(ws, listener, request_id))
        close_requested = False
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    listener.feed(msg.data)
                    if await self.end_on_audio_fault(record, request, ws, sender):
                        break
                elif msg.type == WSMsgType.TEXT:
                    kind = str(json.loads(msg.data).get("type", ""))
                    record.control_messages.append(kind)
                    if kind == "Finalize":
                        listener.flush()
                        listener.finalize(speech_final=False, from_finalize=True)
                    elif kind == "CloseStream":
                        listener.flush()
                        listener.finalize(speech_final=False, from_finalize=True)
                        listener.outbox.put_nowait(_Close())
                        close_requested = True
                        break
        finally:
            await self.finish_socket(record, ws, sender, close_requested=close_requested)
        return ws

    async def open_socket(self, request: web.Request) -> web.WebSocketResponse:
        """A connection's websocket (v1 or Flux), open and tracked."""
        ws = web.WebSocketResponse(timeout=1.0)
        await ws.prepare(request)
        self.track_websocket(ws, True)
        return ws

    async def finish_socket(
        self,
        record: DeepgramConnection,
        ws: web.WebSocketResponse,
        sender: asyncio.Task[None],
        *,
        close_requested: bool,
    ) -> None:
        """A connection is over: after the client's CloseStream (`close_requested`), what is left to send
        goes first and the close counts as handled (unless the fake closed it with a code); then the sender
        stops and the connection is closed in the records."""
        try:
            if close_requested:
                with contextlib.suppress(ConnectionError):
                    await sender
                if record.close_code is None:
                    record.close_stream_handled = True
                    self.close_stream_handled()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
            self.track_websocket(ws, False)
            record.closed = True

    async def wait_close_stream_handled(self) -> None:
        """Wait until a connection was closed after the client's CloseStream, so every final was delivered.
        (The plugin's own stream ends up to 5 s later: its KeepAlive task sleeps 5 s between pings.)"""
        await self._close_stream_handled.wait()

    async def _send_loop(self, ws: web.WebSocketResponse, listener: _Listener, request_id: str) -> None:
        loop = asyncio.get_running_loop()
        held_until = 0.0  # loop time the previous final was held until: finals go out in order
        while True:
            item = await listener.outbox.get()
            if isinstance(item, _Close):
                await ws.send_json(
                    {
                        "type": "Metadata",
                        "transaction_key": "deprecated",
                        "request_id": request_id,
                        "sha256": "",
                        "duration": round(listener.record.audio_s, 3),
                        "channels": 1,
                    }
                )
                await ws.close()
                return
            if isinstance(item, _SpeechStarted):
                started = {"type": "SpeechStarted", "channel": [0], "timestamp": round(item.timestamp, 3)}
                await ws.send_json(started)
            elif item.is_final:
                delay_s = item.delay_s
                if item.due_at + delay_s < held_until:
                    delay_s = held_until - item.due_at
                held_until = item.due_at + delay_s
                wait_s = held_until - loop.time()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                if item.endpoint_only:
                    await ws.send_json(_results_message([], item, request_id=request_id))
                    self.endpoints_only_sent += 1
                else:
                    await self._send_final(ws, listener, item, request_id, delay_s)
            else:
                language = listener.record.query.get("language")
                words = self._interim_words(listener, item)
                if words:
                    remaining = self.remaining_for(language)
                    final = remaining[0] if remaining else ""
                    languages = self._word_languages(language, final, len(words))
                    await ws.send_json(
                        _results_message(words, item, request_id=request_id, word_languages=languages)
                    )
                    self.interims_sent += 1

    def _interim_words(self, listener: _Listener, item: _Result) -> list[str]:
        language = listener.record.query.get("language")
        if listener.recognizer is not None:
            return [w.word for w in listener.recognizer.words(item.start, item.end, final=False)]
        remaining = self.remaining_for(language)
        if remaining and remaining[0] in self.interims:
            revisions = self.interims[remaining[0]]
            return revisions[min(item.interim_words, len(revisions)) - 1].split() if revisions else []
        if remaining:
            return remaining[0].split()[: item.interim_words]
        if self.transcript_for is None:
            return []
        text = tell(self.transcript_for, item.end - item.start, item.pauses)
        if text is not None and self.comma_pause_s is not None:
            text = unfinished(text)
        return text.split() if text is not None else [INTERIM_PLACEHOLDER]

    async def _send_final(
        self, ws: web.WebSocketResponse, listener: _Listener, item: _Result, request_id: str, delay_s: float
    ) -> None:
        index = listener.record.index
        language = listener.record.query.get("language")
        if listener.recognizer is not None:
            await self._send_heard(ws, listener, item, request_id, delay_s)
            return
        async with self.script_lock:
            remaining = self.remaining_for(language)
            if remaining:
                transcript = remaining[0]
            elif self.transcript_for is not None:
                transcript = make(self.transcript_for, item.end - item.start, item.pauses)
            else:
                logger.info("fake deepgram: script exhausted, ignoring a segment")
                self.ignored_segments.append(IgnoredSegment(item.start, item.end, index))
                return
            words = transcript.split()
            languages = self._word_languages(language, transcript, len(words))
            await ws.send_json(_results_message(words, item, request_id=request_id, word_languages=languages))
            # consumed only once it was handed to the socket: a segment cut off earlier is not
            if remaining:
                self.use_script(language)
            self.finals.append(
                DeepgramFinal(
                    transcript, item.start, item.end, index, item.from_finalize, delay_s, item.finalized_at
                )
            )
            logger.info("fake deepgram: sent final #%d on connection %d", len(self.finals), index)

    async def _send_heard(
        self, ws: web.WebSocketResponse, listener: _Listener, item: _Result, request_id: str, delay_s: float
    ) -> None:
        """A final of a connection with a timed recognizer: the words heard in the segment, by time."""
        assert listener.recognizer is not None
        heard = listener.recognizer.words(item.start, item.end, cut_at=item.finalized_at)
        words = [w.word for w in heard]
        multi = listener.record.query.get("language") == MULTI
        languages = [w.language for w in heard] if multi else None
        await ws.send_json(_results_message(words, item, request_id=request_id, word_languages=languages))
        final = DeepgramFinal(
            " ".join(words),
            item.start,
            item.end,
            listener.record.index,
            item.from_finalize,
            delay_s,
            item.finalized_at,
        )
        self.finals.append(final)
