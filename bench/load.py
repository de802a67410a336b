"""Workload 1, triggerer load: N runs waited on at once in one asyncio loop, ending at random times.

For each (poller, N): N held runs are started, a fresh child pinned to the poller core waits on all
of them (waiter ``i`` starting at a random instant within the first interval, as deferred tasks
arrive), and this process ends run ``i`` at ``t0 + end_i``, ``end_i`` uniform over the window.
Every poller at a given N gets the same offsets and end times (same seed), so they face exactly
the same work.

"Polls due" is what a perfect fixed-interval poller would do for the same run: one poll at its
start, one every interval while the run is going, and the one that sees it ended,
``floor((end - offset) / interval) + 2``. A poller that falls behind does fewer; ``on_schedule``
is done / due, counting only polls that got their answer within the window. CPU per poll is the
child's CPU over the window divided by those polls.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

from bench.emulator import Emulator
from bench.env import summary
from bench.pollers import LABELS
from bench.runner import Workspace, run_child

MB = 2**20


def polls_due(end: float, offset: float, interval: float) -> int:
    if end <= offset:
        return 1
    return math.floor((end - offset) / interval) + 2


def run_cell(ws: Workspace, emu: Emulator, poller: str, n: int, *, interval: float, window: float,
             min_end: float, seed: int, grace: float) -> dict[str, Any]:
    emu.reset()
    run_ids = emu.start_held_runs(n)
    rng = random.Random(seed * 100_003 + n)
    offsets = [rng.uniform(0, interval) for _ in range(n)]
    ends = [rng.uniform(min_end, window) for _ in range(n)]
    spec = {
        "mode": "poll",
        "deadline": window + grace,
        "waiters": [{"wait": {"run_id": rid, "poller": poller, "interval": interval}, "offset": off}
                    for rid, off in zip(run_ids, offsets, strict=True)],
    }

    seen: dict[str, Any] = {}

    def on_go(ready: dict[str, Any], t0: float) -> dict[str, float]:
        seen.update(ready)
        return emu.finish_on_schedule([(t0 + end, rid) for rid, end in zip(run_ids, ends, strict=True)])

    result, sent = run_child(ws, emu, f"load-{poller}-{n}", spec, on_go)
    emu_cpu = result["emulator_cpu_seconds"]
    records = emu.requests("GET")
    per_run = Counter(r["path"].rsplit("/", 1)[-1] for r in records)
    bad_status = sum(1 for r in records if r.get("status") not in (200, None))

    runs = result["runs"]
    # Completed polls (an answer was handled): a poller stuck before its first answer did no poll.
    polls = sum(len(r["poll_seconds"]) for r in runs)
    due = sum(polls_due(end, off, interval) for end, off in zip(ends, offsets, strict=True))
    client_errors = sum(r["errors"] for r in runs)
    latencies = [r["detected"] - sent[r["run_id"]] for r in runs
                 if r.get("detected") is not None and r["run_id"] in sent]
    cpu = result["cpu_seconds"]
    rss_over = max(0, result["peak_rss"] - result["base_rss"])
    requests = sum(per_run[rid] for rid in run_ids)
    return {
        "poller": poller,
        "label": LABELS[poller],
        "n": n,
        "interval_s": interval,
        "window_s": window,
        "wall_s": round(result["wall_seconds"], 2),
        "polls_done": polls,
        "polls_started": sum(r["polls"] for r in runs),
        "polls_due": due,
        "on_schedule": round(polls / due, 4) if due else None,
        "cpu_s": round(cpu, 3),
        "cpu_s_per_1000_polls": round(cpu / polls * 1000, 4) if polls else None,
        "rss_base_mb": round(result["base_rss"] / MB, 1),
        "rss_over_base_mb": round(rss_over / MB, 1),
        "rss_per_run_kb": round(rss_over / n / 1024, 1),
        "sockets_peak": result["peak_sockets"] - result["base_sockets"],
        "requests": requests,
        "requests_per_run": round(requests / n, 2),
        "errors": client_errors + bad_status + result["crashes"],
        "unfinished": result["unfinished"],
        "detect_latency_ms": summary(latencies, 1000),
        "poll_wall_ms": summary([x for r in runs for x in r["poll_seconds"]], 1000),
        "emulator_cpu_s_per_1000_requests": round(emu_cpu / requests * 1000, 4) if requests else None,
        "emulator_core_share": round(result["emulator_core_share"] or 0, 3),
        "foreign_cores": round(result["foreign_cores"] or 0, 3),
        "crash_samples": result["crashed"],
        "provider_src": seen.get("provider_src"),
    }
