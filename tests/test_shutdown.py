"""SIGTERM to the worker while a real room is being interpreted: what was heard is still spoken to its last
sample and captioned, then the agent leaves the room, the worker exits 0, and nothing is left pending or
unclosed.

Everything is real but the providers: the LiveKit server (session fixture), the worker as production runs
it (`python -m agent start`: the framework's CLI, its SIGTERM handler, `drain()` bounded by
DRAIN_TIMEOUT_S, `aclose()`, a forkserver job process, the framework's job shutdown sequence:
ShutdownRequest → `on_session_end` → room disconnect → shutdown callbacks → exit), the token dispatch, and
the participants (a speaker, a listener recording what arrives through the SFU). The providers are the
fakes on 127.0.0.1.

DRAIN_TIMEOUT_S is 1 s here (260 s in production), so the drain times out while the utterance is still
being interpreted and the job is told to shut down: the hardest case, where the job itself must finish
what was heard, within its bound, before it leaves the room. The fake Cartesia makes 0.12 s of audio per
character: the translation takes 3.6 s to play, well past the drain timeout.

What a listener cannot see is watched inside the job process by tests/job_watch.py (installed through
PYTHONPATH, nothing in `agent/` changed): tasks still pending once the shutdown callbacks are done, and a
garbage collection at the process's `os._exit` that reports unclosed aiohttp sessions. The worker runs in
Python's development mode, so ResourceWarnings and never-awaited coroutines show in its output.

The SIGTERM goes to the worker process only, as Fly, Docker and Kubernetes send it (docs/deploying.md,
"Stopping a machine").
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from livekit import rtc

from agent.run.filemode import read_wav
from agent.run.worker import JOB_CLOSE_TIMEOUT_S, SESSION_DRAIN_TIMEOUT_S, ShutdownBounds, build_server
from agent.settings.config import load_server_settings
from tests.conftest import ONE_SENTENCE, Fakes, stop_fakes
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.job_watch import read_reports, watched_worker_env
from tests.livekit_server import LiveKitServer
from tests.loopback import eventually
from tests.participants import LISTEN_RATE, Listener
from tests.real_room import FORBIDDEN, RealRoom, real_room

ROOT = Path(__file__).parent.parent
TRANSLATION = ONE_SENTENCE.translations["camera"]
DRAIN_TIMEOUT_S = 1
# the bound docs/deploying.md gives: the drain, then the job's own drain and close, then the kill's grace
WORST_EXIT_S = DRAIN_TIMEOUT_S + SESSION_DRAIN_TIMEOUT_S + JOB_CLOSE_TIMEOUT_S + 0.5
# besides the real rooms' FORBIDDEN: the framework killing or giving up on a job's shutdown, our drain
# overrunning, or the agent using the room after the framework disconnected it
SHUTDOWN_FORBIDDEN = (
    "did not ack shutdown in time",
    "did not exit in time",
    "killing process",
    "on_session_end timed out",
    "error while",
    "did not drain in time",
)
AUDIBLE_RMS = 500  # the fake's tone is at 0.3 of full scale (RMS ~7000); silence and codec noise far below


@dataclass
class RoomEvents:
    """What a listener saw happen in the room, with when (time.perf_counter(), as the captions)."""

    unpublished: dict[str, float] = field(default_factory=dict)  # the agent's track name → when
    left: dict[str, float] = field(default_factory=dict)  # identity → when

    def watch(self, listener: Listener) -> None:
        room = listener.room

        @room.on("track_unpublished")
        def _unpublished(publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
            self.unpublished[publication.name] = time.perf_counter()

        @room.on("participant_disconnected")
        def _left(participant: rtc.RemoteParticipant) -> None:
            self.left[participant.identity] = time.perf_counter()


def tone_seconds(samples: np.ndarray, *, window_s: float = 0.02) -> dict[float, float]:
    """Seconds of audible audio by dominant frequency (windows as `tone_sequence`'s, on its 100 Hz grid)."""
    n = int(LISTEN_RATE * window_s)
    seconds: dict[float, float] = {}
    for start in range(0, len(samples) - n + 1, n):
        w = samples[start : start + n].astype(np.float32)
        if np.sqrt(np.mean(w**2)) < AUDIBLE_RMS:
            continue
        spectrum = np.abs(np.fft.rfft(w * np.hanning(n)))
        freq = round(float(np.fft.rfftfreq(n, 1 / LISTEN_RATE)[int(np.argmax(spectrum))]) / 100) * 100
        seconds[freq] = seconds.get(freq, 0.0) + window_s
    return seconds


def audible(frames: list[tuple[float, np.ndarray]]) -> tuple[float, float]:
    """Seconds of audible audio in these frames, and when the last audible frame arrived."""
    seconds, last_at = 0.0, 0.0
    for arrived, samples in frames:
        if samples.size and float(np.sqrt(np.mean(samples.astype(np.float32) ** 2))) > AUDIBLE_RMS:
            seconds += samples.size / LISTEN_RATE
            last_at = arrived
    return seconds, last_at


@asynccontextmanager
async def watched_room(server: LiveKitServer, tmp_path: Path) -> AsyncIterator[tuple[RealRoom, Fakes, Path]]:
    """A real room, the worker (its job processes watched: tests/job_watch.py), the fakes with a slow TTS,
    and the directory the job reports go to."""
    fakes = Fakes(
        deepgram=FakeDeepgram(ONE_SENTENCE.transcripts),
        cerebras=FakeLLM(translations=ONE_SENTENCE.translations),
        groq=FakeLLM(translations=ONE_SENTENCE.translations),
        cartesia=FakeCartesia(freq_for=ONE_SENTENCE.freq_for, seconds_per_char=0.12),
    )
    for fake in (fakes.deepgram, fakes.cerebras, fakes.groq, fakes.cartesia):
        await fake.start()
    watch_dir = tmp_path / "jobs"
    watch_dir.mkdir()
    try:
        async with real_room(
            server,
            fakes,
            tmp_path / "worker",
            DRAIN_TIMEOUT_S=str(DRAIN_TIMEOUT_S),
            **watched_worker_env(watch_dir),
        ) as room:
            yield room, fakes, watch_dir
    finally:
        await stop_fakes(fakes)


async def one_sentence_heard(room: RealRoom, fakes: Fakes) -> tuple[Listener, RoomEvents]:
    """Alice (English; her token dispatches the interpreter) says the sentence, Bob listens in Spanish.
    Returns Bob and what he sees happen, once the sentence has been heard (its final transcript is out),
    not yet translated or played."""
    alice = await room.speaker("alice", attributes={"language": "en"}, dispatch=room.dispatch())
    bob = await room.listener("bob", attributes={"language": "es"})
    events = RoomEvents()
    events.watch(bob)
    await room.agent_tracks(bob, "interpretation-es", "interpretation-en")
    alice.say(read_wav(ONE_SENTENCE.wav))
    await eventually(lambda: bool(fakes.deepgram.finals), within_s=30, what="the final transcript")
    return bob, events


async def test_sigterm_in_a_real_room_finishes_what_was_heard_then_leaves(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    async with watched_room(livekit_server, tmp_path) as (room, fakes, watch_dir):
        bob, events = await one_sentence_heard(room, fakes)
        agent = bob.agent()
        assert agent is not None
        worker = room.worker
        sigterm_at = time.perf_counter()
        returncode = await worker.terminate(timeout_s=WORST_EXIT_S + 30)  # SIGTERM to the worker only
        exit_s = time.perf_counter() - sigterm_at
        await eventually(lambda: bob.agent() is None, within_s=10, what="the agent to leave the room")

        output = worker.output()
        reports = read_reports(watch_dir)
        sent_s = sum(fakes.cartesia.audio_s.values())
        heard_s, last_heard_at = audible(bob.heard.get("interpretation-es", []))
        tones = tone_seconds(bob.audio("interpretation-es"))

        def since(at: float) -> float:
            return round(at - sigterm_at, 3)

        context = (
            f"exit after {exit_s:.2f} s; synthesized {sent_s:.2f} s, heard {heard_s:.2f} s {tones}; "
            f"from SIGTERM: last heard {since(last_heard_at)}, "
            f"unpublished { {k: since(v) for k, v in events.unpublished.items()} }, "
            f"left { {k: since(v) for k, v in events.left.items()} }, "
            f"captions {[(c.text, c.final, since(c.at)) for c in bob.captions]}\n"
            f"jobs (time.monotonic()): sigterm at {sigterm_at:.3f}, {reports}\n{worker.tail(80)}"
        )

        # the worker exited by itself, cleanly, within the bound docs/deploying.md gives
        assert returncode == 0, context
        assert exit_s < WORST_EXIT_S, context

        # the listener heard the whole translation and got its caption (both only possible while the
        # agent was in the room, its track published), then saw the agent's tracks go and the agent leave
        assert [c.text for c in bob.final_captions(translated=False)] == ONE_SENTENCE.transcripts, context
        [caption] = bob.final_captions(translated=True)
        assert (caption.text, caption.attributes["language"]) == (TRANSLATION, "es"), context
        # (the drain had timed out before the translation was done: the job's shutdown finished it)
        assert sigterm_at + DRAIN_TIMEOUT_S < caption.at, context
        assert sent_s > 3.0, context
        assert heard_s >= sent_s - 0.05, context
        assert tones.get(500, 0.0) >= sent_s - 0.1, context  # the translation's tone (edges blur)
        assert audible(bob.heard.get("interpretation-en", []))[0] == 0, context  # not en into en
        assert sorted(events.unpublished) == ["interpretation-en", "interpretation-es"], context
        assert max(events.unpublished.values()) <= events.left[agent.identity], context
        # in the job process, in that order: every track unpublished, then the room disconnected
        [job] = reports
        assert sorted(job.unpublished_at) == ["interpretation-en", "interpretation-es"], context
        assert sigterm_at < min(job.unpublished_at.values()), context
        assert max(job.unpublished_at.values()) < job.disconnect_started_at, context
        # the speaker is still there: the agent left a room that goes on
        assert set(bob.room.remote_participants) == {"alice"}, context

        # the STT stream was closed; in the job process nothing was left running once its shutdown
        # callbacks were done, and (in the output) nothing was left unclosed
        assert fakes.deepgram.connections and all(c.closed for c in fakes.deepgram.connections), context
        assert job.watch_completed and job.errors == [] and job.pending_tasks == [], context
        found = [f for f in (*FORBIDDEN, *SHUTDOWN_FORBIDDEN) if f in output]
        assert not found, f"{found} in the worker's output\n{context}"


def test_the_worst_case_shutdown_fits_in_flys_kill_timeout() -> None:
    settings = load_server_settings({})
    # what the framework is told (the server passes its `shutdown` to it)
    bounds = build_server(settings).shutdown
    assert bounds == ShutdownBounds(settings.drain_timeout_s, SESSION_DRAIN_TIMEOUT_S, JOB_CLOSE_TIMEOUT_S)
    # SIGTERM → the drain (jobs go on as usual) → each job: `on_session_end` (our drain), then the
    # disconnect, the shutdown callbacks and the exit, killed (SIGUSR1, 0.5 s, SIGKILL) past its timeout
    worst_s = bounds.drain_s + bounds.session_end_s + bounds.process_close_s + 0.5
    kill_timeout = tomllib.loads((ROOT / "fly.toml").read_text())["kill_timeout"]
    assert worst_s < kill_timeout
