"""Workload 3, cost per run: requests per completed wait for short (2 s) and long (10 min) runs,
fixed interval vs backoff.

Nobody waits ten real minutes in a benchmark: :meth:`PollSchedule.delay` is a pure function of
the time already waited, so the polls of a run of any length follow from it (:func:`simulate`).
The simulation is checked against real triggers polling real held runs in the same benchmark:
a 2.5 s run (1.25 intervals) at full scale, and the 10-minute run with every duration of the schedule (interval,
cap, grace) divided by ``scale`` (the ratio is scale-free), so "10 minutes" takes ``600 / scale``
seconds. A real trigger spends a little time per cycle (the poll itself, timer slack) that the
ideal schedule does not; the fixed-interval long runs measure it (:func:`calibrate`), and every
real count must then match the simulation within 3% (or one poll).

CPU per completed wait is requests x the CPU per poll measured under load (workload 1).
"""

from __future__ import annotations

from typing import Any

from dify_provider.client.waiting import PollSchedule

SHORT = 2.0
LONG = 600.0
#: The short validation run lasts this many poll intervals (2.5 s at the 2 s interval): off the
#: poll instants, so which poll sees the end is not a race.
VALIDATION_SHORT = 1.25


def simulate(schedule: PollSchedule, duration: float, overhead: float = 0.0) -> dict[str, float]:
    """Polls of one wait on a run that ends ``duration`` seconds after waiting began, as the
    trigger does them: poll, and if still running, sleep ``delay(elapsed)`` (elapsed read after
    the poll, ``overhead`` later). A poll at or after the end sees it."""
    t = 0.0
    polls = 0
    previous = 0.0
    while True:
        polls += 1
        if t >= duration:
            return {"requests": polls, "gap_s": round(t - previous, 3), "seen_after_s": round(t - duration, 3)}
        previous = t
        t += overhead
        t += schedule.delay(t)


def schedules(interval: float, backoff_max: float, scale: float = 1.0) -> dict[str, PollSchedule]:
    base = PollSchedule(interval, backoff_max)
    return {
        "fixed": PollSchedule(interval / scale, None),
        "backoff": PollSchedule(interval / scale, backoff_max / scale, grace=base.grace / scale, ratio=base.ratio),
    }


def validation_waiters(interval: float, backoff_max: float, scale: float,
                       replicas: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Waiters (and their run ends relative to t0) for the real check, to ride along in the
    latency workload's child."""
    waiters: list[dict[str, Any]] = []
    ends: dict[str, float] = {}
    for name, sched in schedules(interval, backoff_max).items():
        key = f"{name}:short"
        ends[key] = VALIDATION_SHORT * interval
        waiters += [{"key": key, "wait": {"poller": "provider", "interval": sched.interval,
                                          "max_interval": sched.max_interval}}] * replicas
    for name, sched in schedules(interval, backoff_max, scale).items():
        key = f"{name}:long"
        ends[key] = LONG / scale
        waiters += [{"key": key, "wait": {"poller": "provider", "interval": sched.interval,
                                          "max_interval": sched.max_interval,
                                          "grace": sched.grace, "ratio": sched.ratio}}] * replicas
    return waiters, ends


def report(*, interval: float, backoff_max: float, scale: float, cpu_ms_per_poll: float | None,
           real_runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    full = schedules(interval, backoff_max)
    for length in (SHORT, LONG):
        for name, sched in full.items():
            sim = simulate(sched, length)
            rows.append({
                "run_length_s": length,
                "schedule": name,
                "requests_per_run": sim["requests"],
                "poll_gap_at_end_s": sim["gap_s"],
                "mean_detection_wait_s": round(sim["gap_s"] / 2, 3),
                "cpu_ms_per_wait": round(sim["requests"] * cpu_ms_per_poll, 3) if cpu_ms_per_poll else None,
            })
    by = {(r["run_length_s"], r["schedule"]): r for r in rows}
    long_ratio = by[(LONG, "fixed")]["requests_per_run"] / by[(LONG, "backoff")]["requests_per_run"]

    checks: list[dict[str, Any]] = []
    scaled = schedules(interval, backoff_max, scale)
    overhead = calibrate(real_runs, scaled["fixed"], LONG / scale)
    for key in sorted({r["key"] for r in real_runs}):
        name, length = key.split(":")
        sched, duration = ((full[name], VALIDATION_SHORT * interval) if length == "short"
                           else (scaled[name], LONG / scale))
        predicted = simulate(sched, duration, overhead)["requests"]
        real = [r["requests"] for r in real_runs if r["key"] == key]
        tolerance = max(1, round(0.03 * predicted))
        checks.append({
            "case": f"{name}, " + (f"{VALIDATION_SHORT * interval:g} s run" if length == "short"
                                   else f"10 min run at 1/{scale:g} time"),
            "simulated": predicted,
            "real": real,
            "ok": bool(real) and all(abs(x - predicted) <= tolerance for x in real),
        })
    return {
        "interval_s": interval,
        "backoff": f"{interval:g} s for the first {full['backoff'].grace:g} s, then "
                   f"{full['backoff'].ratio:.0%} of the time waited, capped at {backoff_max:g} s",
        "cpu_ms_per_poll_used": cpu_ms_per_poll,
        "rows": rows,
        "long_run_fixed_over_backoff": round(long_ratio, 2),
        "simulated": "requests per run come from PollSchedule.delay (simulated clock); "
                     "see validation for the real runs they were checked against",
        "validation": checks,
        "validation_overhead_ms": round(overhead * 1000, 2),
    }


def calibrate(real_runs: list[dict[str, Any]], fixed: PollSchedule, duration: float) -> float:
    """Per-cycle overhead (poll round trip, timer slack) of the real fixed-interval long runs:
    ``P`` polls cover ``duration`` in ``P - 1`` cycles, give or take the last partial one."""
    counts: list[int] = sorted(int(r["requests"]) for r in real_runs if r["key"] == "fixed:long")
    if not counts or counts[len(counts) // 2] < 3:
        return 0.0
    polls = counts[len(counts) // 2]
    return max(0.0, duration / (polls - 1.5) - fixed.interval)
