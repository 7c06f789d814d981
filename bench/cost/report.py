"""What `python -m bench cost` prints: per run, per interpreted minute, the usage and cost by provider; the
cost of each half; the saving; the goals, met or not; and what each language's listeners got (utterances
spoken, captioned, failed; captions; audio heard), so a saving never hides lost speech."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROVIDERS = ("deepgram", "cerebras", "groq", "cartesia")
OUTCOMES = ("spoken", "captioned", "failed", "open")


def print_report(results: Mapping[str, Any]) -> None:
    print(f"\n{usage_table(results)}\n\n{goals_text(results)}\n\n{heard_table(results)}\n\n{checks(results)}")


def usage_table(results: Mapping[str, Any]) -> str:
    prices = results["prices"]
    lines = [
        f"Per interpreted minute (a minute of speech said), priced by {prices['file']} of {prices['date']}; "
        "USD/hour: an hour of such a meeting, pauses and turn changes included:",
        f"{'run':<14}{'synthesis':<11}{'speech/meeting min':>19}{'STT min':>9}{'LLM in':>8}{'LLM out':>8}"
        f"{'TTS characters per language':>31}"
        + "".join(f"{p:>10}" for p in PROVIDERS)
        + f"{'USD/min':>9}{'run USD':>9}{'USD/hour':>10}",
    ]
    for label, run in results["runs"].items():
        f = run["figures"]
        pm = f["per_minute"]
        tts = ", ".join(f"{lang} {chars:.0f}" for lang, chars in pm["tts_characters"].items())
        minutes = f"{f['interpreted_minutes']:.2f} / {f['meeting_minutes']:.2f}"
        lines.append(
            f"{label:<14}{run['synthesis']:<11}{minutes:>19}"
            f"{pm['stt_audio_minutes']:>9.2f}{pm['llm_input_tokens']:>8.0f}{pm['llm_output_tokens']:>8.0f}"
            f"{tts:>31}"
            + "".join(f"{pm['usd'].get(p, 0.0):>10.4f}" for p in PROVIDERS)
            + f"{pm['usd_total']:>9.4f}{f['usd']:>9.4f}{f['usd_per_meeting_hour']:>10.2f}"
        )
    for label, run in results["runs"].items():
        f = run["figures"]
        if "usd_halves" in f:
            first, second = f["usd_halves"]
            leaver = run["leaver"]
            before, after = f["leaver_chars_before_leave"], f["leaver_chars_after_leave"]
            lines.append(
                f"  {label}: USD before / after the {leaver} listener left {first:.4f} / {second:.4f}; "
                f"{leaver} TTS characters {before:.0f} / {after:.0f}"
            )
    if (saving := results.get("saving_pct")) is not None:
        lines.append(f"new against today: {saving:.1f} % less per interpreted minute")
    return "\n".join(lines)


def goals_text(results: Mapping[str, Any]) -> str:
    lines = ["Goals:"]
    for i, g in enumerate(results["goals"], start=1):
        lines.append(f"  ({i}) {g['goal']}: {'met' if g['met'] else 'NOT met'} — {g['figure']}")
    return "\n".join(lines)


def heard_table(results: Mapping[str, Any]) -> str:
    """Per run and language: the worker's utterance records by outcome (after the leave in brackets), the
    final translated captions a speaker received, and the seconds of speech the language's listener heard."""
    lines = [
        "What was heard, per language (worker's records; [after the listener left]; captions received; "
        "speech heard by its listener):",
        f"{'run':<14}{'lang':<6}{'spoken':>12}{'captioned':>12}{'failed':>10}{'open':>8}{'captions':>14}"
        f"{'heard s':>9}",
    ]
    for label, run in results["runs"].items():
        for lang in run["languages"]:
            u = run["utterances"].get(lang, {})
            after = u.get("after_leave", {})
            caps = run["captions"].get(lang, {"all": 0, "after_leave": 0})
            leaver = run.get("leaver") is not None
            n = {k: f"{u.get(k, 0)}" + (f" [{after.get(k, 0)}]" if leaver else "") for k in OUTCOMES}
            cap = f"{caps['all']}" + (f" [{caps['after_leave']}]" if leaver else "")
            lines.append(
                f"{label:<14}{lang:<6}{n['spoken']:>12}{n['captioned']:>12}{n['failed']:>10}{n['open']:>8}"
                f"{cap:>14}{run['heard_s'].get(lang, 0.0):>9.1f}"
            )
    return "\n".join(lines)


def checks(results: Mapping[str, Any]) -> str:
    """The cross-checks: the worker's own priced cost and its job-end line against the bench's pricing;
    whether the participants kept up with real time."""
    lines = ["Checks:"]
    for label, run in results["runs"].items():
        f = run["figures"]
        ends = run.get("job_end") or []
        end_usd = ", ".join(f"{e['cost_usd']}" for e in ends) or "no job-end line"
        lines.append(
            f"  {label}: bench-priced {f['usd']:.4f} USD, the worker's cost counter {f['worker_usd']:.4f}, "
            f"its job-end line {end_usd}; served after {run.get('served_after_s')} s; speakers behind real "
            f"time by {run.get('speaking_lag_s')} s; {run['sentences']} sentences, {run['llm_requests']} LLM "
            f"requests, {run['tts_contexts']} TTS contexts"
            + (f"; not priced: {', '.join(f['unpriced'])}" if f["unpriced"] else "")
        )
    return "\n".join(lines)
