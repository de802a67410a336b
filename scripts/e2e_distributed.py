"""``make e2e-distributed``: the provider on a distributed Airflow, and the faults it brings.

1. Installs PostgreSQL and Redis from Debian when missing; starts a throwaway PostgreSQL cluster
   (metadata DB, Celery result backend), Redis (broker), the Dify emulator, and Airflow's
   api-server, scheduler, dag-processor, two Celery workers and two triggerers, each in its own
   session with its own log under ``.e2e/distributed/logs/`` (settings: ``distributed/stack.py``).
2. Runs the scenarios through the REST API (``distributed/failover.py``,
   ``distributed/dify_faults.py``; DAGs in ``distributed/dags/``), counting from the emulator's
   request log and the metadata DB: a killed triggerer, a killed worker, a restarted scheduler,
   Dify unreachable, both triggerers down, kills of deferred tasks, and a load step.
3. Writes every scenario's counts to ``.e2e/distributed/counts.json``, stops everything, and
   fails if any process it started (or one of theirs) is left.

``--only 1,4`` runs some scenarios; exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo import ROOT, StepFailedError, airflow_argv, emulator_process, run_command, say, stop_on_sigterm
from distributed import dify_faults, failover
from distributed.checks import Scenario
from distributed.stack import COMPONENTS, DistributedStack, Services, cpu_and_rss, new_token
from e2e import Report, poll

ARTIFACTS = ROOT / ".e2e" / "distributed"
LOGS = ARTIFACTS / "logs"
COUNTS = ARTIFACTS / "counts.json"
REQUEST_TIMEOUT = "5"  # the connection's: scenario 4's outage is longer
SCENARIOS: list[tuple[int, str, Callable[[Scenario], None]]] = [
    (1, "Triggerer killed (kill -9) while it holds 50 deferred operators and sensors", failover.triggerer_killed),
    (2, "Celery worker killed while an operator streams", failover.worker_killed),
    (3, "Scheduler killed and restarted mid-run", failover.scheduler_restarted),
    (4, "Dify unreachable (emulator SIGSTOPped) while runs are deferred and one streams", dify_faults.dify_unreachable),
    (5, "Both triggerers killed, one restarted later", failover.both_triggerers_killed),
    (6, "Deferred tasks marked failed / past execution_timeout stop their runs", dify_faults.kills_stop_runs),
    (7, "Load: 200 mapped deferrable operators on two triggerers", dify_faults.load),
]


def prepare(stack: DistributedStack, report: Report, results: dict[str, Any]) -> None:
    with report.phase("airflow db migrate (PostgreSQL)"):
        took = run_command("airflow db migrate", airflow_argv("db", "migrate"), LOGS / "db-migrate.log",
                           stack.env, timeout=300)
        say(f"  done in {took:.1f} s")
    with report.phase("Start api-server, scheduler, dag-processor, 2 Celery workers, 2 triggerers"):
        began = time.monotonic()
        stack.start()
        for name, proc in stack.procs.items():
            say(f"  airflow {name:<14} pid {proc.pid:<8} log {stack.log(name).relative_to(ROOT)}")
        stack.wait_ready()
        ready = time.monotonic() - began
        rss = _rss_by_component(stack)
        say(f"  all seven ready in {ready:.0f} s; resident memory {sum(rss.values()):.0f} MiB: {rss}")
        results["stack"] = {"seconds_to_ready": round(ready, 1), "rss_mib": rss}
    with report.phase("Create the dify_default connection (REST) and wait for the DAGs"):
        conn = stack.emulator.connection("echo")
        stack.api("POST", "/connections", {
            "connection_id": "dify_default", "conn_type": "dify", "host": conn["host"], "password": conn["password"],
            "extra": json.dumps({**conn["extra"], "timeout": REQUEST_TIMEOUT}),
        })

        def dags_ready() -> bool:
            dags = {d["dag_id"]: d for d in stack.get("/dags?tags=dify-distributed&limit=10")["dags"]}
            return {"dify_dist", "dify_dist_kill"} <= set(dags) and not any(d["is_paused"] for d in dags.values())

        poll("the DAGs to be parsed and unpaused", dags_ready, timeout=120, interval=0.5, alive=stack.alive)
        report.equal(stack.get("/importErrors")["total_entries"], 0, "no DAG import errors")


def _rss_by_component(stack: DistributedStack) -> dict[str, float]:
    pids: dict[str, list[int]] = {name: [] for name in COMPONENTS}
    for proc in stack.leftovers():
        if proc.component in pids:
            pids[proc.component].append(proc.pid)
    return {name: round(cpu_and_rss(found)[1]) for name, found in pids.items()}


def run_scenarios(stack: DistributedStack, report: Report, results: dict[str, Any], only: set[int] | None) -> None:
    for number, title, scenario in SCENARIOS:
        if only is not None and number not in only:
            continue
        s = Scenario(number, title, stack, stack.emulator, report)
        began = time.monotonic()
        with report.phase(f"{number}. {title}"):
            try:
                scenario(s)
            except Exception as exc:  # a scenario's bug or a dead component: report it, go on with the next
                s.check(False, "the scenario ran to the end", f"{type(exc).__name__}: {exc}")
                stack.emulator.admin("POST", "/reset")  # no held run or script left for the next one
        results["scenarios"][str(number)] = {"title": title, **s.counts, "seconds": round(time.monotonic() - began, 1)}


def stop_all(stack: DistributedStack | None, services: Services, report: Report, results: dict[str, Any]) -> None:
    with report.phase("Stop PostgreSQL and Redis; nothing may be left"):
        for line in services.stop():
            say(f"  {line}")
        left = stack.leftovers() if stack is not None else []
        report.equal([f"{p.pid} {p.component}: {p.cmdline[:80]}" for p in left], [],
                     "no process of the run is left after the stop")
        if stack is not None:
            stack.kill_marked(left)
        results["processes_left_after_stop"] = len(left)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary AIRFLOW_HOME")
    args = parser.parse_args(argv)
    only = {int(n) for n in args.only.split(",")} if args.only else None

    stop_on_sigterm()
    began = time.monotonic()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    LOGS.mkdir(parents=True)
    report, token = Report(), new_token()
    results: dict[str, Any] = {"scenarios": {}}
    home = Path(tempfile.mkdtemp(prefix="dify-e2e-dist-home-"))
    services = Services(LOGS, {**os.environ, "DIFY_E2E_TOKEN": token})
    stack: DistributedStack | None = None
    try:
        with report.phase("PostgreSQL and Redis"):
            say(f"  {services.install()}")
            services.start()
            say(f"  PostgreSQL on 127.0.0.1:{services.pg_port}, Redis on 127.0.0.1:{services.redis_port}")
        with contextlib.ExitStack() as exits:
            with report.phase("Start the Dify emulator"):
                emulator = exits.enter_context(emulator_process(LOGS / "emulator.log"))
                say(f"  pid {emulator.proc.pid}, serving {emulator.base_url}")
            stack = DistributedStack(home, emulator, services, LOGS, token)
            stack.sessions.update({proc.pid: name for name, proc in services.procs.items()})
            stack.sessions[emulator.proc.pid] = "emulator"
            try:
                prepare(stack, report, results)
                run_scenarios(stack, report, results, only)
            finally:
                with report.phase("Stop the Airflow components"):
                    for line in stack.stop():
                        say(f"  {line}")
    except StepFailedError as exc:
        report.check(False, "the e2e ran to the end", exc)
    except KeyboardInterrupt:
        report.check(False, "the e2e ran to the end", "interrupted")
    finally:
        stop_all(stack, services, report, results)
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)

    total = time.monotonic() - began
    results.update({"seconds": round(total, 1), "checks_passed": len(report.passed), "checks_failed": report.failed,
                    "phases": {name: round(seconds, 1) for name, seconds in report.phases}})
    COUNTS.write_text(json.dumps(results, indent=2) + "\n")
    footer = f"counts: {COUNTS.relative_to(ROOT)}; logs: {LOGS.relative_to(ROOT)}/"
    return report.summary("e2e-distributed", total, footer)


if __name__ == "__main__":
    sys.exit(main())
