"""The worker's own counts, as production exposes them: its Prometheus endpoint (PROMETHEUS_PORT; the job
processes' counters summed by prometheus_client's multiprocess mode) read into a `Snapshot`, and the room's
usage line at job end ("room usage at job end", logger agent.worker) read from the worker's log."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

USAGE_LABELS = ("provider", "model", "item", "language")
JOB_END = "room usage at job end"
DEMAND_CHANGED = "interpretation demand changed"

# {"at_s": s since the speakers began, "usage": [{provider, model, item, language, amount}],
#  "cost_usd": {provider: usd, as the worker priced it}, "utterances": {outcome: n}}
Snapshot = dict[str, Any]


def parse(text: str, at_s: float) -> Snapshot:
    """The usage, cost and utterance counters of one scrape (the Prometheus text format)."""
    usage: list[dict[str, Any]] = []
    cost: dict[str, float] = {}
    utterances: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "interpreter_usage_total":
                usage.append({**{k: sample.labels.get(k, "") for k in USAGE_LABELS}, "amount": sample.value})
            elif sample.name == "interpreter_cost_usd_total":
                cost[sample.labels.get("provider", "")] = sample.value
            elif sample.name == "interpreter_utterances_total":
                utterances[sample.labels.get("outcome", "")] = sample.value
    return {"at_s": round(at_s, 2), "usage": usage, "cost_usd": cost, "utterances": utterances}


async def scrape(http: aiohttp.ClientSession, port: str, at_s: float) -> Snapshot:
    async with http.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as r:
        r.raise_for_status()
        return parse(await r.text(), at_s)


def log_lines(log: Path, message: str) -> list[dict[str, Any]]:
    """The fields of every line of a worker's log (JSON lines) whose message is `message`."""
    found = []
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if message not in line or not line.startswith("{"):
            continue
        try:
            fields = json.loads(line)
        except ValueError:
            continue
        if isinstance(fields, dict) and fields.get("message") == message:
            found.append(fields)
    return found


def job_end_usage(log: Path) -> list[dict[str, Any]]:
    """Every "room usage at job end" line: its `usage` and `cost_usd`."""
    return [{"usage": f.get("usage", []), "cost_usd": f.get("cost_usd")} for f in log_lines(log, JOB_END)]


def demand_changes(log: Path, language: str) -> list[tuple[float, str]]:
    """When (unix s) a language's channel changed what it does (speak, caption, none), and to what."""
    return [
        (datetime.fromisoformat(f["timestamp"]).timestamp(), str(f.get("demand")))
        for f in log_lines(log, DEMAND_CHANGED)
        if f.get("language") == language and "timestamp" in f
    ]
