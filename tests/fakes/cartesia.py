"""A Cartesia TTS server for hermetic tests: the `/tts/websocket` streaming endpoint and `/tts/bytes`.

Speech is a sine tone, `freq_for(transcript)` Hz for `max(0.1, len(transcript.strip()) * seconds_per_char)`
seconds, so a test can tell which text became which audio and how long it should last.

Websocket messages, in the shapes the livekit cartesia plugin parses:
- audio: `{"type": "chunk", "context_id": C, "data": "<base64 s16le>", "done": false, ...}`, `chunk_ms` each;
- word timings, if the request had `add_timestamps` (the plugin sends it by default):
  `{"type": "timestamps", "context_id": C, "word_timestamps": {"words", "start", "end"}, ...}`;
- after a message with `continue: false` and all its context's audio: `{"type": "done", "done": true, ...}`.
Messages of one context are answered in order; contexts on one socket interleave.

Errors as Cartesia documents them (API version 2026-03-01 and later): on the websocket
`{"type": "error", "done": true, "status_code", "error_code", "title", "message", "request_id",
"context_id"}` (`done` is always true on an error), for a context refused before any audio
(`error_next`) or after some of its audio was sent (`error_next_context_after`); at the handshake, an
HTTP status with `{"error_code", "title", "message", "request_id"}` (`refuse_handshakes`: 401 for a bad
key, 429 over the concurrency limit).

Voice cloning (`POST /voices/clone`, multipart `clip`, `name`, `language`, optional `description`,
`base_voice_id`; answered with the new voice, `{"id", "name", "description", "language", "is_owner",
"is_public", "created_at"}`) and `DELETE /voices/{id}` (204; 404 with Cartesia's error body for a voice it
does not have). Every clone request is recorded as a `CloneRequest` (the clip's WAV duration and RMS, so a
test can tell speech from silence); scripted faults: `refuse_clones` (a status with Cartesia's error body),
`clone_delay_s` (a slow answer), `fail_deletes`, `refuse_deletes` (a status, e.g. 403, for every delete).

The account's voices (`GET /voices`), as Cartesia's API (2025-04-16) lists them: cursor pagination,
`limit` (1-100, default 10), `starting_after` (a voice id: the page after it), `is_owner` (`true`: only
the account's own); answered `{"data": [voice, ...], "has_more": bool, "next_page": the last id or null}`,
in the order the voices were made. `add_voice` puts voices there (another app's clone, a voice of the
user's own, an old clone of ours); `list_requests` records each listing's query.

Latency model: a context's first audio waits `ttfb` (sampled per context with the fake's
`random.Random(seed)`; recorded in `ttfb_by_context`) or else `ttfb_s`; with `rtf` > 0 each chunk then
takes `rtf` times its audio duration to send.

Silence around a context's speech: `tail_s` seconds of silence end each context's audio, sent as
ordinary audio chunks after its last transcript's speech and before `done` (a model that ends an utterance
with a pause does that); `lead_s` likewise starts it, before the first speech. How much silence Cartesia
itself puts there is not documented (the real figure is unknown): both default to 0, today's fake.

Speaking rate: a message's speed is `generation_config.speed` (what the livekit plugin sends for sonic-3
with the current API version) or `voice.__experimental_controls.speed` (what it sends with api_version
2024-11-13), a number, default 1.0; its audio lasts `duration_for(transcript) / speed`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import random
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from tests.fakes._server import FakeServer, abort_connection
from tests.fakes.latency_model import Delay

logger = logging.getLogger(__name__)

FreqFor = Callable[[str], float]


def _constant_440(_: str) -> float:
    return 440.0


def requested_speed(data: dict[str, Any]) -> float:
    """The speaking rate a Cartesia request asks for: `generation_config.speed`, else
    `voice.__experimental_controls.speed`; 1.0 when absent or not a positive number."""
    candidates: list[object] = []
    generation_config = data.get("generation_config")
    if isinstance(generation_config, dict):
        candidates.append(generation_config.get("speed"))
    voice = data.get("voice")
    if isinstance(voice, dict):
        controls = voice.get("__experimental_controls")
        if isinstance(controls, dict):
            candidates.append(controls.get("speed"))
    for speed in candidates:
        if speed is None:
            continue
        if isinstance(speed, int | float) and not isinstance(speed, bool) and speed > 0:
            return float(speed)
        logger.warning("fake cartesia: ignoring a speed it cannot apply: %r", speed)
    return 1.0


_ERRORS = {  # status → (error_code, title, message), in Cartesia's words
    401: ("unauthorized", "Unauthorized", "Invalid API key."),
    429: ("concurrency_limited", "Concurrency limit exceeded", "Too many concurrent requests."),
    500: ("internal_error", "Internal Server Error", "An internal error occurred."),
    400: ("bad_request", "Bad Request", "The clip could not be used to clone a voice."),
    402: ("payment_required", "Payment Required", "Voice cloning is not available on this plan."),
    404: ("not_found", "Not Found", "Voice not found."),
    403: ("forbidden", "Forbidden", "You do not have permission to delete this voice."),
}


def requested_voice(data: dict[str, Any]) -> str | None:
    """The voice id of a generation request (`voice: {"mode": "id", "id": ...}`, as the livekit plugin
    sends it); None for an embedding or no voice."""
    voice = data.get("voice")
    if isinstance(voice, dict) and voice.get("mode") == "id" and isinstance(voice.get("id"), str):
        return str(voice["id"])
    return None


def error_frame(context_id: str, status: int = 500) -> dict[str, Any]:
    """A websocket error message exactly as Cartesia documents it."""
    code, title, message = _ERRORS.get(status, _ERRORS[500])
    return {
        "type": "error",
        "done": True,
        "status_code": status,
        "error_code": code,
        "title": title,
        "message": message,
        "request_id": f"req_{context_id[:12]}",
        "context_id": context_id,
    }


@dataclass(frozen=True, slots=True)
class CloneRequest:
    """One `POST /voices/clone` as received: the form's fields and what the clip holds."""

    name: str
    language: str
    api_key: str | None
    cartesia_version: str | None
    clip_seconds: float  # the WAV's duration
    clip_rms: float  # of its samples, full scale 1.0 (silence: ~0)
    sample_rate: int
    channels: int
    voice_id: str | None  # the voice made, None if refused


@dataclass
class _Context:
    queue: asyncio.Queue[dict[str, Any]]
    error: bool = False
    error_after_chunks: int | None = None
    drop_after_chunks: int | None = None
    chunks_sent: int = 0
    audio_started: bool = False
    ttfb_s: float = 0.0
    task: asyncio.Task[None] | None = None


class _Socket:
    """One websocket connection: its contexts and a lock so that frames of interleaved contexts don't mix."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.request = request
        self.ws = ws
        self.contexts: dict[str, _Context] = {}
        self._lock = asyncio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        async with self._lock:
            await self.ws.send_str(json.dumps(payload))


class FakeCartesia(FakeServer):
    """Cartesia TTS; `base_url` goes to `cartesia.TTS(base_url=...)`. `ttfb` (a Delay) replaces `ttfb_s`."""

    def __init__(
        self,
        *,
        freq_for: FreqFor | None = None,
        seconds_per_char: float = 0.05,
        chunk_ms: int = 40,
        ttfb_s: float = 0.0,
        rtf: float = 0.0,
        word_timestamps: bool = True,
        amplitude: float = 0.3,
        ttfb: Delay | None = None,
        seed: int | None = None,
        tail_s: float = 0.0,
        lead_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.tail_s = tail_s  # silence at the end of each context's audio, before `done`
        self.lead_s = lead_s  # silence at the start of each context's audio
        self.freq_for: FreqFor = freq_for or _constant_440
        self.seconds_per_char = seconds_per_char
        self.chunk_ms = chunk_ms
        self.ttfb_s = ttfb_s
        self.ttfb = ttfb
        self.rng = random.Random(seed)
        self.rtf = rtf
        self.word_timestamps = word_timestamps
        self.amplitude = amplitude
        # records
        self.contexts: dict[str, list[str]] = {}
        self.context_order: list[str] = []
        self.audio_s: dict[str, float] = {}
        self.ttfb_by_context: dict[str, float] = {}  # the time to first audio the fake waited
        self.speed_by_context: dict[str, float] = {}  # the speed of the context's latest message
        # the voice id a context was spoken with: its first message's `voice: {"mode": "id", "id": ...}`
        self.voice_by_context: dict[str, str | None] = {}
        self.bytes_ttfb_s: list[float] = []  # one per /tts/bytes request answered with audio
        self.messages: list[dict[str, Any]] = []  # every websocket message, as received
        self.connections = 0
        self.api_keys: list[str | None] = []  # one per websocket connection and per /tts/bytes request
        self.cartesia_versions: list[str | None] = []
        self.bytes_requests: list[dict[str, Any]] = []
        self.errored_contexts: list[str] = []  # answered with an error frame (before or after audio)
        self.dropped_contexts: list[str] = []
        self.refused_handshakes: list[int] = []  # the status of each websocket handshake refused
        self.clone_requests: list[CloneRequest] = []
        self.voices: set[str] = set()  # the account's voices not deleted yet (clones, and `add_voice`'s)
        self.voice_objects: dict[str, dict[str, Any]] = {}  # id → the voice as listed, in the order made
        self.list_requests: list[dict[str, str]] = []  # the query of every `GET /voices`
        self.refused_deletes: int | None = None  # a status every delete gets (the voice stays)
        self.deleted_voices: list[str] = []
        self.delete_requests = 0
        self.clone_delay_s = 0.0  # before answering a clone request
        self._clone_refusals: list[int] = []
        self._delete_failures = 0
        # faults, applied to the next new contexts (or handshakes)
        self._drop_next_after: int | None = None
        self._error_next_after: int | None = None
        self._errors_remaining = 0
        self._handshake_refusals: list[int] = []

    def _setup(self, app: web.Application) -> None:
        app.router.add_get("/tts/websocket", self._websocket)
        app.router.add_post("/tts/bytes", self._bytes)
        app.router.add_post("/voices/clone", self._clone)
        app.router.add_get("/voices", self._list_voices)
        app.router.add_get("/voices/", self._list_voices)
        app.router.add_delete("/voices/{voice_id}", self._delete_voice)

    @property
    def base_url(self) -> str:
        return self.root_url

    def duration_for(self, transcript: str, speed: float = 1.0) -> float:
        """Seconds of audio the fake produces for one transcript (at a speaking rate `speed`)."""
        return max(0.1, len(transcript.strip()) * self.seconds_per_char) / speed

    def _sample_ttfb(self) -> float:
        return self.ttfb.sample(self.rng) if self.ttfb is not None else max(0.0, self.ttfb_s)

    def synthesize_pcm(self, transcript: str, sample_rate: int, speed: float = 1.0) -> bytes:
        n = round(self.duration_for(transcript, speed) * sample_rate)
        t = np.arange(n) / sample_rate
        tone = self.amplitude * np.sin(2 * np.pi * self.freq_for(transcript) * t)
        return (tone * 32767).astype("<i2").tobytes()

    @staticmethod
    def silence_pcm(seconds: float, sample_rate: int) -> bytes:
        return bytes(2 * round(seconds * sample_rate))

    def drop_next_context_after(self, chunks: int) -> None:
        """Abort the socket once `chunks` audio chunks of the next new context were sent."""
        self._drop_next_after = chunks

    def error_next(self, n: int = 1) -> None:
        """Answer every message of the next `n` new contexts (or /tts/bytes requests) with an error."""
        self._errors_remaining = n

    def error_next_context_after(self, chunks: int) -> None:
        """Send an error frame for the next new context once `chunks` of its audio chunks were sent
        (and nothing more of it)."""
        self._error_next_after = chunks

    def refuse_handshakes(self, status: int, n: int = 1) -> None:
        """Refuse the next `n` websocket handshakes with HTTP `status` (401, 429), Cartesia's error body."""
        self._handshake_refusals.extend([status] * n)

    def refuse_clones(self, status: int, n: int = 1) -> None:
        """Answer the next `n` clone requests with HTTP `status` and Cartesia's error body."""
        self._clone_refusals.extend([status] * n)

    def fail_deletes(self, n: int = 1) -> None:
        """Answer the next `n` deletes with 500 (the voice stays)."""
        self._delete_failures = n

    async def _clone(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        clip = form.get("clip")
        data = clip.file.read() if isinstance(clip, web.FileField) else b""
        with wave.open(io.BytesIO(data), "rb") as wav:
            rate, channels = wav.getframerate(), wav.getnchannels()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        rms = float(np.sqrt(np.mean((samples / 32768.0) ** 2))) if samples.size else 0.0
        status = self._clone_refusals.pop(0) if self._clone_refusals else None
        voice_id = None if status is not None else str(uuid.uuid4())
        self.clone_requests.append(
            CloneRequest(
                name=str(form.get("name", "")),
                language=str(form.get("language", "")),
                api_key=request.headers.get("X-API-Key"),
                cartesia_version=request.headers.get("Cartesia-Version"),
                clip_seconds=samples.size / channels / rate if rate else 0.0,
                clip_rms=rms,
                sample_rate=rate,
                channels=channels,
                voice_id=voice_id,
            )
        )
        await asyncio.sleep(self.clone_delay_s)
        if status is not None or voice_id is None:
            return _error_response(status or 500)
        body = self.add_voice(
            str(form.get("name", "")), str(form.get("description", "")), voice_id=voice_id,
            language=str(form.get("language", "")),
        )  # fmt: skip
        return web.json_response(body)

    def add_voice(
        self,
        name: str,
        description: str = "",
        *,
        voice_id: str | None = None,
        created_at: datetime | None = None,
        is_owner: bool = True,
        language: str = "en",
    ) -> dict[str, Any]:
        """A voice the account holds (listed, deletable), made at `created_at` (now by default)."""
        voice_id = voice_id or str(uuid.uuid4())
        made = (created_at or datetime.now(UTC)).astimezone(UTC)
        voice = {
            "id": voice_id,
            "name": name,
            "description": description,
            "language": language,
            "is_owner": is_owner,
            "is_public": False,
            "created_at": made.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        self.voices.add(voice_id)
        self.voice_objects[voice_id] = voice
        return voice

    def age_voices(self, seconds: float) -> None:
        """Every voice held now was made `seconds` earlier than it says (time passing, for the sweep)."""
        for voice in self.voice_objects.values():
            made = datetime.fromisoformat(voice["created_at"]).timestamp() - seconds
            when = datetime.fromtimestamp(made, UTC).isoformat(timespec="milliseconds")
            voice["created_at"] = when.replace("+00:00", "Z")

    def refuse_deletes(self, status: int | None) -> None:
        """Answer every delete with `status` (e.g. 403) from now on; None: delete again."""
        self.refused_deletes = status

    async def _list_voices(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.list_requests.append(query)
        try:
            limit = int(query.get("limit", "10"))
        except ValueError:
            return _error_response(400)
        if not 1 <= limit <= 100:
            return _error_response(400)
        voices = list(self.voice_objects.values())
        if query.get("is_owner") == "true":
            voices = [v for v in voices if v["is_owner"]]
        if (after := query.get("starting_after")) is not None:
            ids = [v["id"] for v in voices]
            if after not in ids:
                return _error_response(400)
            voices = voices[ids.index(after) + 1 :]
        page = voices[:limit]
        has_more = len(voices) > limit
        body = {"data": page, "has_more": has_more, "next_page": page[-1]["id"] if has_more else None}
        return web.json_response(body)

    async def _delete_voice(self, request: web.Request) -> web.StreamResponse:
        self.delete_requests += 1
        voice_id = request.match_info["voice_id"]
        if self.refused_deletes is not None:
            return _error_response(self.refused_deletes)
        if self._delete_failures > 0:
            self._delete_failures -= 1
            return _error_response(500)
        if voice_id not in self.voices:
            return _error_response(404)
        self.voices.discard(voice_id)
        self.voice_objects.pop(voice_id, None)
        self.deleted_voices.append(voice_id)
        return web.Response(status=204)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        self.api_keys.append(request.headers.get("X-API-Key"))
        self.cartesia_versions.append(request.query.get("cartesia_version"))
        if self._handshake_refusals:
            status = self._handshake_refusals.pop(0)
            self.refused_handshakes.append(status)
            code, title, message = _ERRORS.get(status, _ERRORS[500])
            body = {"error_code": code, "title": title, "message": message, "request_id": "req_handshake"}
            logger.info("fake cartesia: refusing a websocket handshake with %d", status)
            return web.json_response(body, status=status)
        ws = web.WebSocketResponse(timeout=1.0)
        await ws.prepare(request)
        self._websockets.add(ws)
        sock = _Socket(request, ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._accept(sock, json.loads(msg.data))
        finally:
            tasks = [c.task for c in sock.contexts.values() if c.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._websockets.discard(ws)
        return ws

    def _accept(self, sock: _Socket, data: dict[str, Any]) -> None:
        self.messages.append(data)
        context_id = str(data.get("context_id", ""))
        context = sock.contexts.get(context_id)
        if context is None:
            context = sock.contexts[context_id] = _Context(queue=asyncio.Queue())
            if context_id not in self.contexts:
                self.contexts[context_id] = []
                self.context_order.append(context_id)
                self.audio_s[context_id] = 0.0
                self.voice_by_context[context_id] = requested_voice(data)
            if self._errors_remaining > 0:
                self._errors_remaining -= 1
                context.error = True
                self.errored_contexts.append(context_id)
            else:
                if self._drop_next_after is not None:
                    context.drop_after_chunks, self._drop_next_after = self._drop_next_after, None
                if self._error_next_after is not None:
                    context.error_after_chunks, self._error_next_after = self._error_next_after, None
                context.ttfb_s = self.ttfb_by_context[context_id] = self._sample_ttfb()
            context.task = asyncio.create_task(self._run_context(sock, context_id, context))
        self.contexts[context_id].append(str(data.get("transcript", "")))
        context.queue.put_nowait(data)

    async def _run_context(self, sock: _Socket, context_id: str, context: _Context) -> None:
        elapsed_s = 0.0
        with contextlib.suppress(ConnectionError):
            while True:
                data = await context.queue.get()
                if context.error:
                    logger.info("fake cartesia: answering a context with an error")
                    await sock.send(error_frame(context_id))
                    continue
                transcript = str(data.get("transcript", ""))
                speed = self.speed_by_context[context_id] = requested_speed(data)
                sample_rate = int(data.get("output_format", {}).get("sample_rate", 24000))
                if transcript.strip():
                    if not context.audio_started:
                        elapsed_s += self.lead_s  # the words start after the leading silence
                    if not await self._send_audio(sock, context_id, context, transcript, sample_rate, speed):
                        return
                    duration = self.duration_for(transcript, speed)
                    if data.get("add_timestamps") and self.word_timestamps:
                        await sock.send(_timestamps_message(context_id, transcript, elapsed_s, duration))
                    elapsed_s += duration
                if not data.get("continue", False):
                    if context.audio_started and self.tail_s > 0:
                        silence = self.silence_pcm(self.tail_s, sample_rate)
                        if not await self._send_pcm(sock, context_id, context, silence, sample_rate):
                            return
                    if self._should_drop(sock, context_id, context):
                        return
                    await sock.send(
                        {"type": "done", "context_id": context_id, "done": True, "status_code": 206}
                    )

    async def _send_audio(
        self,
        sock: _Socket,
        context_id: str,
        context: _Context,
        transcript: str,
        sample_rate: int,
        speed: float = 1.0,
    ) -> bool:
        """Stream one transcript's audio; False if the socket was dropped on purpose."""
        pcm = self.synthesize_pcm(transcript, sample_rate, speed)
        if not context.audio_started:
            context.audio_started = True
            await asyncio.sleep(context.ttfb_s)
            if self.lead_s > 0:
                pcm = self.silence_pcm(self.lead_s, sample_rate) + pcm
        return await self._send_pcm(sock, context_id, context, pcm, sample_rate)

    async def _send_pcm(
        self, sock: _Socket, context_id: str, context: _Context, pcm: bytes, sample_rate: int
    ) -> bool:
        """Stream audio in `chunk_ms` chunks; False if the socket was dropped on purpose."""
        step = 2 * max(1, sample_rate * self.chunk_ms // 1000)
        for offset in range(0, len(pcm), step):
            if self._should_drop(sock, context_id, context):
                return False
            if context.error_after_chunks is not None and context.chunks_sent >= context.error_after_chunks:
                logger.info("fake cartesia: an error after %d chunks of a context", context.chunks_sent)
                context.error, context.error_after_chunks = True, None  # its later messages: errors too
                self.errored_contexts.append(context_id)
                await sock.send(error_frame(context_id))
                return False
            chunk = pcm[offset : offset + step]
            await sock.send(
                {
                    "type": "chunk",
                    "context_id": context_id,
                    "data": base64.b64encode(chunk).decode(),
                    "done": False,
                    "status_code": 206,
                }
            )
            context.chunks_sent += 1
            seconds = len(chunk) / 2 / sample_rate
            self.audio_s[context_id] += seconds
            if self.rtf > 0:
                await asyncio.sleep(seconds * self.rtf)
        return True

    def _should_drop(self, sock: _Socket, context_id: str, context: _Context) -> bool:
        if context.drop_after_chunks is None or context.chunks_sent < context.drop_after_chunks:
            return False
        logger.info("fake cartesia: dropping the socket after %d chunks", context.chunks_sent)
        context.drop_after_chunks = None
        self.dropped_contexts.append(context_id)
        abort_connection(sock.request)
        return True

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        self.bytes_requests.append(body)
        self.api_keys.append(request.headers.get("X-API-Key"))
        self.cartesia_versions.append(request.headers.get("Cartesia-Version"))
        if self._errors_remaining > 0:
            self._errors_remaining -= 1
            return web.json_response({"error": "scripted error", "status_code": 500}, status=500)
        ttfb_s = self._sample_ttfb()
        self.bytes_ttfb_s.append(ttfb_s)
        await asyncio.sleep(ttfb_s)
        sample_rate = int(body.get("output_format", {}).get("sample_rate", 24000))
        pcm = self.synthesize_pcm(str(body.get("transcript", "")), sample_rate, requested_speed(body))
        return web.Response(body=pcm, content_type="application/octet-stream")


def _error_response(status: int) -> web.Response:
    code, title, message = _ERRORS.get(status, _ERRORS[500])
    body = {"error_code": code, "title": title, "message": message, "request_id": "req_voices"}
    return web.json_response(body, status=status)


def _timestamps_message(
    context_id: str, transcript: str, start_s: float, duration_s: float
) -> dict[str, Any]:
    words = transcript.split()
    step = duration_s / len(words)
    return {
        "type": "timestamps",
        "context_id": context_id,
        "done": False,
        "status_code": 206,
        "word_timestamps": {
            "words": words,
            "start": [round(start_s + i * step, 3) for i in range(len(words))],
            "end": [round(start_s + (i + 1) * step, 3) for i in range(len(words))],
        },
    }
