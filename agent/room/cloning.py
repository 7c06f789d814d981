"""Own voice, opt-in per speaker: a Cartesia voice cloned from the speaker's first seconds of speech.

A speaker consents with the participant attribute `interpreter.voice` = `own` (and the deployment allows
it: `VOICE_CLONING`). From then on the ears hand every frame they receive to `hear` (16 kHz mono s16); the
ears' energy gate (above the room's noise floor: `loops/ears/voicing.py`) keeps the voiced 20 ms frames, in
memory only, in a bounded buffer. Once `min_speech_s`
of speech is held (at most `max_speech_s` is kept), it becomes a WAV in memory and goes to Cartesia's
`POST /voices/clone` (multipart `clip`, `name` = `interp-<12 hex>`, `description` = CLONE_TAG, `language`;
the TTS's key and API version). The answer's `id` is handed to `on_clone(identity, id)` and the book speaks
them with it (`own_voice_handler` also publishes who is heard in their own voice: ATTR_OWN_VOICE). Until
then, or if cloning fails (an error status, or no answer within `timeout_s`), their preset voice speaks.
The clip is never written to disk nor logged, and no log line names the speaker or the voice.
The name and tag mark the clone as ours, so that the worker's sweep (agent/run/clone_sweep.py) finds it if
this process dies before deleting it.

The clone is deleted (`DELETE /voices/{id}`) when consent is withdrawn (`on_clone(identity, None)` at once,
then the delete), when the speaker leaves, and when the session closes (the drain too). A failed delete is
retried with a bounded backoff; the id is kept until it is deleted, and `aclose` tries the rest again.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
import time
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import numpy as np
from livekit import rtc
from livekit.plugins.cartesia.constants import API_VERSION  # the version the TTS plugin speaks

from agent.loops.ears.voicing import VoiceGate, Voicing
from agent.room.room_io import RoomPublisher
from agent.room.voices import VoiceBook
from agent.settings.config import TtsSettings
from agent.telemetry import metrics
from agent.telemetry.errors import log_unexpected
from agent.telemetry.usage import TTS, Usage

logger = logging.getLogger("agent.cloning")

SAMPLE_RATE = 16000
ATTR_VOICE = "interpreter.voice"  # a participant attribute: `own` = interpret me in my own voice
# on the interpreter: a JSON list of the speaker identities heard in their own voice now (absent: nobody)
ATTR_OWN_VOICE = "interpreter.own_voice"
# every clone we make: this name (a random suffix) and this description, so the sweep knows ours
CLONE_NAME_PREFIX = "interp-"
CLONE_NAME = re.compile(r"interp-[0-9a-f]{12}")
CLONE_TAG = "livekit-interpreter own-voice clone; deleted when the meeting ends"
_REQUEST_TIMEOUT_S = 5.0  # a delete
OnClone = Callable[[str, str | None], None]  # (speaker identity, clone id or None: back to the preset)


@dataclass
class _Speaker:
    language: str
    chunks: list[bytes] = field(default_factory=list)
    voiced_s: float = 0.0
    gate: VoiceGate = field(default_factory=VoiceGate)  # the ears' gate: the room's noise is not their voice
    first_word_at: float | None = None
    task: asyncio.Task[None] | None = None
    voice_id: str | None = None  # the clone, once made


class VoiceCloner:
    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        base_url: str,
        api_key: str,
        on_clone: OnClone,
        api_version: str = API_VERSION,
        min_speech_s: float = 5.0,
        max_speech_s: float = 10.0,
        timeout_s: float = 15.0,
        delete_attempts: int = 5,
        delete_backoff_s: float = 0.5,
        close_budget_s: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._api_version = api_version
        self._on_clone = on_clone
        self._min_speech_s = min_speech_s
        self._max_speech_s = max(max_speech_s, min_speech_s)
        self._timeout_s = timeout_s
        self._delete_attempts = delete_attempts
        self._delete_backoff_s = delete_backoff_s
        self._close_budget_s = close_budget_s  # the drain must end within the worker's bound
        self._clock = clock
        self._speakers: dict[str, _Speaker] = {}  # consenting speakers
        self._clones: set[asyncio.Task[None]] = set()  # clone requests under way
        self._deletes: set[asyncio.Task[None]] = set()
        self.undeleted: set[str] = set()  # clones made and not deleted yet
        self._closing: asyncio.Task[None] | None = None  # once closing, nobody consents any more
        self.made = 0
        self.failed = 0
        self.deleted = 0
        self.delete_failures = 0
        self.first_word_to_own_voice_s: list[float] = []
        self.usage: Usage | None = None  # the room's: every clone and delete call is counted

    @classmethod
    def for_tts(cls, tts: TtsSettings, http: aiohttp.ClientSession, on_clone: OnClone) -> VoiceCloner:
        """Through the same Cartesia base URL and key as the TTS."""
        return cls(http=http, base_url=tts.base_url, api_key=tts.api_key, on_clone=on_clone)

    def speakers(self) -> list[str]:  # the consenting speakers
        return list(self._speakers)

    def consented(self, identity: str) -> bool:
        return identity in self._speakers

    def consent(self, identity: str, language: str) -> None:
        """`identity` (who speaks `language`) agreed: collect their speech, then clone it."""
        if identity not in self._speakers and self._closing is None:
            self._speakers[identity] = _Speaker(language)
            logger.info("a speaker asked for their own voice; collecting their speech")

    def withdraw(self, identity: str) -> None:
        """Consent withdrawn, or the speaker left: stop collecting, the preset now, delete the clone."""
        speaker = self._speakers.pop(identity, None)
        if speaker is None:
            return
        speaker.chunks.clear()  # a clone still being made is deleted by its task once made
        if speaker.voice_id is not None:
            self._on_clone(identity, None)
            self._delete_later(speaker.voice_id)
        logger.info("a speaker's own voice ended", extra={"had_clone": speaker.voice_id is not None})

    def hear(self, identity: str, frame: rtc.AudioFrame) -> None:
        """A frame the ears received from `identity` (16 kHz mono s16); kept only while collecting."""
        speaker = self._speakers.get(identity)
        if speaker is None or speaker.task is not None or speaker.voice_id is not None:
            return
        if frame.sample_rate != SAMPLE_RATE or frame.num_channels != 1:
            return  # the ears' frames are always 16 kHz mono (`track_frames`); anything else is not used
        samples = np.frombuffer(frame.data, dtype=np.int16)
        if speaker.gate.hear(samples, samples.size / SAMPLE_RATE) is not Voicing.VOICED:
            return  # the ears' voiced-frame gate: above the room's noise floor, never under about -40 dBFS
        if speaker.first_word_at is None:
            speaker.first_word_at = self._clock()
        speaker.chunks.append(samples.tobytes())
        speaker.voiced_s += samples.size / SAMPLE_RATE
        if speaker.voiced_s >= self._min_speech_s:
            clip = _wav(b"".join(speaker.chunks)[: int(self._max_speech_s * SAMPLE_RATE) * 2])
            speaker.chunks.clear()
            speaker.task = task = asyncio.create_task(
                self._clone(identity, speaker, clip), name="voice-clone"
            )
            self._clones.add(task)
            task.add_done_callback(self._clones.discard)

    async def _clone(self, identity: str, speaker: _Speaker, clip: bytes) -> None:
        try:
            voice_id = await asyncio.wait_for(self._post_clone(clip, speaker.language), self._timeout_s)
        except (_StatusError, aiohttp.ClientError, TimeoutError, ValueError) as e:
            self._failed(_cause(e))
            return
        except Exception as e:  # a bug: the preset voice keeps speaking
            log_unexpected(logger, "cloning a voice failed", e)
            self._failed("bug")
            return
        self.undeleted.add(voice_id)
        self.made += 1  # every clone made is counted, so made - deleted is what Cartesia still holds
        metrics.VOICE_CLONES.labels(outcome="made").inc()
        if self._speakers.get(identity) is not speaker:  # withdrawn or left while it was being made
            self._delete_later(voice_id)
            return
        speaker.voice_id = voice_id
        if speaker.first_word_at is not None:
            waited = self._clock() - speaker.first_word_at
            self.first_word_to_own_voice_s.append(waited)
            metrics.FIRST_WORD_TO_OWN_VOICE.observe(waited)
        logger.info("a speaker's own voice is ready", extra={"language": speaker.language})
        self._on_clone(identity, voice_id)

    def _failed(self, cause: str) -> None:
        self.failed += 1
        metrics.VOICE_CLONES.labels(outcome="failed").inc()
        logger.warning("voice cloning failed; the preset voice keeps speaking", extra={"cause": cause})

    def _headers(self) -> dict[str, str]:
        return {"X-API-Key": self._api_key, "Cartesia-Version": self._api_version}

    async def _post_clone(self, clip: bytes, language: str) -> str:
        form = aiohttp.FormData()
        form.add_field("clip", clip, filename="clip.wav", content_type="audio/wav")
        form.add_field("name", f"{CLONE_NAME_PREFIX}{secrets.token_hex(6)}")
        form.add_field("description", CLONE_TAG)
        form.add_field("language", language.split("-")[0])
        url = f"{self._base_url}/voices/clone"
        self._count("clones")
        async with self._http.post(url, data=form, headers=self._headers()) as response:
            if response.status >= 400:
                raise _StatusError(response.status)
            body = await response.json()
        voice_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(voice_id, str) or not voice_id:
            raise ValueError("no voice id in the answer")
        return voice_id

    def _count(self, item: str) -> None:
        if self.usage is not None:
            self.usage.add(TTS, "", item, 1)

    def _delete_later(self, voice_id: str) -> None:
        task = asyncio.create_task(self._delete(voice_id), name="voice-delete")
        self._deletes.add(task)
        task.add_done_callback(self._deletes.discard)

    async def _delete(self, voice_id: str) -> None:
        """Delete one clone, retried with a doubling backoff; kept in `undeleted` if every attempt fails."""
        for attempt in range(self._delete_attempts):
            if attempt:
                await asyncio.sleep(min(self._delete_backoff_s * 2 ** (attempt - 1), 5.0))
            if voice_id not in self.undeleted:
                return  # deleted meanwhile by another attempt
            try:
                url = f"{self._base_url}/voices/{voice_id}"
                self._count("clone_deletes")
                timeout = aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT_S)
                async with self._http.delete(url, headers=self._headers(), timeout=timeout) as response:
                    ok = response.status < 300 or response.status == 404  # 404: already gone
                    cause = f"cartesia {response.status}"
            except (aiohttp.ClientError, TimeoutError) as e:
                ok, cause = False, _cause(e)
            if ok:
                self.undeleted.discard(voice_id)
                self.deleted += 1
                metrics.VOICE_CLONES.labels(outcome="deleted").inc()
                return
            self.delete_failures += 1
            logger.warning(
                "deleting a cloned voice failed; retrying",
                extra={"cause": cause, "attempt": attempt + 1, "undeleted": len(self.undeleted)},
            )
        logger.error(
            "a cloned voice could not be deleted; it is tried again when the session closes",
            extra={"undeleted": len(self.undeleted)},
        )

    async def aclose(self) -> None:
        """The session ends: delete every clone (each retried, bounded); nobody consents any more. Again: the
        same deletes, or those left tried again. A cancelled caller does not stop them (bounded too)."""
        if self._closing is None or (self._closing.done() and self.undeleted):
            self._closing = asyncio.create_task(self._close(), name="voice-clones-close")
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        for identity in list(self._speakers):
            self.withdraw(identity)
        try:
            await asyncio.wait_for(self._delete_all(), self._close_budget_s)
        except TimeoutError:
            logger.error(
                "cloned voices left undeleted at close",
                extra={"undeleted": len(self.undeleted), "clones_under_way": len(self._clones)},
            )
        finally:
            for task in self._clones | self._deletes:
                task.cancel()
            await asyncio.gather(*self._clones, *self._deletes, return_exceptions=True)

    async def _delete_all(self) -> None:
        await asyncio.gather(*self._clones, return_exceptions=True)  # a clone made now is deleted too
        await asyncio.gather(*self._deletes, return_exceptions=True)
        await asyncio.gather(*(self._delete(voice_id) for voice_id in list(self.undeleted)))


async def deleted_first(cloner: VoiceCloner | None, rest: Awaitable[None]) -> None:
    """A session's close: its clones' deletes start first and run alongside `rest` (the drain), so that
    nothing failing or overrunning there leaves a clone behind (the presets speak what is left). A cancelled
    drain does not stop them (`VoiceCloner.aclose`)."""
    deleting = asyncio.create_task(cloner.aclose()) if cloner is not None else None
    try:
        await rest
    finally:
        if deleting is not None:
            await deleting


def own_voice_handler(book: VoiceBook, publisher: RoomPublisher) -> OnClone:
    """Where the cloner hands a clone (or None): the book speaks with it, and the room sees who is heard in
    their own voice (ATTR_OWN_VOICE on the interpreter)."""

    def on_clone(identity: str, voice_id: str | None) -> None:
        book.set_clone(identity, voice_id)
        cloned = book.cloned()
        publisher.set_attributes(**{ATTR_OWN_VOICE: json.dumps(cloned) if cloned else ""})

    return on_clone


class _StatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"cartesia {status}")
        self.status = status


def _cause(error: BaseException) -> str:
    if isinstance(error, _StatusError):
        return str(error)
    if isinstance(error, TimeoutError):
        return "timeout"
    return type(error).__name__


def _wav(pcm: bytes) -> bytes:
    """16 kHz mono s16 PCM as a WAV file, in memory."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    return out.getvalue()
