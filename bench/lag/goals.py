"""The lag benchmark's two profiles (`today`, the behaviour before issue 14, and `new`, the defaults) and its
goals per workload (issue 14), each a check on a session's figures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# Today's behaviour (the issue's "before"): no pause cut of our own, a forced final after 1.0 s of continuous
# speech, every clause's trailing silence played. Variables a branch does not know are ignored by
# `load_settings`, so the profile runs on any branch.
TODAY: dict[str, str] = {"PAUSE_CUT_MS": "0", "STT_MAX_SEGMENT_S": "1.0", "TRIM_SILENCE": "off"}
PROFILES = ("today", "new", "clause", "flux", "flux-eager", "flux-clause")
# issue 23's: nova-3 with clause cuts, Deepgram Flux, Flux with drafts on its eager end of turn, and with
# clause cuts too
PROFILE_ENV: dict[str, dict[str, str]] = {
    "clause": {"CLAUSE_CUTS": "on"},
    "flux": {"DEEPGRAM_MODEL": "flux-general-en", "SOURCE_LANGUAGE": "en"},
    "flux-eager": {
        "DEEPGRAM_MODEL": "flux-general-en",
        "SOURCE_LANGUAGE": "en",
        "DEEPGRAM_EAGER_EOT_THRESHOLD": "0.5",
    },
    "flux-clause": {
        "DEEPGRAM_MODEL": "flux-general-en",
        "SOURCE_LANGUAGE": "en",
        "DEEPGRAM_EAGER_EOT_THRESHOLD": "0.5",
        "CLAUSE_CUTS": "on",
    },
}


def profile_env(profile: str, user: Mapping[str, str]) -> dict[str, str]:
    """A profile's worker settings: `--set` values apply to both, but never override today's behaviour."""
    if profile == "today":
        return {**user, **TODAY}
    if profile == "new":
        return dict(user)
    if profile in PROFILE_ENV:
        return {**user, **PROFILE_ENV[profile]}
    raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")


Check = Callable[[Mapping[str, Any]], bool]


def _at_most(key: str, limit: float) -> Check:
    def check(figures: Mapping[str, Any]) -> bool:
        value = figures.get(key)
        return value is not None and value <= limit

    return check


def _none(*keys: str) -> Check:
    return lambda figures: all(figures.get(k) == 0 for k in keys)


_COMMON: dict[str, Check] = {
    "nothing dropped": _none("unheard_sentences", "failed", "captioned", "open"),
    "no overlap": _none("overlaps"),
    "order kept": _none("order_breaks"),
}
_MONOLOGUE: dict[str, Check] = {
    "start p95 ≤ 2.0 s": _at_most("start_p95_s", 2.0),
    "end p95 ≤ 2.0 s": _at_most("end_p95_s", 2.0),
}
GOALS: dict[str, dict[str, Check]] = {
    "dialogue": {
        "end p50 ≤ 0.85 s": _at_most("end_p50_s", 0.85),
        "end p95 ≤ 1.3 s": _at_most("end_p95_s", 1.3),
    },
    "short": {"first audio p95 ≤ 0.45 s": _at_most("first_p95_s", 0.45)},
    "monologue": _MONOLOGUE,
    "growth": _MONOLOGUE
    | {
        "start lag growth ≤ 0.05 s/min": _at_most("start_slope_s_per_min", 0.05),
        "end lag growth ≤ 0.05 s/min": _at_most("end_slope_s_per_min", 0.05),
    },
}


def evaluate_goals(workload: str, figures: Mapping[str, Any]) -> dict[str, bool]:
    """Each goal of the workload (issue 14), and the checks every workload has: met or not. A figure that
    is missing (no sentence heard) does not meet its goal."""
    return {name: check(figures) for name, check in (GOALS[workload] | _COMMON).items()}


def goals_text() -> str:
    lines = ["goals (issue 14):"]
    for name, checks in GOALS.items():
        lines.append(f"  {name}: " + "; ".join(checks))
    lines.append("  every workload: " + "; ".join(_COMMON))
    return "\n".join(lines)


# issue 23: on the Flux model, sooner first audio and end of a dialogue's sentence, and on the monologue
# at most half of today's (`new`, nova-3's defaults) mid-clause cuts at start and end lag p95 <= 2.0 s
FLUX_PROFILES = ("flux", "flux-eager", "flux-clause")


def issue_23(results: Mapping[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Issue 23's goals over one run's profiles: (goal, the figures it was judged on, met or None when
    the run lacks what it needs)."""
    by_name = {w["workload"]: w["profiles"] for w in results["workloads"]}
    out: list[tuple[str, str, bool | None]] = []
    for goal, workload, key, limit in (
        ("first audio p95 ≤ 0.40 s", "short", "first_p95_s", 0.40),
        ("dialogue end p50 ≤ 0.95 s", "dialogue", "end_p50_s", 0.95),
    ):
        profiles = by_name.get(workload, {})
        seen = {p: profiles[p].get(key) for p in FLUX_PROFILES if p in profiles}
        met = [v is not None and v <= limit for v in seen.values()]
        shown = ", ".join(f"{p} {v:.2f} s" if v is not None else f"{p} –" for p, v in seen.items())
        out.append((f"{goal} (Flux)", shown or "not run", any(met) if met else None))
    mono = by_name.get("monologue", {})
    base = mono.get("new", {}).get("mid_clause_share")
    for profile in ("clause", *FLUX_PROFILES):
        f = mono.get(profile)
        if f is None or base is None or f.get("mid_clause_share") is None:
            continue
        lags_ok = all(f.get(k) is not None and f[k] <= 2.0 for k in ("start_p95_s", "end_p95_s"))
        share = f["mid_clause_share"]
        shown = (
            f"{share:.0%} vs new {base:.0%}; start/end p95 {f['start_p95_s']:.2f} / {f['end_p95_s']:.2f} s"
        )
        goal = f"monologue mid-clause cuts ≤ half of new's ({profile})"
        out.append((goal, shown, share <= base / 2 and lags_ok))
    return out
