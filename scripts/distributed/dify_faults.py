"""Scenarios 4, 6 and 7: Dify goes away, users and deadlines kill deferred tasks, and a load step.

4. The emulator process is stopped (SIGSTOP) for longer than the connection's request timeout
   while runs are deferred and one streams, then resumed: the waits carry on.
6. A deferred task marked failed through the REST API, and one whose ``execution_timeout``
   passes while it is deferred: each Dify run is stopped.
7. 200 mapped deferrable operators across both triggerers, polled on schedule; the triggerers'
   CPU and memory are reported.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections import Counter
from typing import Any

from demo import say
from e2e import poll

from distributed.checks import Scenario
from distributed.stack import COMPONENTS, TRIGGERERS, ResourceSampler

OUTAGE_SECONDS = 15.0  # longer than the connection's request timeout (5 s, set by the e2e)
POLL = 2.0  # the DAGs' poll interval (dags/dify_distributed.py)


def dify_unreachable(s: Scenario, ops: int = 4, sensors: int = 2) -> None:
    """4. Dify stops answering for longer than a request timeout, then comes back."""
    s.hold(ops + 1 + sensors)
    outside = s.start_outside_runs(sensors)
    s.trigger({"ops": ops, "streams": 1, "sensor_run_ids": outside})
    s.wait_waiting(deferred=ops + sensors, streaming=1)
    runs = s.dify_runs()
    pid = s.emulator.proc.pid
    os.kill(pid, signal.SIGSTOP)
    stopped_at = time.time()
    try:
        say(f"  SIGSTOP the emulator (pid {pid}) for {OUTAGE_SECONDS:.0f} s")
        time.sleep(OUTAGE_SECONDS)  # the outage is the scenario: nothing to wait on instead
        during = Counter(t["state"] for t in s.tis())
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed_at = time.time()
    s.equal(set(during), {"deferred", "running"}, f"after {OUTAGE_SECONDS:.0f} s without Dify, every task still "
                                                  "waits (none failed or up for retry)")
    felt = s.log_lines_with("Dify call failed (", since=stopped_at)
    s.check(felt > 0, "the waits felt the outage: their logs show the calls that failed and were retried "
                      "('Dify call failed (DifyTimeoutError ...); retrying in ...')", felt)
    poll("every held run to be polled again", lambda: s.polled_since(runs, resumed_at), 90, interval=0.5,
         alive=s.stack.alive)
    s.finish_runs(runs)
    s.equal(s.wait_dag_run(), "success", "the DAG run succeeded")
    s.check_outcome(ops + 1 + sensors, starts=ops + 1)
    s.counts.update({"outage_seconds": round(resumed_at - stopped_at, 1), "request_timeout_seconds": 5,
                     "log_lines_of_retried_calls": felt})


def kills_stop_runs(s: Scenario) -> None:
    """6. Marked failed while deferred, and execution_timeout while deferred: both runs stopped."""
    s.hold(2)
    s.trigger({}, dag_id="dify_dist_kill")
    s.wait_waiting(deferred=2)
    runs = {str(r["user"]).split(":")[2]: r for r in s.dify_runs()}
    marked_at = time.time()
    s.stack.api("PATCH", s.stack.ti_path(s.dag_id, s.run_id, "killed"), {"new_state": "failed"})
    say("  PATCH taskInstances/killed new_state=failed (as the UI's 'Mark failed')")
    stopped = {}
    for task_id, timeout in (("killed", 60), ("timed_out", 120)):
        run = runs[task_id]
        stop_path = f"/workflows/tasks/{run['task_id']}/stop"
        poll(f"Dify run of {task_id} to be stopped", lambda run=run, stop_path=stop_path: s.emulator.admin(
            "GET", f"/requests?method=POST&path={stop_path}") and s.emulator.admin(
            "GET", f"/runs/{run['id']}")["status"] == "stopped", timeout, interval=0.5, alive=s.stack.alive)
        stopped[task_id] = round(time.time() - marked_at, 1)
        s.check(True, f"{task_id}: its Dify run was stopped (POST {stop_path})")
    s.equal(s.wait_dag_run(), "failed", "the DAG run failed, as both tasks did")
    states = {t["task_id"]: t["state"] for t in s.tis()}
    s.equal(states, {"killed": "failed", "timed_out": "failed"}, "both task instances failed")
    log = s.stack.task_log(s.dag_id, s.run_id, "timed_out")
    s.check(any("execution_timeout" in str(line.get("event")) for line in log),
            "the timed-out task's log names execution_timeout")
    seen = s.starts()
    s.equal(sorted(seen.values()), [1, 1], "one run start each")
    s.counts.update({"runs_stopped": len(stopped), "orphaned_runs": 2 - len(stopped),
                     "seconds_to_stop_after_mark_failed": stopped["killed"],
                     "seconds_to_stop_the_timed_out_run_after_mark_failed": stopped["timed_out"],
                     "run_starts": sum(seen.values()), "duplicate_starts": sum(n - 1 for n in seen.values())})


def load(s: Scenario, ops: int = 200, run_seconds: float = 20.0) -> None:
    """7. ``ops`` mapped deferrable operators, each run lasting ``run_seconds``."""
    steps = 5
    s.emulator.admin("POST", "/script", {"app": "echo", "scenarios": [
        {"steps": steps, "step_seconds": run_seconds / steps}] * ops})
    sampler = ResourceSampler(s.stack.token, s.stack.sessions, (*COMPONENTS, "emulator"))
    seen_on: dict[int, str] = {}

    def done(tis: list[dict[str, Any]]) -> bool:
        for t in tis:
            if t["triggerer"]:
                seen_on[t["map_index"]] = str(t["triggerer"])
        return sum(t["state"] == "success" for t in tis) == ops

    began = time.monotonic()
    with sampler.running():
        s.trigger({"ops": ops})
        s.wait_tis(f"{ops} task instances to succeed", done, timeout=600)
    took = time.monotonic() - began
    s.equal(s.wait_dag_run(), "success", "the DAG run succeeded")
    s.check_outcome(ops, starts=ops)
    stopped = [r["id"] for r in s.dify_runs() if r["status"] == "stopped"]
    s.equal(stopped, [], "no run was stopped (a trigger handed to the other triggerer must not stop its run)")
    spread = dict(Counter(seen_on.values()))
    s.check(len(spread) == 2, f"the triggers were spread over both triggerers: {spread}", spread)
    gaps = _poll_gaps(s)
    median, p95, worst = statistics.median(gaps), _percentile(gaps, 95), max(gaps)
    say(f"  {len(gaps)} gaps between polls of one run: median {median:.2f} s, p95 {p95:.2f} s, max {worst:.2f} s")
    s.check(abs(median - POLL) <= 0.2 * POLL and p95 <= 1.5 * POLL,
            f"each run polled on schedule: every {POLL:.0f} s (median {median:.2f} s, p95 {p95:.2f} s)")
    figures = sampler.figures(took)
    for name, f in ((name, figures[name]) for name in TRIGGERERS):
        say(f"  {name}: {f['cpu_seconds']} CPU s ({f['cpu_percent_of_one_core']} % of a core), "
            f"peak RSS {f['peak_rss_mib']} MiB")
    s.counts.update({"tasks": ops, "run_seconds": run_seconds, "stopped_runs": len(stopped), "seconds": round(took, 1),
                     "triggers_per_triggerer": spread, "poll_interval": POLL,
                     "poll_gap_median": round(median, 3), "poll_gap_p95": round(p95, 3),
                     "poll_gap_max": round(worst, 3), "gaps_over_1_5x_interval": sum(g > 1.5 * POLL for g in gaps),
                     "polls": len(gaps) + len(seen_on),
                     "triggerers": {name: figures[name] for name in TRIGGERERS},
                     "other_processes": {name: f for name, f in figures.items() if name not in TRIGGERERS}})


def _poll_gaps(s: Scenario) -> list[float]:
    """Seconds between consecutive polls of one run, over every run of this DAG run."""
    ids = {str(r["id"]) for r in s.dify_runs()}
    times: dict[str, list[float]] = {}
    for r in s.emulator.admin("GET", "/requests?method=GET"):
        run_id = str(r["path"]).rsplit("/", 1)[-1]
        if run_id in ids and str(r["path"]).startswith("/v1/workflows/run/"):
            times.setdefault(run_id, []).append(float(r["received_at"]))
    return [b - a for seq in times.values() for a, b in zip(sorted(seq), sorted(seq)[1:], strict=False)]


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]
