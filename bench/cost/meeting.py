"""One run of `python -m bench cost` through the real LiveKit server: a fresh worker (`python -m agent start`
with SYNTHESIS set by the run, as `python -m bench room` starts it), one room asking for its target
languages, the speakers taking turns, a listener per language (`interpret_to` and `listening_to` its
language, subscribed to its track), the worker's counters read halfway (as the leaving listener leaves) and
at the end (once the last translation has played); then everything closed, and what was observed."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from livekit import api

from agent.room.room_io import ATTR_INTERPRET_TO, ATTR_LANGUAGE, ATTR_LISTENING_TO, track_name
from bench.cost.counters import Snapshot, demand_changes, job_end_usage, scrape
from bench.cost.script import Plan, meeting_timelines, speech_seconds
from bench.harness.modelled_providers import fetch_records, reset_records
from bench.harness.provider_process import provider_env
from bench.harness.speech import Timeline
from bench.room.participants import AGENT_NAME, BenchListener, BenchSpeaker
from bench.room.rooms import Context, close_participants, read_records, wait_quiet, worker_env
from tests.participants import LISTEN_RATE, Participant
from tests.room_worker import WorkerProcess

AUDIBLE_RMS = 300.0  # a received 24 kHz frame louder than this (int16 RMS) is speech heard, not silence


class Meeting:
    """The room's people: speakers (the first one's token asks for the interpreter) and a listener per
    language."""

    def __init__(self, name: str, plan: Plan) -> None:
        self.name = name
        self.plan = plan
        self.speakers = [BenchSpeaker(f"{name}-speaker{i}") for i in range(plan.speakers)]
        self.listeners = {
            language: BenchListener(f"{name}-listener-{language}", track_name(language))
            for language in plan.languages
        }
        self.left: set[str] = set()  # languages whose listener has left

    def people(self) -> list[Participant]:
        return [*self.speakers, *self.listeners.values()]

    async def join(self, ctx: Context) -> None:
        metadata = json.dumps({"target_languages": list(self.plan.languages)})
        for i, speaker in enumerate(self.speakers):
            # the first speaker's join creates the room, and its token's dispatch applies then
            asked = api.RoomAgentDispatch(agent_name=AGENT_NAME, metadata=metadata) if i == 0 else None
            token = ctx.server.token(
                speaker.identity, self.name, attributes={ATTR_LANGUAGE: "en"}, dispatch=asked
            )
            await speaker.connect(ctx.server.url, token, auto_subscribe=False)
        for language, listener in self.listeners.items():
            attributes = {ATTR_INTERPRET_TO: language, ATTR_LISTENING_TO: language}
            token = ctx.server.token(listener.identity, self.name, attributes=attributes)
            await listener.connect(ctx.server.url, token, auto_subscribe=False)
            listener.subscribe_published()
        for speaker in self.speakers:
            await speaker.publish()

    async def served(self, within_s: float) -> float:
        """Until every listener is subscribed to its track (the interpreter is at work); how long it took."""
        began = time.perf_counter()
        while not all(listener.track in listener.heard for listener in self.listeners.values()):
            if time.perf_counter() - began > within_s:
                raise RuntimeError(f"{self.name}: not every listener had its track within {within_s:.0f} s")
            await asyncio.sleep(0.1)
        return time.perf_counter() - began

    async def leave(self, language: str) -> None:
        await self.listeners[language].aclose()
        self.left.add(language)


async def run_meeting(ctx: Context, plan: Plan, seed: int) -> dict[str, Any]:
    """One run, in a fresh room against a fresh worker: what was said, the worker's counters halfway and at
    the end, its job-end line, each language's utterances and captions, what each listener heard."""
    ctx.steps += 1
    step_dir = ctx.workdir / f"{ctx.steps:02d}-{plan.label}"
    step_dir.mkdir(parents=True, exist_ok=True)
    records_path = step_dir / "records.jsonl"
    env = {**worker_env(ctx, records_path), "SYNTHESIS": plan.synthesis}
    worker = WorkerProcess(ctx.server, provider_env(ctx.urls), step_dir, **env)
    timelines = meeting_timelines(plan.minutes, plan.speakers, random.Random(seed))
    meeting = Meeting(f"cost-{plan.label}", plan)
    out: dict[str, Any] = {
        "run": plan.label,
        "synthesis": plan.synthesis,
        "languages": list(plan.languages),
        "speakers": plan.speakers,
        "leaver": plan.leaver,
        "meeting_s": round(timelines[0].total_s, 2),
        "speech_s": round(speech_seconds(timelines), 2),
        "sentences": sum(len(t.sentences) for t in timelines),
    }
    async with aiohttp.ClientSession() as http:
        await reset_records(ctx.urls, http)
        try:
            await worker.start()
            await meeting.join(ctx)
            out["served_after_s"] = round(await meeting.served(ctx.dispatch_timeout_s), 2)
            counters, t0 = await talk(meeting, timelines, worker.env["PROMETHEUS_PORT"], records_path, http)
            out.update(counters)
            fakes = await fetch_records(ctx.urls, http)
            out["longest_translation_chars"] = max((len(r["reply"]) for r in fakes["llm"]), default=0)
            out["llm_requests"] = len(fakes["llm"])
            out["tts_contexts"] = len(fakes["tts"])
        finally:
            await close_participants(ctx, meeting.people(), worker)
    leave_at = None if out.get("leave_at_s") is None else t0 + out["leave_at_s"]
    out["utterances"] = outcomes(read_records(records_path), leave_at)
    out["captions"] = captions(meeting.speakers[0], leave_at)
    out["heard_s"] = {lang: round(heard_seconds(listener), 1) for lang, listener in meeting.listeners.items()}
    out["job_end"] = job_end_usage(worker.log_path)
    if plan.leaver is not None and out.get("leave_unix") is not None:
        out["stopped_speaking_after_s"] = stopped_speaking(
            demand_changes(worker.log_path, plan.leaver), out["leave_unix"]
        )
    return out


def stopped_speaking(changes: list[tuple[float, str]], left_at: float) -> float | None:
    """How long after the listener left its language's channel stopped speaking (None: it never did)."""
    after = [at - left_at for at, demand in changes if demand != "speak" and at >= left_at]
    return round(after[0], 3) if after else None


async def talk(
    meeting: Meeting,
    timelines: list[Timeline],
    port: str,
    records_path: Path,
    http: aiohttp.ClientSession,
) -> tuple[dict[str, Any], float]:
    """The speakers say their turns (all at once: each is silent while another speaks); halfway the leaving
    language's listener leaves, the counters read just before; at the end, once the last translation has
    played (no latency record completed for a few seconds), the counters read again."""
    pcms = [timeline.render() for timeline in timelines]
    t0 = time.perf_counter()
    speaking = [
        asyncio.create_task(speaker.speak(pcm)) for speaker, pcm in zip(meeting.speakers, pcms, strict=True)
    ]
    out: dict[str, Any] = {"counters": {}, "leave_at_s": None}
    try:
        if meeting.plan.leaver is not None:
            await asyncio.sleep(max(0.0, t0 + timelines[0].total_s / 2 - time.perf_counter()))
            half: Snapshot = await scrape(http, port, time.perf_counter() - t0)
            out["counters"]["half"] = half
            out["leave_at_s"] = round(time.perf_counter() - t0, 3)
            out["leave_unix"] = time.time()
            await meeting.leave(meeting.plan.leaver)
        await asyncio.gather(*speaking)
        # behind real time: this process could not keep up, and the meeting ran longer than its script
        out["speaking_lag_s"] = round(time.perf_counter() - t0 - pcms[0].duration, 2)
        await wait_quiet(records_path)
        out["counters"]["end"] = await scrape(http, port, time.perf_counter() - t0)
    finally:
        for task in speaking:
            task.cancel()
    return out, t0


def outcomes(records: list[Any], leave_at: float | None) -> dict[str, dict[str, Any]]:
    """Per target language, the worker's utterance records by outcome (spoken, captioned, failed, open) and,
    after `leave_at`, those whose speech ended after it."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        language = record.utterance_id.rsplit("-", 1)[-1]
        counts = out.setdefault(
            language, {"spoken": 0, "captioned": 0, "failed": 0, "open": 0, "after_leave": {}}
        )
        counts[record.outcome] = counts.get(record.outcome, 0) + 1
        ended = record.marks.get("speech_end")
        if leave_at is not None and ended is not None and ended > leave_at:
            after = counts["after_leave"]
            after[record.outcome] = after.get(record.outcome, 0) + 1
    return out


def captions(reader: Participant, leave_at: float | None) -> dict[str, dict[str, int]]:
    """Per language, the final translated captions a speaker received (every caption goes to everyone in
    the room), and those after `leave_at`."""
    out: dict[str, dict[str, int]] = {}
    seen: set[tuple[str, str]] = set()
    for caption in reader.final_captions(translated=True):
        language = caption.attributes.get("language", "")
        if (language, caption.segment_id) in seen:
            continue
        seen.add((language, caption.segment_id))
        counts = out.setdefault(language, {"all": 0, "after_leave": 0})
        counts["all"] += 1
        counts["after_leave"] += leave_at is not None and caption.at > leave_at
    return out


def heard_seconds(listener: BenchListener) -> float:
    """Seconds of speech (not silence) the listener received on its track."""
    total = 0
    for _, samples in listener.heard.get(listener.track, []):
        if samples.size and float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) > AUDIBLE_RMS:
            total += samples.size
    return total / LISTEN_RATE
