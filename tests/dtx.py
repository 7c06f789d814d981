"""What the ears get of a browser's microphone during its pauses: the page's speaker (real Chromium, its fake
capture device playing a WAV in a loop) publishes as the page does (livekit-client's defaults: Opus DTX on),
and a subscriber takes the track as the interpreter does (the rtc SDK, 16 kHz mono 20 ms frames,
`agent.room.room_io.track_frames`). For tests/test_browser_dtx.py and `python -m bench dtx`.

The microphone is `dialogue_en.wav` (three sentences, 1 s pauses; 1.5 s across the loop) padded to whole
20 ms frames, under a floor made here (`microphone`): none (digital silence), white noise at a given dBFS
(seed 22), or the committed hum some dB below the speech (`tests.noise.mix`). The received audio is aligned on
the clean speech (the loop's offset, by the 10 ms envelope, found again around each pause). A `VoiceGate` and
the pause detector (`tests.noise.cut_times`, PAUSE_CUT_MS 120) start hearing it where the ears would have
subscribed: just inside a pause (`IN_PAUSE`), or in the middle of a sentence (`MID_SPEECH`: a gate that
starts there takes its first floor from speech alone, and then holds a floor under −70 dBFS to be GAP). Each
received frame well inside a clean pause (`MARGIN_S` from its ends, past `WARMUP_S`) is a pause frame: its
energy, and what the gate made of it (QUIET; GAP a dropout; VOICED noise taken for speech). The cuts must fall
in the clean pauses, none mid-word (`tests.noise.clean_pauses`, `mid_word`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from livekit import api, rtc

from agent.loops.ears.voicing import VoiceGate, Voicing, energy_db
from agent.room.room_io import STT_SAMPLE_RATE, track_frames
from agent.run.filemode import read_wav, write_wav
from tests.browser import Browsers, WebServer, join, until
from tests.conftest import DIALOGUE
from tests.livekit_server import LiveKitServer
from tests.noise import FIXTURES, RATE, SEED, clean_pauses, cut_times, frames, mid_word, mix

FRAME = RATE // 50  # 20 ms
FLOORS = ("digital", "white-60", "hum-30")  # and any white-<dBFS> or hum-<dB under the speech>
WARMUP_S = 2.0  # what the gate heard before the pause frames and cuts that count (its floor is settled)
ALIGN_FROM_S = 1.0  # the loop's offset is found on a loop of the received audio from this far in
# where (s of the clean loop) the ears' gate starts hearing: just inside a pause, or in the middle of a
# sentence (0.34 s into "Thank you for joining the call today.")
IN_PAUSE = (2.0, 5.0, 7.6)
MID_SPEECH = (3.3,)
MARGIN_S = 0.1  # a pause frame: this far inside a clean pause (the codec's delay and tails of speech)
ENVELOPE_S = 0.01
SHIFT_S = 0.3  # the alignment is found again around each pause, this far either way
JOINS = 3  # a speaker page joins at most this often for its browser to get DTX as asked


def clean_speech() -> np.ndarray:
    """The dialogue padded with silence to whole 20 ms frames: the loop is a whole number of frames."""
    samples = read_wav(DIALOGUE.wav).samples
    return np.concatenate([samples, np.zeros(-len(samples) % FRAME, np.int16)])


def microphone(floor: str) -> np.ndarray:
    """The microphone's audio: the clean speech under `floor`: `digital` (none), `white-<n>` (white noise at
    −n dBFS, seed 22) or `hum-<n>` (the committed hum n dB below the speech's level)."""
    clean = clean_speech()
    kind, _, level = floor.partition("-")
    if floor == "digital":
        return clean
    if kind in ("white", "hum") and level.isdigit():
        if kind == "hum":
            return mix(clean, read_wav(FIXTURES / "hum.wav").samples, int(level))
        noise = np.random.default_rng(SEED).standard_normal(len(clean)) * 32768 * 10 ** (-int(level) / 20)
        return np.clip(np.round(clean + noise), -32768, 32767).astype(np.int16)
    raise ValueError(f"unknown floor {floor!r} (digital, white-<dBFS below 0>, hum-<dB under the speech>)")


def write_microphone(floor: str, path: Path) -> Path:
    write_wav(path, [microphone(floor)], RATE)
    return path


def envelope(samples: np.ndarray) -> np.ndarray:
    """Energy (dB) of each 10 ms window."""
    n = int(RATE * ENVELOPE_S)
    x = samples[: len(samples) // n * n].astype(np.float64).reshape(-1, n) / 32768.0
    return 10 * np.log10(np.mean(x * x, axis=1) + 1e-10)


def loop_offset(received: np.ndarray, clean: np.ndarray) -> float:
    """Where (s, in `received`) the clean loop starts, modulo its length: the circular lag at which the
    received 10 ms envelope (past the warm-up, one loop of it) best matches the clean one (both as
    voiced/unvoiced at −40 dBFS)."""
    ref = envelope(clean) > -40
    got = envelope(received) > -40
    start = int(ALIGN_FROM_S / ENVELOPE_S)
    window = got[start : start + len(ref)].astype(float) * 2 - 1
    if len(window) < len(ref):
        raise ValueError(f"less than one loop of audio past the first {ALIGN_FROM_S} s")
    signs = ref.astype(float) * 2 - 1
    scores = [float(np.dot(window, np.roll(signs, -lag))) for lag in range(len(ref))]
    lag = int(np.argmax(scores))  # received[start + i] matches clean[(i + lag) % n]
    return ((start - lag) % len(ref)) * ENVELOPE_S


@dataclass
class Heard:
    """What the subscriber got of one microphone, judged against the clean speech."""

    floor: str
    dtx: bool  # DTX on the published track (as the server reports it)
    energies: list[float] = field(default_factory=list)  # dBFS of the pause frames
    floors: list[float] = field(default_factory=list)  # the gate's noise floor (dBFS) at each pause frame
    voicing: dict[str, int] = field(default_factory=dict)  # pause frames by what the gate called them
    pauses_found: int = 0
    pauses: int = 0  # clean pauses seen past the warm-up (each loop's)
    mid_word: int = 0

    def figures(self) -> dict[str, Any]:
        e = np.asarray(self.energies) if self.energies else np.zeros(1)
        return {
            "floor": self.floor,
            "dtx": "on" if self.dtx else "off",
            "pause_frames": len(self.energies),
            "db_min": round(float(e.min()), 1),
            "db_median": round(float(np.median(e)), 1),
            "db_max": round(float(e.max()), 1),
            "quiet": self.voicing.get("quiet", 0),
            "gap": self.voicing.get("gap", 0),
            "voiced": self.voicing.get("voiced", 0),
            "gate_floor_db": round(float(np.median(self.floors)), 1) if self.floors else None,
            "pauses_found": f"{self.pauses_found}/{self.pauses}",
            "mid_word_cuts": self.mid_word,
        }


def loop_pauses(clean: np.ndarray) -> list[tuple[float, float]]:
    """The pauses (s) of `clean` played in a loop, each starting in the loop (the last runs on into the
    next loop's leading silence)."""
    loop_s = len(clean) / RATE
    return [(a, b) for a, b in clean_pauses(np.concatenate([clean, clean])) if a < loop_s]


def received_pauses(
    received: np.ndarray, clean: np.ndarray, offset: float
) -> list[tuple[float, float, float]]:
    """Each clean pause as it came in `received` (start s, end s, the loop's offset there), whole and past the
    warm-up, with a second before it and `SHIFT_S` more than a half after it received too. `offset`: where the
    loop starts (`loop_offset`); found again within ±`SHIFT_S` around each pause (its envelope from a second
    before it to a half after it): the receiver's jitter buffer stretches and squeezes the timeline a little,
    and a busy machine can drop a moment of it.
    """
    loop_s = len(clean) / RATE
    got = (envelope(received) > -40).astype(float) * 2 - 1
    ref = (envelope(np.concatenate([clean, clean, clean])) > -40).astype(float) * 2 - 1
    step, shift = ENVELOPE_S, int(SHIFT_S / ENVELOPE_S)
    out = []
    for k in range(-1, int(len(received) / RATE / loop_s) + 1):
        for a, b in loop_pauses(clean):
            base = offset + k * loop_s
            lo, hi = int((a + loop_s - 1.0) / step), int((b + loop_s + 0.5) / step)
            here = int((base + a - 1.0) / step)
            if here - shift < 0 or here + shift + hi - lo > len(got):
                continue  # not all of it received, whatever the shift
            scores = {
                d: float(np.dot(got[here + d : here + d + hi - lo], ref[lo:hi]))
                for d in range(-shift, shift + 1)
            }
            moved = base + max(scores, key=lambda d: scores[d]) * step
            if moved + a >= WARMUP_S and moved + b <= len(received) / RATE:
                out.append((moved + a, moved + b, moved % loop_s))
    return out


def judge_received(
    floor: str, dtx: bool, received: np.ndarray, gate_from: tuple[float, ...] = IN_PAUSE
) -> Heard:
    """The pause frames' energies and voicing, and the pauses found, in `received` (16 kHz mono s16), by a
    gate and a pause detector that start hearing at the first moment of it that is one of `gate_from` (s of
    the clean loop): as the ears would, had they subscribed then."""
    clean = clean_speech()
    loop_s = len(clean) / RATE
    offset = loop_offset(received, clean)
    start = min((offset + at) % loop_s for at in gate_from)
    received = received[round(start * RATE) // FRAME * FRAME :]
    offset = (offset - round(start * RATE) // FRAME * FRAME / RATE) % loop_s
    pauses = received_pauses(received, clean, offset)
    heard = Heard(floor, dtx)
    gate = VoiceGate()
    voicing = {v.value: 0 for v in Voicing}
    for i, frame in enumerate(frames(received)):
        samples = np.frombuffer(frame.data, np.int16)
        said = gate.hear(samples, 0.02)
        mid = i * 0.02 + 0.01
        if any(a + MARGIN_S <= mid <= b - MARGIN_S for a, b, _ in pauses):
            heard.energies.append(energy_db(samples))
            heard.floors.append(gate.floor_db)
            voicing[said.value] += 1
    heard.voicing = voicing
    cuts = [c for c in cut_times(received) if c >= WARMUP_S]
    heard.pauses = len(pauses)
    heard.pauses_found = sum(any(a <= c <= b for c in cuts) for a, b, _ in pauses)
    for cut in cuts:  # onto the clean loop, with the offset of the pause nearest to it
        offset = min(pauses, key=lambda p: abs(p[0] - cut))[2] if pauses else 0.0
        heard.mid_word += mid_word(clean, (cut - offset) % loop_s)
    return heard


# -- the page's speaker and a subscriber as the interpreter --------------------------------------------------


async def record_page_speaker(
    server: LiveKitServer, web: WebServer, browsers: Browsers, mic: Path, room: str, seconds: float,
    *, dtx: bool | None = None, processing: bool = True,
) -> Recording:  # fmt: skip
    """Join a room (`room`, then `room-2`… if the page must join again) as a speaker on the page with `mic` as
    the microphone; record `seconds` of its track as the interpreter receives it. `dtx`: None as the page
    publishes (DTX on: livekit-client's `publishDefaults`; the page has no setting of its own); False: the
    page's own room object publishes its microphone again without. `processing` False: the browser captures
    without noise suppression, echo cancellation and gain control (livekit-client's `audioCaptureDefaults`
    turn all three on, and the page keeps them): the page's getUserMedia is asked for them off, so the page
    publishes as ever, only the floor reaches the encoder.

    With DTX asked for, a page whose browser did not get `usedtx=1` (livekit-client's SDP munging missed the
    track: 3 of about 30 joins here, the server's track info saying DTX on all the same) leaves, and a
    fresh page joins another room, up to `JOINS` times: `Recording.joins` says how many it took.
    """
    for joins in range(1, JOINS + 1):
        name = room if joins == 1 else f"{room}-{joins}"
        page = await _speaker_page(browsers, web, mic, name, dtx=dtx, processing=processing)
        codec = await until(partial(_codec, page), within_s=30, what="the microphone's send codec")
        if dtx is False or "usedtx=1" in codec or joins == JOINS:
            break
        await page.context.close()
    async with _subscriber(server, name) as (subscriber, tracks):
        track = await until(lambda: _first(tracks), within_s=30, what="the page's microphone track")
        dtx_on = await _dtx_on(server, name)
        received: list[np.ndarray] = []
        wanted = round(seconds * STT_SAMPLE_RATE)

        async def record() -> None:
            got = 0
            async for frame in track_frames(track):
                received.append(np.frombuffer(frame.data, np.int16).copy())
                got += frame.samples_per_channel
                if got >= wanted:
                    return

        packets, (sent, _) = await _packets_received(subscriber), await _sent(page)
        await asyncio.wait_for(record(), seconds + 30)
        packets, (sent, codec) = await _packets_received(subscriber) - packets, await _sent(page, sent)
    await page.context.close()
    return Recording(np.concatenate(received), dtx_on, packets, sent, codec, joins)


async def _speaker_page(
    browsers: Browsers, web: WebServer, mic: Path, room: str, *, dtx: bool | None, processing: bool
) -> Any:
    """A fresh page joined to `room` as a speaker, its microphone published."""
    page = await browsers.page(f"speaker-{room}", microphone=mic)
    if not processing:
        await page.add_init_script(RAW_CAPTURE)
    await join(page, web.url, room=room, name="Sam", role="speaker", language="en")
    await page.wait_for_function(
        "() => document.querySelector('#mic')?.getAttribute('aria-pressed') === 'true'"
    )
    if dtx is False:
        await page.evaluate(REPUBLISH, processing)
    return page


async def _codec(page: Any) -> str:
    """The browser's send codec once the microphone is sending ('' before)."""
    sent, codec = await _sent(page)
    return codec if sent > 0 else ""


@dataclass(frozen=True)
class Recording:
    audio: np.ndarray  # 16 kHz mono s16, as the ears get it
    dtx: bool  # DTX on, as the server reports the track
    packets: int  # RTP packets received while it was recorded (1 per 20 ms without DTX)
    sent: int  # ... and sent by the browser meanwhile (its sender's outbound-rtp stats)
    codec: str  # the browser's send codec, its fmtp line (`usedtx=1`: DTX asked of the encoder), the channels
    joins: int  # pages that joined until one had DTX as asked (1: the first)

    @property
    def packets_per_s(self) -> float:
        return self.packets / (len(self.audio) / STT_SAMPLE_RATE)


# (republishing with DTX on as well is not the same: the server then lists the track with DTX on, and yet
# the browser sent every packet in some runs, 50/s)
REPUBLISH = """async (processing) => {
  const local = window.interpreterPage.room.localParticipant;
  const pub = [...local.audioTrackPublications.values()].find((p) => p.source === 'microphone');
  if (pub?.track) await local.unpublishTrack(pub.track);
  const capture = {noiseSuppression: processing, echoCancellation: processing, autoGainControl: processing};
  await local.setMicrophoneEnabled(true, capture, {dtx: false});
}"""
RAW_CAPTURE = """(() => {
  const devices = navigator.mediaDevices;
  const getUserMedia = devices.getUserMedia.bind(devices);
  devices.getUserMedia = (constraints) => {
    if (constraints && constraints.audio) {
      const audio = typeof constraints.audio === 'object' ? constraints.audio : {};
      const off = {noiseSuppression: false, echoCancellation: false, autoGainControl: false};
      constraints = {...constraints, audio: {...audio, ...off}};
    }
    return getUserMedia(constraints);
  };
})();"""


SENDER_STATS = """async () => {
  const local = window.interpreterPage.room.localParticipant;
  const pub = [...local.audioTrackPublications.values()].find((p) => p.source === 'microphone');
  let sent = 0, codecId = '', codecs = {};
  for (const s of (await pub.track.sender.getStats()).values()) {
    if (s.type === 'outbound-rtp') { sent = s.packetsSent; codecId = s.codecId; }
    if (s.type === 'codec') codecs[s.id] = `${s.mimeType} ${s.sdpFmtpLine || ''}`;
  }
  const channels = pub.track.mediaStreamTrack.getSettings().channelCount;
  return [sent, `${codecs[codecId] || ''} (${channels} channel${channels === 1 ? '' : 's'} captured)`];
}"""


async def _sent(page: Any, before: int = 0) -> tuple[int, str]:
    sent, codec = await page.evaluate(SENDER_STATS)
    return int(sent) - before, str(codec)


async def _first(tracks: list[rtc.Track]) -> rtc.Track | None:
    return tracks[-1] if tracks else None


@contextlib.asynccontextmanager
async def _subscriber(server: LiveKitServer, room: str) -> AsyncIterator[tuple[rtc.Room, list[rtc.Track]]]:
    """A participant in `room` that subscribes to the microphone tracks published there (the latest last)."""
    tracks: list[rtc.Track] = []
    subscriber = rtc.Room()

    def on_track(track: rtc.Track, publication: rtc.RemoteTrackPublication, _: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO and publication.source == rtc.TrackSource.SOURCE_MICROPHONE:
            tracks.append(track)

    subscriber.on("track_subscribed", on_track)
    await subscriber.connect(server.url, server.token("ears", room))
    try:
        yield subscriber, tracks
    finally:
        await subscriber.disconnect()


async def _dtx_on(server: LiveKitServer, room: str) -> bool:
    lk = server.api()
    try:
        listed = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
    finally:
        await lk.aclose()
    audio = [t for p in listed.participants for t in p.tracks if t.type == api.TrackType.AUDIO]
    if not audio:
        raise AssertionError("the server lists no audio track in the room")
    return not audio[-1].disable_dtx


async def _packets_received(room: rtc.Room) -> int:
    stats = await room.get_rtc_stats()
    return sum(
        int(s.inbound_rtp.received.packets_received)
        for s in [*stats.subscriber_stats, *stats.publisher_stats]
        if s.WhichOneof("stats") == "inbound_rtp" and s.inbound_rtp.stream.kind == "audio"
    )
