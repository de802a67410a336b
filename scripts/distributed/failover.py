"""Scenarios 1, 2, 3 and 5: an Airflow process dies while Dify runs are waited on.

Each holds its Dify runs in the emulator, so the fault always lands while Airflow waits, then
finishes them and checks the outcome (:meth:`Scenario.check_outcome`): every task instance
ended as expected, one run start per task instance, every result in XCom.
"""

from __future__ import annotations

import time

from demo import say
from e2e import poll

from distributed.checks import Scenario
from distributed.stack import TRIGGERERS, WORKERS


def triggerer_killed(s: Scenario, ops: int = 30, sensors: int = 20) -> None:
    """1. ``kill -9`` of the triggerer holding most triggers: the other adopts them all."""
    s.hold(ops + sensors)
    outside = s.start_outside_runs(sensors)
    s.trigger({"ops": ops, "sensor_run_ids": outside})
    took = s.wait_waiting(deferred=ops + sensors)
    before = s.by_triggerer()
    say(f"  {ops + sensors} deferred in {took:.0f} s, triggers per triggerer: {before}")
    victim = max(TRIGGERERS, key=lambda name: before.get(name, 0))
    survivor = next(name for name in TRIGGERERS if name != victim)
    s.check(before.get(victim, 0) > 0, f"{victim} holds triggers before the kill", before)

    killed_at = s.stack.kill(victim, group=True)
    adopted = poll(f"{survivor} to adopt every trigger",
                   lambda: s.by_triggerer() == {survivor: ops + sensors} and time.time(), 120, interval=0.25,
                   alive=s.stack.alive)
    failover = adopted - killed_at
    say(f"  kill -9 {victim} (process group): {survivor} holds all {ops + sensors} triggers {failover:.1f} s later")
    # The survivor runs them: every held run is polled again after the adoption.
    runs = s.dify_runs()
    polled = poll("the survivor to poll every held run", lambda: s.polled_since(runs, adopted), 60,
                  interval=0.5, alive=s.stack.alive)
    s.check(polled, f"{survivor} polls all {len(runs)} held runs after adopting them")
    s.stack.start_component(victim)

    s.finish_runs(runs)
    s.equal(s.wait_dag_run(), "success", "the DAG run succeeded")
    s.check_outcome(ops + sensors, starts=ops)
    s.stack.wait_ready((victim,))
    s.counts.update({"deferred": ops + sensors, "operators": ops, "sensors": sensors, "triggers_before_kill": before,
                     "killed": victim, "failover_seconds": round(failover, 1), "adopted": ops + sensors})


def worker_killed(s: Scenario) -> None:
    """2. The worker running a streaming operator is killed: the retry re-attaches to the run."""
    s.hold(1)
    s.trigger({"streams": 1})
    s.wait_waiting(deferred=0, streaming=1)
    (ti,) = s.tis(("stream",))
    victim = str(ti["worker"])
    other = next(name for name in WORKERS if name != victim)
    killed_at = s.stack.kill(victim, group=False)
    say(f"  kill -9 {victim} (main pid only) while it streams {s.run_id}")
    orphans = poll("the processes the kill left behind", lambda: s.stack.left_by(victim), 10, interval=0.2)
    task_processes = [p for p in orphans if p.cmdline.startswith("airflow worker --")]
    say(f"  left behind: {len(orphans)} process(es): " + "; ".join(f"{p.pid} {p.cmdline[:60]}" for p in orphans))
    s.equal(len(task_processes), 1, "the orphaned task process is found (its worker's session, 'airflow worker --')")

    try:
        retried = s.wait_tis(f"try 2 to run on {other}", lambda tis: any(
            t["try_number"] == 2 and t["state"] == "running" and t["worker"] == other for t in tis), timeout=180)
        say(f"  try 2 running on {other} {time.time() - killed_at:.0f} s after the kill ({retried:.0f} s of waiting)")
        s.stack.start_component(victim)
        # The run is still held: try 2 must take it over, not start one (the log says which).
        poll("try 2 to take over the run", lambda: s.log_lines_with(
            "re-attaching to Dify workflow run", task_id="stream", attempt=2), 60, interval=0.5, alive=s.stack.alive)
        s.check(True, "try 2 re-attached to the run try 1 started (its task log says so)")
        s.finish_runs(s.dify_runs())
        s.equal(s.wait_dag_run(), "success", "the DAG run succeeded")
        s.check_outcome(1, starts=1, try_number=2)
    finally:
        left = [p for p in s.stack.left_by(victim) if p.pid in {o.pid for o in orphans}]
        s.stack.kill_marked(left)  # what an operator cleaning up the node would do
    s.stack.wait_ready((victim,))
    s.counts.update({"killed": victim, "retried_on": other, "orphaned_processes": len(orphans),
                     "orphaned_task_processes": len(task_processes),
                     "orphaned_task_processes_alive_after_the_run": sum(p.pid in {t.pid for t in task_processes}
                                                                       for p in left),
                     "seconds_to_retry": round(time.time() - killed_at, 1)})


def scheduler_restarted(s: Scenario, ops: int = 4, sensors: int = 2) -> None:
    """3. The scheduler is killed mid-run and started again: nothing lost, nothing twice."""
    s.hold(ops + 1 + sensors)
    outside = s.start_outside_runs(sensors)
    s.trigger({"ops": ops, "streams": 1, "sensor_run_ids": outside})
    s.wait_waiting(deferred=ops + sensors, streaming=1)
    s.stack.kill("scheduler", group=True)
    runs = s.dify_runs()
    first, rest = runs[: len(runs) // 2], runs[len(runs) // 2:]
    s.finish_runs(first)  # these end while no scheduler runs: the triggers fire, the stream ends
    ended = {str(r["id"]) for r in first}
    say(f"  kill -9 scheduler; {len(first)} of {len(runs)} runs end while it is down")
    s.wait_tis("the triggerers and the worker to take in the runs that ended", lambda tis: sum(
        t["state"] not in ("deferred", "running") for t in tis) >= len(first), timeout=120)
    s.stack.start_component("scheduler")
    s.stack.wait_ready(("scheduler",))
    s.finish_runs([r for r in rest if str(r["id"]) not in ended])
    s.equal(s.wait_dag_run(), "success", "the DAG run succeeded")
    s.check_outcome(ops + 1 + sensors, starts=ops + 1)
    s.counts.update({"ended_while_down": len(first), "ended_after_restart": len(rest)})


def both_triggerers_killed(s: Scenario, ops: int = 4, sensors: int = 2) -> None:
    """5. Both triggerers die; the runs end meanwhile; one triggerer comes back and finishes all."""
    s.hold(ops + sensors)
    outside = s.start_outside_runs(sensors)
    s.trigger({"ops": ops, "sensor_run_ids": outside})
    s.wait_waiting(deferred=ops + sensors)
    for name in TRIGGERERS:
        s.stack.kill(name, group=True)
    s.finish_runs(s.dify_runs())
    say("  kill -9 both triggerers; every run ends while none runs")
    # A new triggerer adopts triggers once the old ones' heartbeats are stale: wait for that
    # moment instead of a fixed time, then check that nothing moved while no triggerer ran.
    poll("the dead triggerers' heartbeats to go stale", lambda: not any(
        s.stack.triggerer_job(name) for name in TRIGGERERS), 60, interval=0.5)
    s.equal({t["state"] for t in s.tis()}, {"deferred"}, "with no triggerer, every task instance stays deferred")
    restarted_at = time.time()
    s.stack.start_component(TRIGGERERS[0])
    s.equal(s.wait_dag_run(), "success", f"the DAG run succeeded after {TRIGGERERS[0]} was started again")
    finished = time.time() - restarted_at
    s.check_outcome(ops + sensors, starts=ops)
    s.stack.start_component(TRIGGERERS[1])
    s.stack.wait_ready(TRIGGERERS)
    s.counts.update({"deferred": ops + sensors, "seconds_from_restart_to_success": round(finished, 1)})
