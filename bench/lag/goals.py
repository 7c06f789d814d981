"""The lag benchmark's two profiles (`today`, the behaviour before issue 14, and `new`, the defaults) and its
goals per workload (issue 14), each a check on a session's figures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# Today's behaviour (the "before"): no pause cut of our own, a forced final after 1.0 s of continuous
# speech, every clause's trailing silence played. Variables a branch does not know are ignored by
# `load_settings`, so the profile runs on any branch.
TODAY: dict[str, str] = {"PAUSE_CUT_MS": "0", "STT_MAX_SEGMENT_S": "1.0", "TRIM_SILENCE": "off"}
PROFILES = ("today", "new")


def profile_env(profile: str, user: Mapping[str, str]) -> dict[str, str]:
    """A profile's worker settings: `--set` values apply to both, but never override today's behaviour."""
    if profile == "today":
        return {**user, **TODAY}
    if profile == "new":
        return dict(user)
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
