"""What a meeting costs, today's behaviour against listener-driven synthesis: `python -m bench cost`.

    uv run python -m bench cost                              # today, new, one-language (about 8 minutes)
    uv run python -m bench cost --minutes 1 --one-language-minutes 0.5     # a smoke run
    uv run python -m bench cost today new                    # some of the runs

Through a real LiveKit server, as `python -m bench room` runs it (bench/room/: `livekit-server`, the fakes of
`python -m bench` on the latency model in a process of their own, the worker as `python -m agent start`), a
fresh worker and room per run:

- `today` (SYNTHESIS=always: every target language translated and spoken all the time) and `new`
  (SYNTHESIS=listeners: a language is spoken only while someone hears it): one room whose metadata asks for
  fr, de and es; two English speakers taking turns (`--minutes` of the bench's synthetic speech, the same
  script in both runs); a listener per language (`interpret_to` and `listening_to` its language, subscribed
  to its track); halfway through, the es listener leaves the room;
- `one-language`: the same two speakers, target language es, one es listener, the new behaviour
  (`--one-language-minutes`): what one interpreted minute, and an hour of such a meeting, into one language
  costs.

Measured from the worker's own counts: its Prometheus endpoint (`interpreter_usage_total`,
`interpreter_cost_usd_total`, `interpreter_utterances_total`) read just as the es listener leaves and once
the last translation has played, its "room usage at job end" line as a cross-check, and its latency records
(bench/room/hook/) for each language's utterances by outcome. Priced by the price table (`load_prices`,
PRICES_FILE if given with --set), per interpreted minute (a minute of speech the speakers said). The LLM
tokens are the fake's (a word a token, no reasoning tokens): real tokens run higher; STT seconds and TTS
characters are what the worker sent, as the providers bill them.

Writes cost.json to bench-results/ (`--out` another folder, `--write-results` the committed
bench/results/cost/) and prints the figures with the machine's load during the run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from agent.settings.prices import DEFAULT_PRICES, load_prices
from bench.cost.figures import goals, run_figures, saving_pct
from bench.cost.meeting import run_meeting
from bench.cost.report import print_report
from bench.cost.script import plans
from bench.harness.cli import COMMITTED, command_parser, output_dir, worker_settings
from bench.harness.machine import MachineLoad
from bench.harness.model import LatencyModel
from bench.harness.output import write_results
from bench.room.rooms import Context
from bench.room.stage import parse_run, run_to_end, stage

RUNS = ("today", "new", "one-language")


async def run(args: argparse.Namespace, model: LatencyModel, settings: dict[str, str]) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    chosen = plans(args.minutes, args.one_language_minutes)
    async with stage(args, model, "bench-cost-") as (server, urls, workdir):
        ctx = Context(server, urls, model, settings, workdir, args.sessions_per_core, args.dispatch_timeout)
        for label in RUNS:
            if label not in args.runs:
                continue
            plan = chosen[label]
            print(f"running {label} (SYNTHESIS={plan.synthesis}, {', '.join(plan.languages)})…", flush=True)
            runs[label] = await run_meeting(ctx, plan, model.seed)
    return runs


def parse(argv: list[str]) -> argparse.Namespace:
    parser = command_parser("cost", __doc__)
    parser.add_argument("runs", nargs="*", default=list(RUNS))
    parser.add_argument("--minutes", type=float, default=3.0, help="the meeting's length (today and new)")
    parser.add_argument("--one-language-minutes", type=float, default=1.0, help="the one-language run's")
    parser.add_argument("--length-factor", type=float, default=1.1, help="translated/original speech length")
    parser.add_argument("--sessions-per-core", type=int, default=200, help="the worker's SESSIONS_PER_CORE")
    parser.add_argument("--dispatch-timeout", type=float, default=45.0, help="s for a room to get its agent")
    return parse_run(parser, argv, "runs", RUNS)


def main(argv: list[str]) -> None:
    args = parse(argv)
    settings = worker_settings(args)
    prices_file = Path(settings["PRICES_FILE"]) if "PRICES_FILE" in settings else DEFAULT_PRICES
    prices = load_prices(prices_file)
    out = output_dir(args, COMMITTED / "cost")
    model = LatencyModel.from_args(args)
    load = MachineLoad()
    started = time.perf_counter()
    runs = run_to_end(run(args, model, settings))
    for observed in runs.values():
        observed["figures"] = run_figures(observed, prices)
    figures = {label: observed["figures"] for label, observed in runs.items()}
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench cost", *argv]),
        "model": model.as_dict(),
        "settings": settings,
        "length_factor": args.length_factor,
        "prices": {"file": prices_file.name, "date": prices.date},
        "runs": runs,
        "saving_pct": saving_pct(figures["today"], figures["new"])
        if {"today", "new"} <= set(figures)
        else None,
        "goals": goals(runs, figures, prices),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_results(out, "cost.json", results, load, report=print_report)
