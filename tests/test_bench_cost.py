"""The cost benchmark's arithmetic (`bench/cost/figures.py`) on made-up counter reads, the Prometheus text it
reads them from (`bench/cost/counters.py`) and the speakers' turns (`bench/cost/script.py`)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from agent.settings.prices import Price, Prices
from bench.cost.counters import parse
from bench.cost.figures import goals, run_figures, saving_pct
from bench.cost.script import meeting_timelines, speech_seconds

# round prices: a minute of STT 0.006, a million input / output tokens 1 / 2, a million characters 10
PRICES = Prices(
    date="2026-01-01",
    entries={
        ("deepgram", "*", "audio_seconds"): Price(0.0001, "", ""),
        ("cerebras", "*", "input_tokens"): Price(1e-6, "", ""),
        ("cerebras", "*", "output_tokens"): Price(2e-6, "", ""),
        ("cartesia", "*", "characters"): Price(1e-5, "", ""),
    },
)
LANGUAGES = ["fr", "de", "es"]


def snapshot(stt_s: float, tts: dict[str, float], tokens: float = 1000.0) -> dict[str, Any]:
    usage = [
        {
            "provider": "deepgram",
            "model": "nova-3",
            "item": "audio_seconds",
            "language": "en",
            "amount": stt_s,
        }
    ]
    for language, chars in tts.items():
        usage += [
            {
                "provider": "cartesia",
                "model": "sonic-3",
                "item": "characters",
                "language": language,
                "amount": chars,
            },
            {
                "provider": "cerebras",
                "model": "m",
                "item": "input_tokens",
                "language": language,
                "amount": tokens,
            },
            {
                "provider": "cerebras",
                "model": "m",
                "item": "output_tokens",
                "language": language,
                "amount": 0.0,
            },
        ]
    return {"at_s": 0.0, "usage": usage, "cost_usd": {}, "utterances": {}}


def run(
    label: str, half: dict[str, float], end: dict[str, float], *, longest: int = 50, leaver: str | None = "es"
) -> dict[str, Any]:
    """Two minutes of speech in a meeting of three, 240 s of STT in all (two speakers' streams)."""
    return {
        "run": label,
        "languages": list(end),
        "leaver": leaver,
        "speech_s": 120.0,
        "meeting_s": 180.0,
        "longest_translation_chars": longest,
        "counters": {"half": snapshot(120.0, half), "end": snapshot(240.0, end)},
    }


def test_per_minute_usage_and_cost_by_the_price_table() -> None:
    today = run("today", {k: 1000.0 for k in LANGUAGES}, {k: 2000.0 for k in LANGUAGES})
    f = run_figures(today, PRICES)
    pm = f["per_minute"]
    assert f["interpreted_minutes"] == 2.0
    assert pm["stt_audio_minutes"] == pytest.approx(2.0)  # 4 minutes of audio for 2 of speech
    assert pm["tts_characters"] == {k: pytest.approx(1000.0) for k in LANGUAGES}
    assert pm["llm_input_tokens"] == pytest.approx(1500.0)  # the three languages' 1000 over 2 minutes
    assert pm["usd"]["deepgram"] == pytest.approx(0.012)  # 240 s × 0.0001 over 2 minutes
    assert pm["usd"]["cartesia"] == pytest.approx(0.03)
    assert pm["usd"]["cerebras"] == pytest.approx(0.0015)
    assert pm["usd_total"] == pytest.approx(0.0435)
    assert f["usd"] == pytest.approx(0.087)
    assert f["leaver_chars_before_leave"] == 1000.0 and f["leaver_chars_after_leave"] == 1000.0
    assert f["usd_halves"] == pytest.approx([0.045, 0.042])  # the tokens were all counted by halfway
    assert f["unpriced"] == []


def test_saving_and_the_goals() -> None:
    today = run("today", {k: 1000.0 for k in LANGUAGES}, {k: 2000.0 for k in LANGUAGES})
    # es stops 40 characters (one utterance in flight) after its listener left
    new = run("new", {k: 1000.0 for k in LANGUAGES}, {"fr": 2000.0, "de": 2000.0, "es": 1040.0})
    one = run("one-language", {}, {"es": 1000.0}, leaver=None)
    one["counters"]["half"] = None
    runs = {"today": today, "new": new, "one-language": one}
    figures = {label: run_figures(r, PRICES) for label, r in runs.items()}
    # per minute, new: 0.012 + 0.0252 (5040 characters) + 0.0015 (the tokens are made up alike here)
    assert saving_pct(figures["today"], figures["new"]) == pytest.approx(100 * (1 - 0.0387 / 0.0435))
    nothing, third, one_minute = goals(runs, figures, PRICES)
    assert nothing["met"] and "40 characters" in nothing["figure"] and "today 1000" in nothing["figure"]
    assert not third["met"]  # 11 %: the characters are most of the cost, and only es's second half goes
    assert one_minute["met"] and "2026-01-01" in one_minute["figure"]
    assert figures["one-language"]["per_minute"]["usd_total"] == pytest.approx((0.024 + 0.01 + 0.001) / 2)

    too_much = run("new", {k: 1000.0 for k in LANGUAGES}, {"fr": 2000.0, "de": 2000.0, "es": 1051.0})
    figures["new"] = run_figures(too_much, PRICES)
    assert not goals({**runs, "new": too_much}, figures, PRICES)[0]["met"]  # 51 > the longest, 50


def test_an_item_the_table_does_not_price_is_named() -> None:
    r = run("one-language", {}, {"es": 100.0}, leaver=None)
    r["counters"]["end"]["usage"].append(
        {"provider": "cartesia", "model": "sonic-3", "item": "clones", "language": "es", "amount": 1.0}
    )
    assert run_figures(r, PRICES)["unpriced"] == ["cartesia clones"]


def test_the_counters_are_read_from_the_prometheus_text() -> None:
    text = (
        "# HELP interpreter_usage_total usage\n# TYPE interpreter_usage_total counter\n"
        'interpreter_usage_total{item="characters",language="es",model="sonic-3",provider="cartesia"} 42.0\n'
        "# HELP interpreter_cost_usd_total cost\n# TYPE interpreter_cost_usd_total counter\n"
        'interpreter_cost_usd_total{provider="cartesia"} 0.5\n'
        "# HELP interpreter_utterances_total utterances\n# TYPE interpreter_utterances_total counter\n"
        'interpreter_utterances_total{outcome="spoken"} 3.0\n'
    )
    read = parse(text, 1.234)
    assert read["usage"] == [
        {"provider": "cartesia", "model": "sonic-3", "item": "characters", "language": "es", "amount": 42.0}
    ]
    assert read["cost_usd"] == {"cartesia": 0.5} and read["utterances"] == {"spoken": 3.0}
    assert read["at_s"] == 1.23


def test_speakers_take_turns_of_whole_sentences() -> None:
    a, b = meeting_timelines(2.0, 2, random.Random(1))
    assert a.total_s == b.total_s and 100 < a.total_s < 140
    turns = sorted([(t.start, "a") for t in a.turns] + [(t.start, "b") for t in b.turns])
    assert [who for _, who in turns] == ["a", "b"] * (len(turns) // 2) + ["a"] * (len(turns) % 2)
    voiced = sorted(a.voiced + b.voiced)
    assert all(s0 + d0 < s1 for (s0, d0), (s1, _) in itertools.pairwise(voiced))  # never at once
    assert speech_seconds([a, b]) == pytest.approx(sum(d for _, d in voiced))
