"""The worker process of tests/test_shutdown.py: `python -m agent start` as production runs it, with the
LiveKit server and the room simulated.

Real: `agent.__main__.main()` → `cli.run_app` → the framework's `start` command and its SIGTERM/SIGINT
handlers, `AgentServer.drain()` (DRAIN_TIMEOUT_S), `AgentServer.aclose()`, the process pool, a forkserver
job process, the ShutdownRequest it gets, the framework's job shutdown sequence, and our `build_server`,
`prewarm`, `entrypoint` and its shutdown hooks, with the real provider plugins (pointed at the fakes).

Simulated, because no LiveKit server can run here:
- dispatch: LIVEKIT_URL points at a dead port (the worker keeps retrying to register), and the job is
  started with the framework's own local dispatch, `AgentServer.simulate_job(..., fake_job=True)` (what
  console mode uses). For a fake job the framework builds the room with `ipc.mock_room.create_mock_room`;
  in the job process that factory is replaced by `ScriptedRoom`, so the room is a fake (tests/fakes/room.py)
  in which a speaker says a committed WAV through a local loopback track, and a listener records what
  the agent plays. The framework connects and disconnects that room itself, at the points it would a
  real one. After the disconnect it behaves as a disconnected room does: sending captions or publishing
  fails. Audio that reaches the listener after its track was unpublished, or after the disconnect, is
  counted as heard by nobody.
- observation only: `RoomSession.aclose` is wrapped to note when it starts and ends; after the
  framework's shutdown callbacks finish, a harness task lists the tasks still pending and writes the
  report (JSON, to $SHUTDOWN_TEST_REPORT); and when the job process exits, a garbage collection runs with
  warnings and asyncio's errors going to stderr. That last step is needed: a forkserver child ends with
  `os._exit` (multiprocessing/forkserver.py), without the interpreter's own finalization, so an unclosed
  aiohttp session in a job process is otherwise never reported (checked: it went unnoticed without it).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import multiprocessing.util
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import AgentServer, JobProcess

from tests.fakes.room import FakeLocalParticipant, FakePublication, FakeRoom, SentText

REPORT_ENV = "SHUTDOWN_TEST_REPORT"
WAV_ENV = "SHUTDOWN_TEST_WAV"
ROOM_NAME = "shutdown-room"
HARNESS = "harness-"  # name prefix of the harness's own tasks
LISTEN_RATE = 24000

_dispatch_tasks: set[asyncio.Task[None]] = set()


# -- the worker (main) process -------------------------------------------------------------------------


def main() -> int:
    # `agent.__main__` makes this directory before it imports the worker (metrics are defined on import)
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    import agent.worker as worker

    build_server = worker.build_server

    def build_server_with_a_local_job(settings: Any) -> AgentServer:
        server = build_server(settings)
        server.setup_fnc = prewarm_with_scripted_room
        server.update_options(num_idle_processes=1)

        @server.once("worker_started")
        def _dispatch() -> None:
            task = asyncio.ensure_future(server.simulate_job(ROOM_NAME, fake_job=True))
            _dispatch_tasks.add(task)
            task.add_done_callback(_dispatch_tasks.discard)

        return server

    worker.build_server = build_server_with_a_local_job
    sys.argv = ["agent", "start"]
    from agent.__main__ import main as agent_main

    return agent_main()


# -- the job process -----------------------------------------------------------------------------------


def prewarm_with_scripted_room(proc: JobProcess) -> None:
    """The worker's own prewarm, after installing the scripted room and the observers (job process)."""
    from livekit.agents.ipc import mock_room

    import agent.worker as worker
    from agent.session import RoomSession

    mock_room.create_mock_room = ScriptedRoom  # type: ignore[assignment]  # builds a fake job's room
    aclose = RoomSession.aclose

    async def observed_aclose(self: RoomSession) -> None:
        REPORT.aclose_started_at = time.monotonic()
        REPORT.captions_at_aclose = len(REPORT.captions)
        try:
            await aclose(self)
        finally:
            REPORT.aclose_done_at = time.monotonic()

    RoomSession.aclose = observed_aclose  # type: ignore[method-assign]
    multiprocessing.util.Finalize(None, _collect_garbage_at_exit, exitpriority=0)
    worker.prewarm(proc)


@dataclass
class Report:
    job_pid: int = 0
    signals: dict[str, str] = field(default_factory=dict)  # SigIgn/SigCgt of the job process
    connected_at: float = 0.0
    speech_done_at: float = 0.0
    aclose_started_at: float = 0.0
    aclose_done_at: float = 0.0
    captions_at_aclose: int = 0
    disconnected_at: float = 0.0
    callbacks_done_at: float = 0.0
    captions: list[dict[str, Any]] = field(default_factory=list)
    unpublished_at: dict[str, float] = field(default_factory=dict)  # track name → when
    # track name → runs of audible audio that reached the listener while the track was published
    audio: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    audio_after_unpublish_s: dict[str, float] = field(default_factory=dict)  # heard by nobody in a room
    publish_log: list[list[str]] = field(default_factory=list)
    pending_tasks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    watch_completed: bool = False

    def write(self) -> None:
        path = Path(os.environ[REPORT_ENV])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=1, default=str))
        tmp.replace(path)


REPORT = Report()


class DisconnectedError(ConnectionError):
    pass


class TimedWriter:
    def __init__(self, room: ScriptedRoom, topic: str, attributes: dict[str, str], sender: str) -> None:
        self._room, self._topic, self._attributes, self._sender = room, topic, attributes, sender
        self._parts: list[str] = []

    async def write(self, text: str) -> None:
        self._parts.append(text)

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        self._room.check_connected()
        sent = SentText("".join(self._parts), self._topic, self._attributes, self._sender)
        self._room.local_participant.texts.append(sent)
        REPORT.captions.append(
            {
                "text": sent.text,
                "final": sent.attributes.get("lk.transcription_final") == "true",
                "translated": "interpreter.speaker" in sent.attributes,
                "language": sent.attributes.get("language"),
                "sender": sent.sender_identity,
                "at": time.monotonic(),
            }
        )


class RoomParticipant(FakeLocalParticipant):
    """The agent's side of a room that can be disconnected; what it plays is listened to."""

    def __init__(self, room: ScriptedRoom) -> None:
        super().__init__("agent-interpreter")
        self.sid = "PA_agent"
        self._room = room

    async def publish_track(self, track: rtc.LocalAudioTrack, options: Any = None) -> FakePublication:
        self._room.check_connected()
        publication = await super().publish_track(track, options)
        self._room.listen(track)
        return publication

    async def unpublish_track(self, track_sid: str) -> None:
        self._room.check_connected()
        name = self.track_publications[track_sid].name
        await super().unpublish_track(track_sid)
        REPORT.unpublished_at[name] = time.monotonic()

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self._room.check_connected()
        await super().set_attributes(attributes)

    async def stream_text(  # type: ignore[override]
        self,
        *,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        sender_identity: str | None = None,
        **_: Any,
    ) -> TimedWriter:
        self._room.check_connected()
        return TimedWriter(self._room, topic, dict(attributes or {}), sender_identity or self.identity)


@dataclass
class SubscribablePublication(FakePublication):
    def set_subscribed(self, subscribed: bool) -> None:  # called by the framework's auto-subscribe
        pass


class ScriptedRoom(FakeRoom):
    """A room where "alice" is already speaking when the agent connects."""

    def __init__(self) -> None:
        super().__init__(ROOM_NAME)
        self._info = SimpleNamespace(name=ROOM_NAME)  # the framework writes the job's room name here
        self.local_participant = RoomParticipant(self)
        self.connected = False
        self._baseline: set[asyncio.Task[Any]] = set()
        self._harness: list[Any] = []  # speakers and listeners
        self._listened: dict[str, Any] = {}
        self._watch: asyncio.Task[None] | None = None

    def isconnected(self) -> bool:
        return self.connected

    def check_connected(self) -> None:
        if not self.connected:
            raise DisconnectedError("the room is disconnected")

    def publish_audio(self, participant: Any, track: rtc.Track) -> FakePublication:
        publication = SubscribablePublication(track=track)
        participant.track_publications[publication.sid] = publication
        self.emit("track_published", publication, participant)
        self.emit("track_subscribed", track, publication, participant)
        return publication

    async def connect(self, url: str, token: str, options: Any = None) -> None:
        from agent.filemode import read_wav
        from tests.loopback import LoopbackSpeaker

        REPORT.job_pid = os.getpid()
        REPORT.signals = _signal_masks()
        REPORT.connected_at = time.monotonic()
        self._baseline = set(asyncio.all_tasks())
        self.connected = True
        alice = self.join("alice", attributes={"language": "en"})
        speaker = LoopbackSpeaker(read_wav(Path(os.environ[WAV_ENV])))
        self._harness.append(speaker)
        self.publish_audio(alice, speaker.track)
        speaker.start()
        assert speaker._task is not None
        speaker._task.set_name(HARNESS + "speaker")
        speaker._task.add_done_callback(lambda _: setattr(REPORT, "speech_done_at", time.monotonic()))

    def listen(self, track: rtc.LocalAudioTrack) -> None:
        listener = Listener(track)
        self._harness.append(listener)
        self._listened[track.name] = listener

    async def disconnect(self) -> None:
        REPORT.disconnected_at = time.monotonic()
        self.connected = False
        self.emit("disconnected", rtc.DisconnectReason.CLIENT_INITIATED)
        # the framework runs the job's shutdown callbacks right after this returns
        self._watch = asyncio.create_task(self._after_shutdown_callbacks(), name=HARNESS + "watch")

    async def _after_shutdown_callbacks(self) -> None:
        try:
            me = asyncio.current_task()
            callbacks = [t for t in asyncio.all_tasks() if t.get_name() == "job_shutdown_callback"]
            if not callbacks:
                REPORT.errors.append("found no job_shutdown_callback task after the room disconnected")
            else:
                await asyncio.wait(callbacks)
            REPORT.callbacks_done_at = time.monotonic()
            for _ in range(3):  # let tasks cancelled by the callbacks finish (the framework is about
                await asyncio.sleep(0)  # to cancel whatever is left, this task included)
            pending = [
                t
                for t in asyncio.all_tasks()
                if not t.done()
                and t is not me
                and t not in self._baseline
                and t not in callbacks
                and not t.get_name().startswith(HARNESS)
            ]
            REPORT.pending_tasks = [f"{t.get_name()}: {t.get_coro()!r}" for t in pending]
            REPORT.publish_log = [list(entry) for entry in self.local_participant.publish_log]
            for name, listener in self._listened.items():
                until = min(REPORT.unpublished_at.get(name, REPORT.disconnected_at), REPORT.disconnected_at)
                REPORT.audio[name] = _tone_runs([f for f in listener.frames if f[0] <= until])
                REPORT.audio_after_unpublish_s[name] = sum(
                    r["seconds"] for r in _tone_runs([f for f in listener.frames if f[0] > until])
                )
            REPORT.watch_completed = True
        except Exception as e:
            REPORT.errors.append(repr(e))
        finally:
            REPORT.write()
            for item in self._harness:
                await item.aclose()


class Listener:
    """A room member listening to one of the agent's tracks: every frame, with when it arrived."""

    def __init__(self, track: rtc.LocalAudioTrack) -> None:
        self.frames: list[tuple[float, np.ndarray]] = []
        self._stream = rtc.AudioStream.from_track(track=track, sample_rate=LISTEN_RATE, num_channels=1)
        self._stream._task.set_name(HARNESS + "listener-stream")
        self._task = asyncio.create_task(self._listen(), name=HARNESS + "listener")

    async def _listen(self) -> None:
        async for event in self._stream:
            self.frames.append((time.monotonic(), np.frombuffer(event.frame.data, np.int16).copy()))

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._stream.aclose()


def _tone_runs(frames: list[tuple[float, np.ndarray]]) -> list[dict[str, float]]:
    """Runs of audible audio: when each started and ended arriving, and how many seconds it holds."""
    runs: list[dict[str, float]] = []
    for arrived, samples in frames:
        audible = samples.size > 0 and float(np.sqrt(np.mean(samples.astype(np.float32) ** 2))) > 500
        seconds = samples.size / LISTEN_RATE
        if audible:
            if runs and arrived - runs[-1]["last_at"] < 0.2:
                runs[-1]["last_at"] = arrived
                runs[-1]["seconds"] += seconds
            else:
                runs.append({"first_at": arrived, "last_at": arrived, "seconds": seconds})
    return runs


def _signal_masks() -> dict[str, str]:
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines) if k in {"SigIgn", "SigCgt"}}


def _collect_garbage_at_exit() -> None:
    """At the job process's exit (its log forwarding is closed by then): surface unclosed resources."""
    logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
    gc.collect()
