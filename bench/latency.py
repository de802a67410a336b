"""Workload 2, detection latency: from the emulator marking a run terminal to the task-side code
knowing it, for the operator's streaming path and for the trigger polling at a fixed interval and
with backoff (runs under 30 s, where backoff must not be slower).

The reference instant is taken just before ``POST /_emulator/runs/{id}/finish`` is sent, so each
latency is an upper bound by up to that request's round trip (reported as ``finish_rtt_ms``).

Polling latency is, by construction, the wait for the next poll (uniform over the interval, so
half the interval on average) plus the poll's own cost. End times are random, but their phase
within the poll interval is spread evenly over the runs (stratified), so the p50 measures the
poller and not the luck of a few hundred draws.
"""

from __future__ import annotations

import random
from typing import Any

from bench.emulator import Emulator
from bench.env import summary
from bench.runner import Workspace, run_child

#: Backoff settings used throughout the benchmark: start at the fixed interval, grow to a minute.
BACKOFF_MAX = 60.0


def run_polling(ws: Workspace, emu: Emulator, *, runs_per_mode: int, interval: float, max_polls: int,
                seed: int, extra_waiters: list[dict[str, Any]] | None = None,
                extra_ends: dict[str, float] | None = None) -> dict[str, Any]:
    """Fixed and backoff triggers side by side in one loop; ``extra_waiters`` (with their end
    instants relative to t0 in ``extra_ends``) ride along, e.g. the cost check's runs."""
    emu.reset()
    extra_waiters = extra_waiters or []
    modes = {"fixed": None, "backoff": BACKOFF_MAX}
    total = runs_per_mode * len(modes)
    run_ids = emu.start_held_runs(total + len(extra_waiters))
    rng = random.Random(seed)
    waiters: list[dict[str, Any]] = []
    ends: dict[str, float] = {}
    mode_of: dict[str, str] = {}
    index = 0
    for mode, max_interval in modes.items():
        phases = [(k + 0.5) / runs_per_mode * interval for k in range(runs_per_mode)]
        rng.shuffle(phases)
        for phase in phases:
            run_id = run_ids[index]
            index += 1
            offset = rng.uniform(0, interval)
            # Runs last k intervals plus a phase: always under 30 s, where backoff keeps the interval.
            ends[run_id] = offset + rng.randint(1, max_polls) * interval + phase
            mode_of[run_id] = mode
            waiters.append({"wait": {"run_id": run_id, "poller": "provider", "interval": interval,
                                     "max_interval": max_interval}, "offset": offset})
    for extra, run_id in zip(extra_waiters, run_ids[total:], strict=True):
        waiter = {"wait": {**extra["wait"], "run_id": run_id}, "offset": extra.get("offset", 0.0)}
        waiters.append(waiter)
        ends[run_id] = (extra_ends or {})[extra["key"]]
        mode_of[run_id] = extra["key"]
    horizon = max(ends.values())
    spec = {"mode": "poll", "deadline": horizon + 3 * interval + 5, "waiters": waiters}

    def on_go(ready: dict[str, Any], t0: float) -> dict[str, float]:
        return emu.finish_on_schedule([(t0 + end, rid) for rid, end in ends.items()])

    result, sent = run_child(ws, emu, "latency-poll", spec, on_go)
    rtts = list(emu.finish_rtts)
    per_run_requests: dict[str, int] = {}
    for record in emu.requests("GET"):
        rid = record["path"].rsplit("/", 1)[-1]
        per_run_requests[rid] = per_run_requests.get(rid, 0) + 1
    by_mode: dict[str, list[float]] = {}
    for run in result["runs"]:
        if run.get("detected") is not None and run["run_id"] in sent:
            by_mode.setdefault(mode_of[run["run_id"]], []).append(run["detected"] - sent[run["run_id"]])
    return {
        "interval_s": interval,
        "backoff_max_s": BACKOFF_MAX,
        "runs_per_mode": runs_per_mode,
        "run_length_s": [round(interval, 1), round(max_polls * interval + interval, 1)],
        "latency_ms": {mode: summary(by_mode.get(mode, []), 1000) for mode in modes},
        "finish_rtt_ms": summary(rtts, 1000),
        "unfinished": result["unfinished"],
        "errors": sum(r["errors"] for r in result["runs"]) + result["crashes"],
        "extra_runs": [{"key": mode_of[r["run_id"]], "polls": r["polls"],
                        "requests": per_run_requests.get(r["run_id"], 0), "status": r["status"]}
                       for r in result["runs"] if mode_of[r["run_id"]] not in modes],
    }


def run_streaming(ws: Workspace, emu: Emulator, *, runs: int, window: float, seed: int) -> dict[str, Any]:
    """The operator's ``_follow_stream`` on ``runs`` live streams, each ended at a random instant."""
    emu.reset()
    emu.admin.post("/script", json={"app": "echo", "scenarios": [{"steps": 1, "step_seconds": 0, "hold": True}] * runs}
                   ).raise_for_status()
    rng = random.Random(seed)
    spec = {"mode": "stream", "stream_runs": runs, "deadline": window + 15}

    def on_go(ready: dict[str, Any], t0: float) -> dict[str, float]:
        return emu.finish_on_schedule([(t0 + rng.uniform(0.5, window), rid) for rid in ready["run_ids"] if rid])

    result, sent = run_child(ws, emu, "latency-stream", spec, on_go)
    rtts = list(emu.finish_rtts)
    latencies = [r["detected"] - sent[r["run_id"]] for r in result["runs"]
                 if r.get("detected") is not None and r["run_id"] in sent]
    return {
        "runs": runs,
        "latency_ms": summary(latencies, 1000),
        "finish_rtt_ms": summary(rtts, 1000),
        "unfinished": result["unfinished"],
        "statuses": sorted({str(r.get("status")) for r in result["runs"]}),
    }
