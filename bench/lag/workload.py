"""Per-sentence lags, today's behaviour against the new one, in one run (issue 14).

    uv run python -m bench lag                       # dialogue, short turns, 2-min and 10-min monologue
    uv run python -m bench lag --skip-growth --dialogue-turns 8 --short-turns 10 --monologue-minutes 1
    uv run python -m bench lag --dry-run             # the sessions and the run time, computed from the sizes

Each workload runs the real loops and plugins in this process against the fake providers on the latency
model (`bench/harness/model.py`, as `python -m bench`), once per profile: `today` (the worker settings in
`TODAY`, today's behaviour) and `new` (the defaults), both in `bench/lag/goals.py` with the goals. The
10-minute monologue (the growth check) runs `new` only unless `--growth-profiles` says otherwise. Per sentence
of the synthetic speech (`bench/harness/speech.py`) it measures the start lag and the end lag, per short turn
the first translated audio (`bench/lag/lags.py` says how), what the cuts did to the sentences (pieces per
sentence, words per piece, cuts mid-clause: `bench/lag/cuts.py`), prints one table with the goals and writes
`lag.json` (and `lag_sentences.png`, `bench/lag/report.py`) to `bench-results/` (`--out DIR`,
`--write-results` for the committed `bench/results/`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.harness.cli import (
    add_run_arguments,
    command_parser,
    output_dir,
    worker_settings,
)
from bench.harness.machine import MachineLoad
from bench.harness.model import LatencyModel
from bench.harness.modelled_providers import fetch_records, modelled_providers
from bench.harness.output import write_results
from bench.harness.session import ENDPOINTING_MS, SessionRun, bench_settings, run_session
from bench.harness.speech import Timeline, dialogue_timeline, monologue_timeline, short_turns_timeline
from bench.harness.stats import quantile
from bench.lag.cuts import cuts, phrase_spans
from bench.lag.goals import PROFILES, TODAY, evaluate_goals, profile_env
from bench.lag.lags import (
    SentenceLag,
    first_audio,
    growth,
    order_breaks,
    overlaps,
    sentence_lags,
    translations,
)
from bench.lag.report import draw, report

# Set-up and wind-down of one session beyond its speech (provider process, warm-up, the last translation
# playing out, the STT stream draining): an estimate for the run time printed before the run.
SESSION_OVERHEAD_S = 6.0
KEEP_RECORDS = 1_000_000  # every record of a long run, so nothing is left out of the lags

# -- workloads ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    name: str  # a key of GOALS
    title: str
    timeline: Timeline
    length_factor: float  # translated speech / source speech
    profiles: tuple[str, ...]
    turns: bool  # first audio per turn is measured


def workloads(args: argparse.Namespace, seed: int) -> list[Workload]:
    out = []
    if args.dialogue_turns > 0:
        t = dialogue_timeline(args.dialogue_turns, random.Random(seed))
        title, factor = f"dialogue ({args.dialogue_turns} turns)", args.dialogue_length_factor
        out.append(Workload("dialogue", title, t, factor, PROFILES, True))
    if args.short_turns > 0:
        t = short_turns_timeline(args.short_turns, random.Random(seed))
        title, factor = f"short turns ({args.short_turns})", args.dialogue_length_factor
        out.append(Workload("short", title, t, factor, PROFILES, True))
    factor = args.length_factor
    if args.monologue_minutes > 0:
        t = monologue_timeline(args.monologue_minutes, random.Random(seed), phrases_per_sentence=args.phrases)
        out.append(
            Workload("monologue", f"monologue {args.monologue_minutes:g} min", t, factor, PROFILES, False)
        )
    if args.growth_minutes > 0 and not args.skip_growth:
        t = monologue_timeline(
            args.growth_minutes, random.Random(seed + 1), phrases_per_sentence=args.phrases
        )
        profiles = tuple(p for p in args.growth_profiles.split(",") if p)
        out.append(Workload("growth", f"monologue {args.growth_minutes:g} min", t, factor, profiles, False))
    return out


def estimate_s(loads: list[Workload]) -> float:
    """The run's length from the sizes: each session's speech in real time, plus its set-up and wind-down."""
    return sum((w.timeline.total_s + SESSION_OVERHEAD_S) * len(w.profiles) for w in loads)


async def run_one(
    workload: Workload, profile: str, model: LatencyModel, user: Mapping[str, str]
) -> dict[str, Any]:
    load = MachineLoad()
    pcm = workload.timeline.render()
    async with (
        modelled_providers(model, length_factor=workload.length_factor) as urls,
        aiohttp.ClientSession() as http,
    ):
        env = profile_env(profile, {"STT_ENDPOINTING_MS": str(ENDPOINTING_MS), **user})
        settings = bench_settings(urls, **env)
        drafts = _drafts()
        run = await run_session(settings, pcm, http, workload.name, keep_records=KEEP_RECORDS)
        records = await fetch_records(urls, http)
    figures = measure(workload, run)
    figures |= _requests(len(records["llm"]), len(records["tts"]), figures["utterances"], drafts)
    return figures | {"settings": env, "machine": load.figures()}


def _drafts() -> dict[str, float]:
    """The drafts counted so far in this process, by outcome (`interpreter_drafts_total`)."""
    from prometheus_client import REGISTRY

    return {
        outcome: REGISTRY.get_sample_value("interpreter_drafts_total", {"outcome": outcome}) or 0.0
        for outcome in ("used", "changed", "discarded")
    }


def _requests(asked: int, spoken: int, utterances: int, before: Mapping[str, float]) -> dict[str, Any]:
    """What drafts cost: the LLM requests and TTS contexts the session made, per utterance, and its drafts
    by outcome (a draft thrown away cost an LLM request and its first clause's synthesis)."""
    drafts = {k: round(v - before[k]) for k, v in _drafts().items()}
    return {
        "llm_requests": asked,
        "llm_requests_per_utterance": round(asked / utterances, 3) if utterances else None,
        "tts_contexts": spoken,
        "tts_contexts_per_utterance": round(spoken / utterances, 3) if utterances else None,
        "drafts": drafts,
    }


def measure(workload: Workload, run: SessionRun) -> dict[str, Any]:
    """The figures of one session: lags per sentence, first audio per turn, what was not heard, the checks,
    and what the cuts did to the script's sentences (`bench/lag/cuts.py`: the source captions' spans against
    the script's phrases and sentences)."""
    source = [
        c for c in run.captions.finals(translated=False) if c.start_s is not None and c.end_s is not None
    ]
    spans = {c.segment_id: (c.start_s or 0.0, c.end_s or 0.0) for c in source}
    records = list(run.tracker.completed)
    heard = translations(records, spans, open_records=run.tracker.open_count)
    lags = sentence_lags(workload.timeline.sentences, heard.heard, audio_t0=run.audio_t0)
    firsts = (
        first_audio(workload.timeline.turns, heard.heard, audio_t0=run.audio_t0) if workload.turns else []
    )
    over = overlaps(heard.heard)
    starts = [lag.start_lag for lag in lags if lag.start_lag is not None]
    ends = [lag.end_lag for lag in lags if lag.end_lag is not None]
    heard_firsts = [f for f in firsts if f is not None]
    reasons: dict[str, int] = {}
    for u in heard.unheard:
        reasons[u.reason] = reasons.get(u.reason, 0) + 1
    figures: dict[str, Any] = {
        "start_p50_s": quantile(starts, 50),
        "start_p95_s": quantile(starts, 95),
        "end_p50_s": quantile(ends, 50),
        "end_p95_s": quantile(ends, 95),
        "first_p50_s": quantile(heard_firsts, 50),
        "first_p95_s": quantile(heard_firsts, 95),
        "sentences": len(lags),
        "unheard_sentences": sum(1 for lag in lags if not lag.heard),
        "turns_without_audio": sum(1 for f in firsts if f is None),
        "utterances": len(records) + heard.open,
        "translations_heard": len(heard.heard),
        "failed": reasons.get("failed", 0),
        "captioned": reasons.get("captioned", 0),
        "not_placed": reasons.get("no_playout", 0) + reasons.get("no_caption", 0),
        "open": heard.open,
        "merged": heard.merged,
        "merged_by_queue": run.merged,  # the queue's own count, which `merged` must match when none failed
        "overlaps": len(over),
        "max_overlap_s": max(over, default=0.0),
        "order_breaks": order_breaks(heard.heard),
    }
    timeline = workload.timeline
    figures |= cuts(phrase_spans(timeline.voiced), timeline.sentences, list(spans.values())).figures()
    if workload.name == "growth":
        g = growth(lags, minutes=workload.timeline.total_s / 60)
        figures |= {
            "start_slope_s_per_min": g.start_slope_s_per_min,
            "end_slope_s_per_min": g.end_slope_s_per_min,
            "first_minute": g.first_minute,
            "last_minute": g.last_minute,
        }
    figures["goals"] = evaluate_goals(workload.name, figures)
    figures["speech_end_offset_s"] = _speech_end_offset(run, spans)
    figures["unheard"] = [{"record_id": u.record_id, "reason": u.reason} for u in heard.unheard]
    figures["points"] = [_point(lag) for lag in lags]
    # the pieces' source spans (s), so the cut figures can be checked against the script
    figures["pieces"] = sorted([round(start, 3), round(end, 3)] for start, end in spans.values())
    figures["first_audio_points"] = [
        [round(t.end / 60, 4), None if f is None else round(f, 4)]
        for t, f in zip(workload.timeline.turns, firsts, strict=False)
    ]
    return figures


def _point(lag: SentenceLag) -> dict[str, float | None]:
    s = lag.sentence
    return {
        "start_s": round(s.start, 3),
        "end_s": round(s.end, 3),
        "start_lag_s": None if lag.start_lag is None else round(lag.start_lag, 4),
        "end_lag_s": None if lag.end_lag is None else round(lag.end_lag, 4),
    }


def _speech_end_offset(run: SessionRun, spans: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    """The check of the timeline → clock mapping: each record's SPEECH_END mark (the ears' own mapping of its
    last word, through the frames' arrival) against `audio_t0 + end_s`. A few ms over 0 (a frame arrives
    once it has been spoken) says the mapping holds."""
    from agent.telemetry.latency import Mark

    offsets = []
    for r in run.tracker.completed:
        span = spans.get(r.utterance_id.rsplit("-", 1)[0])
        if span is not None and Mark.SPEECH_END in r.marks:
            offsets.append(r.marks[Mark.SPEECH_END] - (run.audio_t0 + span[1]))
    return {
        "p50": quantile(offsets, 50),
        "min": min(offsets, default=None),
        "max": max(offsets, default=None),
        "n": len(offsets),
    }


# -- command line ---------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = command_parser("lag", __doc__)
    parser.add_argument("--dialogue-turns", type=int, default=40, help="turns of 0.8-2.5 s (0: skip)")
    parser.add_argument("--short-turns", type=int, default=30, help="turns of 0.4-1.2 s (0: skip)")
    parser.add_argument("--monologue-minutes", type=float, default=2.0, help="0: skip")
    parser.add_argument("--growth-minutes", type=float, default=10.0, help="the long monologue (0: skip)")
    parser.add_argument("--skip-growth", action="store_true", help="leave out the long monologue")
    parser.add_argument("--growth-profiles", default="new", help="profiles of the long monologue (today,new)")
    parser.add_argument("--length-factor", type=float, default=1.25, help="monologues: translated/original")
    short = "dialogue and short turns: translated/original (1.1 as in `python -m bench`)"
    parser.add_argument("--dialogue-length-factor", type=float, default=1.1, help=short)
    parser.add_argument("--phrases", type=int, default=3, help="phrases per monologue sentence")
    parser.add_argument("--dry-run", action="store_true", help="print the sessions and run time, run nothing")
    parser.add_argument("--profiles", default="today,new", help="the profiles of the other workloads")
    add_run_arguments(parser, set_help="a worker setting for both profiles")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse(argv)
    user = worker_settings(args)
    profiles = tuple(p for p in args.profiles.split(",") if p)
    unknown = {p for p in (*profiles, *args.growth_profiles.split(",")) if p and p not in PROFILES}
    if unknown:  # stop before anything runs
        raise SystemExit(f"unknown profile(s) {', '.join(sorted(unknown))} (known: {', '.join(PROFILES)})")
    logging.basicConfig(level=logging.ERROR)
    model = LatencyModel.from_args(args)
    loads = [
        w if w.name == "growth" else Workload(w.name, w.title, w.timeline, w.length_factor, profiles, w.turns)
        for w in workloads(args, model.seed)
    ]
    estimate = estimate_s(loads)
    print(
        f"{len(loads)} workloads, {sum(len(w.profiles) for w in loads)} sessions; estimated run time "
        f"{estimate / 60:.1f} min (speech in real time + ~{SESSION_OVERHEAD_S:.0f} s a session)",
        flush=True,
    )
    if args.dry_run:
        for w in loads:
            print(f"  {w.title}: {w.timeline.total_s / 60:.1f} min of speech × {', '.join(w.profiles)}")
        return
    out = output_dir(args)
    load = MachineLoad()
    results: dict[str, Any] = {
        "model": model.as_dict(),
        "today": TODAY,
        "settings": user,
        "estimated_s": round(estimate, 1),
        "workloads": [],
    }
    for w in loads:
        entry: dict[str, Any] = {
            "workload": w.name,
            "title": w.title,
            "turns": w.turns,
            "length_factor": w.length_factor,
            "speech_s": round(w.timeline.total_s, 1),
            "profiles": {},
        }
        for profile in w.profiles:
            print(f"running {w.title}, {profile}…", flush=True)
            entry["profiles"][profile] = asyncio.run(run_one(w, profile, model, user))
        results["workloads"].append(entry)
    write_results(out, "lag.json", results, load, draw=draw, report=report)
