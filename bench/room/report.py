"""What `python -m bench room` prints and draws: per workload, the listener's and the worker's latency and
what the SFU adds; the capacity sweep's table; and room.png (the dialogue's CDF, latency and CPU against
rooms)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness.output import plot_cdf, pyplot, summary_table


def print_report(results: dict[str, Any]) -> None:
    for name in ("dialogue", "monologue"):
        d = results.get(name)
        if not d:
            continue
        print(f"\n{name.capitalize()} through the SFU (1 room): utterances ending at a pause, ms")
        rows = [
            ("listener end to end", d["listener_e2e_ms"]),
            ("worker end to end", d["worker_e2e_ms"]),
            ("SFU adds (difference)", d["sfu_added_ms"]),
            ("  uplink", d["uplink_ms"]),
            ("  worker source queue", d["source_queue_ms"]),
            ("  downlink", d["downlink_ms"]),
            ("downlink, every utterance", d["downlink_all_ms"]),
            ("caption ahead of audio", d["caption_lead_ms"]),
            ("modelled floor", d["floor_ms"]),
            ("overhead over the floor", d["overhead_ms"]),
        ]
        rows += [(f"  worker {k}", v) for k, v in d["worker_stages_ms"].items()]
        summary_table(rows, 26)
        cpu = d["cpu"]["cores"]
        print(f"  outcomes {d['outcomes']}; unmatched at pauses {d['unmatched']}; CPU cores {cpu}")
    if c := results.get("capacity"):
        print(f"\nCapacity: N rooms at once against one worker ({c['seconds_per_room']} s of dialogue each)")
        head = (
            f"{'rooms':>6}{'disp':>5}{'listen p50':>11}{'p95':>7}{'worker p95':>11}{'SFU p95':>8}"
            f"{'wk cores':>9}{'/room':>7}{'s/rm-min':>9}{'lk':>6}{'fakes':>6}{'parts':>6}{'mach':>6}"
            f"{'PSS MB':>8}"
        )
        print(head)
        for s in c["steps"]:
            cores = s["cpu_cores"]
            print(
                f"{s['rooms']:>6}{s['dispatched']:>5}{s['listener_e2e_ms']['p50']:>11}{s['listener_e2e_ms']['p95']:>7}"
                f"{s['worker_e2e_ms']['p95']:>11}{s['sfu_added_ms']['p95']:>8}{cores['worker']:>9}"
                f"{s['worker_cores_per_room'] or '-':>7}{s['worker_cpu_s_per_room_minute'] or '-':>9}"
                f"{cores['livekit_server']:>6}{cores['fakes']:>6}{cores['participants']:>6}{cores['machine']:>6}"
                f"{s['worker_pss_mb']:>8}"
            )
        print(
            f"  one room p95 {c['one_room_p95_ms']} ms; most rooms within +50 ms: "
            f"{c['most_rooms_within_50ms_of_one']}; first over: {c['first_rooms_over_50ms']}; "
            f"PSS per extra room {c['worker_pss_mb_per_extra_room']} MB; stopped: {c['stopped']}"
        )


def draw(results: dict[str, Any], out: Path) -> list[str]:
    plt = pyplot()
    panels = [k for k in ("dialogue", "capacity") if results.get(k)]
    if not panels:
        return []
    fig, axes = plt.subplots(
        1, len(panels) + (1 if "capacity" in panels else 0), figsize=(6 * (len(panels) + 1), 4)
    )
    axes = list(np.atleast_1d(axes))
    if d := results.get("dialogue"):
        series = [
            ([p["listener_e2e_s"] for p in d["points"]], "at the listener (through the SFU)"),
            ([p["worker_e2e_s"] for p in d["points"]], "the worker's own record"),
        ]
        plot_cdf(axes.pop(0), series, "Dialogue through a real LiveKit server")
    if c := results.get("capacity"):
        steps = c["steps"]
        xs = [s["rooms"] for s in steps]
        ax = axes.pop(0)
        ax.plot(xs, [s["listener_e2e_ms"]["p95"] for s in steps], "o-", label="listener p95")
        ax.plot(xs, [s["listener_e2e_ms"]["p50"] for s in steps], "o--", label="listener p50")
        ax.plot(xs, [s["worker_e2e_ms"]["p95"] for s in steps], "s-", label="worker p95")
        if c["one_room_p95_ms"] is not None:
            ax.axhline(c["one_room_p95_ms"] + 50, color="red", ls=":", lw=1, label="one room p95 + 50 ms")
        ax.set_xlabel("rooms at once (one worker)")
        ax.set_ylabel("speech end → first translated frame (ms)")
        ax.set_title("Latency vs rooms")
        ax.grid(alpha=0.3)
        ax.legend()
        ax = axes.pop(0)
        bottom = np.zeros(len(steps))
        for key in ("worker", "livekit_server", "fakes", "participants", "others"):
            values = np.array([s["cpu_cores"][key] for s in steps])
            ax.bar([str(x) for x in xs], values, bottom=bottom, label=key)
            bottom += values
        ax.axhline(os.cpu_count() or 1, color="black", lw=1, ls=":")
        ax.set_xlabel("rooms at once")
        ax.set_ylabel("CPU (cores busy)")
        ax.set_title("Who uses the CPU")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "room.png", dpi=110)
    plt.close(fig)
    return ["room.png"]
