"""The figures of `python -m bench cost`, from the worker's counters (`bench/cost/counters.py`) and the price
table (agent/settings/prices.toml): per interpreted minute (a minute of speech the speakers said) the STT
audio minutes, LLM tokens, TTS characters per language and the cost per provider; the saving of the new
behaviour against today's; the issue's goals, each met or not, with its figure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from agent.settings.prices import Prices

Key = tuple[str, str, str, str]  # provider, model, item, language
STT, TTS = "deepgram", "cartesia"
TTS_ITEMS = ("characters", "clone_characters")
SAVING_GOAL = 100 / 3  # %: the three-language meeting at least a third cheaper than today


def amounts(snapshot: Mapping[str, Any] | None) -> dict[Key, float]:
    out: dict[Key, float] = defaultdict(float)
    for line in (snapshot or {}).get("usage", []):
        out[(line["provider"], line["model"], line["item"], line["language"])] += float(line["amount"])
    return dict(out)


def minus(later: Mapping[Key, float], earlier: Mapping[Key, float]) -> dict[Key, float]:
    """What was counted between two reads of the same counters."""
    return {k: later.get(k, 0.0) - earlier.get(k, 0.0) for k in set(later) | set(earlier)}


def total(
    usage: Mapping[Key, float],
    items: Iterable[str],
    *,
    provider: str | None = None,
    language: str | None = None,
) -> float:
    wanted = set(items)
    return sum(
        amount
        for (p, _, item, lang), amount in usage.items()
        if item in wanted and (provider is None or p == provider) and (language is None or lang == language)
    )


def costs(usage: Mapping[Key, float], prices: Prices) -> dict[str, float]:
    """USD by provider, by the price table."""
    out: dict[str, float] = defaultdict(float)
    for (provider, model, item, _), amount in usage.items():
        out[provider] += prices.cost(provider, model, item, amount)
    return dict(out)


def unpriced(usage: Mapping[Key, float], prices: Prices) -> list[str]:
    """What was used that the table does not price (it counts for nothing in the cost)."""
    return sorted(
        {
            f"{p} {item}"
            for (p, model, item, _), a in usage.items()
            if a > 0 and prices.price(p, model, item) is None
        }
    )


def per_minute(
    usage: Mapping[Key, float], minutes: float, prices: Prices, languages: Iterable[str]
) -> dict[str, Any]:
    """Usage and cost per interpreted minute."""
    per = 1 / minutes if minutes > 0 else float("nan")
    usd = {p: v * per for p, v in sorted(costs(usage, prices).items())}
    return {
        "stt_audio_minutes": total(usage, ["audio_seconds"], provider=STT) / 60 * per,
        "llm_input_tokens": total(usage, ["input_tokens"]) * per,
        "llm_output_tokens": total(usage, ["output_tokens"]) * per,
        "tts_characters": {lang: total(usage, TTS_ITEMS, language=lang) * per for lang in languages},
        "usd": usd,
        "usd_total": sum(usd.values()),
    }


def run_figures(run: Mapping[str, Any], prices: Prices) -> dict[str, Any]:
    """One run's figures: per interpreted minute over the whole run; the cost of each half (before and after
    the listener left) and the leaving language's characters after it left."""
    minutes = run["speech_s"] / 60
    end = amounts(run["counters"].get("end"))
    out: dict[str, Any] = {
        "interpreted_minutes": minutes,
        "meeting_minutes": run["meeting_s"] / 60,
        "per_minute": per_minute(end, minutes, prices, run["languages"]),
        "usd": sum(costs(end, prices).values()),
        # an hour of such a meeting (its turn changes and pauses included)
        "usd_per_meeting_hour": sum(costs(end, prices).values()) / run["meeting_s"] * 3600,
        "worker_usd": sum(run["counters"].get("end", {}).get("cost_usd", {}).values()),
        "unpriced": unpriced(end, prices),
    }
    if (half_snapshot := run["counters"].get("half")) is not None:
        half = amounts(half_snapshot)
        after = minus(end, half)
        out["usd_halves"] = [sum(costs(half, prices).values()), sum(costs(after, prices).values())]
        if run.get("leaver"):
            out["leaver_chars_after_leave"] = total(after, TTS_ITEMS, language=run["leaver"])
            out["leaver_chars_before_leave"] = total(half, TTS_ITEMS, language=run["leaver"])
    return out


def saving_pct(today: Mapping[str, Any], new: Mapping[str, Any]) -> float | None:
    """How much less an interpreted minute costs with the new behaviour than today's, in %."""
    before, after = today["per_minute"]["usd_total"], new["per_minute"]["usd_total"]
    return None if not before else 100 * (1 - after / before)


def goals(
    runs: Mapping[str, Mapping[str, Any]], figures: Mapping[str, Mapping[str, Any]], prices: Prices
) -> list[dict[str, Any]]:
    """The issue's goals: (1) nothing synthesized into a language nobody hears (after its last listener
    left: at most one utterance in flight, the run's longest translation, allowed); (2) the meeting at least
    a third cheaper than today; (3) what one interpreted minute into one language costs (met when measured,
    every item priced)."""
    out: list[dict[str, Any]] = []
    if "new" in figures and "leaver_chars_after_leave" in figures["new"]:
        new, run = figures["new"], runs["new"]
        after, allowed = new["leaver_chars_after_leave"], run["longest_translation_chars"]
        today = figures.get("today", {}).get("leaver_chars_after_leave")
        shown = f"{run['leaver']}: {after:.0f} characters synthesized after its listener left (allowed: one "
        shown += f"utterance in flight, the run's longest translation, {allowed} characters)"
        if (stopped := run.get("stopped_speaking_after_s")) is not None:
            shown += f"; the worker stopped speaking it {stopped * 1000:.0f} ms after the leave"
        if today is not None:
            shown += f"; today {today:.0f}"
        out.append(
            {
                "goal": "nothing synthesized for a language nobody hears",
                "figure": shown,
                "met": after <= allowed,
            }
        )
    if "today" in figures and "new" in figures:
        saving = saving_pct(figures["today"], figures["new"])
        t, n = figures["today"]["per_minute"]["usd_total"], figures["new"]["per_minute"]["usd_total"]
        shown = f"${t:.4f} → ${n:.4f} per interpreted minute: " + (
            "–" if saving is None else f"{saving:.1f} % less"
        )
        out.append(
            {
                "goal": "the three-language meeting at least a third cheaper than today",
                "figure": shown,
                "met": saving is not None and saving >= SAVING_GOAL,
            }
        )
    if "one-language" in figures:
        one = figures["one-language"]
        usd = one["per_minute"]["usd_total"]
        shown = f"${usd:.4f} per interpreted minute into one language (prices of {prices.date})"
        if one["unpriced"]:
            shown += f"; not priced: {', '.join(one['unpriced'])}"
        out.append(
            {
                "goal": "the cost of one interpreted minute into one language",
                "figure": shown,
                "met": not one["unpriced"],
            }
        )
    return out
