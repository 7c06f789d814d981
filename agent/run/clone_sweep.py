"""The clone sweep: own-voice clones left at Cartesia by a job process that died are deleted.

A job deletes its clones itself (agent/room/cloning.py) when a speaker withdraws or leaves and when the
meeting ends. A job process that is killed (SIGKILL, out of memory, a host lost, a kill past Fly's
`kill_timeout`) cannot, and a clone request under way when it died may still have made a clone. So the
worker's main process (never a job) sweeps: once the worker registered, then every CLONE_SWEEP_INTERVAL_S
(±25 %), it lists the account's voices (`GET /voices`, cursor pages of 100, `is_owner=true`; every page
first, then the deletes, so no cursor points at a voice just deleted) and deletes every clone of ours (its
name `interp-<12 hex>` and its description our tag, or empty for clones made before the tag) made more than
CLONE_MAX_AGE_S ago: older than the longest meeting, so never one still in use.

Each delete is tried DELETE_ATTEMPTS times (0.5 s, 1 s apart) within a sweep; a 404 means already gone
(another worker's sweep, or the job itself). A refusal (any other 4xx but 408 and 429: e.g. 401 or 403)
is not tried again by this process; a failure (5xx, 408, 429, no answer) is tried again at the next
sweep, and so is a listing that fails. Logs carry counts only: no voice id, name or key.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from livekit.agents.utils import aio
from livekit.plugins.cartesia.constants import API_VERSION

from agent.room.cloning import CLONE_NAME, CLONE_TAG
from agent.settings.config import CloneSweepSettings
from agent.telemetry import metrics
from agent.telemetry.errors import log_unexpected

logger = logging.getLogger("agent.clone_sweep")

PAGE_LIMIT = 100  # Cartesia's largest page
MAX_PAGES = 100  # 10,000 voices looked at per sweep at most
DELETE_ATTEMPTS = 3
BACKOFF_S = 0.5  # doubling between attempts
REQUEST_TIMEOUT_S = 10.0
JITTER = 0.25  # several workers sweeping do not sweep in step


@dataclass
class SweepCounts:
    listed: int = 0  # voices listed
    ours: int = 0  # of them, clones of ours
    old: int = 0  # of those, older than the max age
    deleted: int = 0  # deleted now (or found gone: 404)
    refused: int = 0  # refused by Cartesia now: not tried again by this process
    failed: int = 0  # still there after every attempt: tried again at the next sweep
    skipped: int = 0  # refused at an earlier sweep: not asked again


def is_our_clone(voice: dict[str, Any]) -> bool:
    """A clone this interpreter made: owned by the account, our name pattern and our tag (or no description:
    clones made before the tag)."""
    name, description = voice.get("name"), voice.get("description") or ""
    return (
        voice.get("is_owner") is not False
        and isinstance(name, str)
        and CLONE_NAME.fullmatch(name) is not None
        and description in (CLONE_TAG, "")
    )


def age_s(voice: dict[str, Any], now_s: float) -> float | None:
    """Seconds since the voice was made (`created_at`, ISO 8601); None if it says no time we can read."""
    created = voice.get("created_at")
    if not isinstance(created, str):
        return None
    try:
        made = datetime.fromisoformat(created)
    except ValueError:
        return None
    if made.tzinfo is None:
        return None
    return now_s - made.timestamp()


class CloneSweep:
    """Sweeps once at `start`, then every `interval_s` (±JITTER), until `aclose`."""

    def __init__(
        self,
        settings: CloneSweepSettings,
        *,
        api_version: str = API_VERSION,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._base_url = settings.base_url.rstrip("/")
        self._headers = {"X-API-Key": settings.api_key, "Cartesia-Version": api_version}
        self._clock = clock
        self._rng = rng or random.Random()
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._refused: set[str] = set()  # voices Cartesia refused to delete: not asked again
        self.sweeps = 0
        self.last: SweepCounts | None = None

    def start(self) -> None:
        if self._task is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
            self._task = asyncio.create_task(self._run(), name="clone-sweep")
            logger.info(
                "clone sweep started",
                extra={"interval_s": self._settings.interval_s, "max_age_s": self._settings.max_age_s},
            )

    async def aclose(self) -> None:
        if self._task is not None:
            await aio.cancel_and_wait(self._task)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                logger.warning("the clone sweep could not list the voices", extra={"error": type(e).__name__})
            except Exception as e:  # a bug: logged, and the next sweep runs all the same
                log_unexpected(logger, "the clone sweep failed", e)
            interval = self._settings.interval_s
            await asyncio.sleep(interval * (1 + JITTER * (2 * self._rng.random() - 1)))

    async def sweep(self) -> SweepCounts:
        """One look at the account's voices; the old clones of ours deleted. What it found and did."""
        self.sweeps += 1
        voices = await self._list()
        now = self._clock()
        counts = SweepCounts(listed=len(voices))
        for voice in voices:
            if not is_our_clone(voice):
                continue
            counts.ours += 1
            age = age_s(voice, now)
            voice_id = voice.get("id")
            if age is None or age <= self._settings.max_age_s or not isinstance(voice_id, str):
                continue
            counts.old += 1
            if voice_id in self._refused:
                counts.skipped += 1
                continue
            outcome = await self._delete(voice_id)
            setattr(counts, outcome, getattr(counts, outcome) + 1)
        if counts.deleted:
            metrics.VOICE_CLONES.labels(outcome="swept").inc(counts.deleted)
        if counts.deleted or counts.refused or counts.failed:  # (a refusal is logged once)
            level = logging.WARNING if counts.failed or counts.refused else logging.INFO
            logger.log(level, "clone sweep: old clones deleted", extra=dict(counts.__dict__))
        self.last = counts
        return counts

    async def _list(self) -> list[dict[str, Any]]:
        assert self._http is not None, "start() first"
        voices: list[dict[str, Any]] = []
        params = {"limit": str(PAGE_LIMIT), "is_owner": "true"}
        for _ in range(MAX_PAGES):
            async with self._http.get(f"{self._base_url}/voices", params=params, headers=self._headers) as r:
                if r.status >= 400:
                    raise ValueError(f"cartesia {r.status}")
                body = await r.json()
            page = body.get("data") if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise ValueError("no voice list in the answer")
            voices += [v for v in page if isinstance(v, dict)]
            last = page[-1].get("id") if page and isinstance(page[-1], dict) else None
            if not body.get("has_more") or not isinstance(last, str):
                return voices
            params["starting_after"] = last
        logger.warning("the clone sweep stopped listing at its page cap", extra={"pages": MAX_PAGES})
        return voices

    async def _delete(self, voice_id: str) -> str:
        """'deleted', 'refused' or 'failed'."""
        assert self._http is not None
        for attempt in range(DELETE_ATTEMPTS):
            if attempt:
                await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1))
            try:
                url = f"{self._base_url}/voices/{voice_id}"
                async with self._http.delete(url, headers=self._headers) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                continue
            if status < 300 or status == 404:
                return "deleted"
            if 400 <= status < 500 and status not in (408, 429):
                self._refused.add(voice_id)
                return "refused"
        return "failed"
