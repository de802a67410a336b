"""What every scenario of ``make e2e-distributed`` needs: hold runs in the emulator, trigger a DAG
run, watch its task instances in the metadata DB, and count what Dify saw.

The counts come from two independent witnesses: Airflow's metadata DB (states, tries, which
worker and triggerer) and the emulator's request log (every ``POST /workflows/run``, with the
end user that names the task instance: ``airflow:<dag>:<task>:<run>:<map index>``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from demo import EmulatorProcess, say
from e2e import Report, poll

from dify_provider.client import ClientConfig, DifyClient
from distributed.stack import DistributedStack

RUN_ENDPOINT = "/workflows/run"
MAPPED = ("op", "stream", "sense")  # dify_dist's tasks; map index -1 is the unexpanded placeholder
WAITING = ("deferred", "running")


@dataclass
class Scenario:
    """One scenario's context and the counts it reports (written to the JSON)."""

    number: int
    title: str
    stack: DistributedStack
    emulator: EmulatorProcess
    report: Report
    counts: dict[str, Any] = field(default_factory=dict)
    dag_id: str = "dify_dist"
    run_id: str = ""

    def check(self, ok: bool, what: str, detail: Any = "") -> bool:
        return self.report.check(ok, f"{self.number}. {what}", detail)

    def equal(self, actual: Any, expected: Any, what: str) -> bool:
        return self.report.equal(actual, expected, f"{self.number}. {what}")

    # -- Dify (the emulator) ----------------------------------------------------------------

    def hold(self, count: int, **scenario: Any) -> None:
        """The next ``count`` runs of the echo app stay running until finished here."""
        self.emulator.admin("POST", "/script", {"app": "echo", "scenarios": [{"hold": True, **scenario}] * count})

    def start_outside_runs(self, count: int) -> list[str]:
        """Runs started by someone else (held), for the sensors to wait on."""
        config = ClientConfig(api_key=self.emulator.apps["echo"]["key"], base_url=self.emulator.base_url)
        ids = []
        with DifyClient(config) as client:
            for i in range(count):
                stream = client.run_workflow({"text": f"outside {i}"}, f"e2e-outside-{self.number}-{i}",
                                             response_mode="streaming")
                for _ in stream:
                    if stream.workflow_run_id:
                        break
                stream.close()
                assert stream.workflow_run_id is not None
                ids.append(stream.workflow_run_id)
        return ids

    def dify_runs(self) -> list[dict[str, Any]]:
        """The emulator's runs that this scenario's DAG run started, plus the outside ones."""
        mine = f":{self.run_id}"
        outside = f"e2e-outside-{self.number}-"
        return [r for r in self.emulator.admin("GET", "/runs?app=echo")
                if mine in str(r["user"]) or str(r["user"]).startswith(outside)]

    def starts(self) -> Counter[str]:
        """``POST /workflows/run`` per end user (= per task instance) from this DAG run."""
        mine = f":{self.run_id}"
        seen = self.emulator.admin("GET", f"/requests?method=POST&path={RUN_ENDPOINT}")
        return Counter(str((r["body"] or {}).get("user")) for r in seen if mine in str((r["body"] or {}).get("user")))

    def polled_since(self, runs: list[dict[str, Any]], since: float) -> bool:
        """Has every run that is waited on by polling (not the streamed ones) been polled since?"""
        seen = self.emulator.admin("GET", "/requests?method=GET")
        polled = {str(r["path"]).rsplit("/", 1)[-1] for r in seen
                  if r["received_at"] > since and str(r["path"]).startswith(f"/v1{RUN_ENDPOINT}/")}
        return all(str(run["id"]) in polled for run in runs if ":stream:" not in str(run["user"]))

    def finish_runs(self, runs: list[dict[str, Any]]) -> None:
        for run in runs:
            self.emulator.admin("POST", f"/runs/{run['id']}/finish", {})

    # -- Airflow (REST to act, the metadata DB to watch) ----------------------------------------

    def trigger(self, conf: dict[str, Any], dag_id: str = "dify_dist") -> None:
        self.dag_id = dag_id
        self.run_id = self.stack.trigger_dag(dag_id, conf)
        say(f"  DAG run {dag_id} {self.run_id}: {conf if len(str(conf)) < 120 else '(conf of ' + str(len(conf)) + ')'}")

    def tis(self, task_ids: tuple[str, ...] = ("op", "stream", "sense", "killed", "timed_out")) -> list[dict[str, Any]]:
        return [ti for ti in self.stack.task_instances(self.dag_id, self.run_id)
                if ti["task_id"] in task_ids and not (ti["task_id"] in MAPPED and ti["map_index"] == -1)]

    def wait_tis(self, what: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 300) -> float:
        """Wait until ``done(task instances)``; returns the seconds it took."""
        began = time.monotonic()
        poll(what, lambda: done(self.tis()) or None, timeout, interval=0.5, alive=self.stack.alive)
        return time.monotonic() - began

    def wait_waiting(self, deferred: int, streaming: int = 0, assigned: bool = True, timeout: float = 300) -> float:
        """Until ``deferred`` task instances are deferred (picked up by a triggerer, if
        ``assigned``) and ``streaming`` are running in a worker with their Dify run started."""
        def ready(tis: list[dict[str, Any]]) -> bool:
            waiting = [t for t in tis if t["state"] == "deferred" and (t["triggerer"] or not assigned)]
            running = [t for t in tis if t["state"] == "running" and t["task_id"] == "stream"]
            return (len(waiting) >= deferred and len(running) >= streaming
                    and len(self.dify_runs()) >= deferred + streaming)

        return self.wait_tis(f"{deferred} deferred and {streaming} streaming task instances", ready, timeout)

    def wait_dag_run(self, timeout: float = 300) -> str:
        path = f"/dags/{self.dag_id}/dagRuns/{self.stack.q(self.run_id)}"

        def ended() -> str | None:
            state = str(self.stack.get(path)["state"])
            return state if state in ("success", "failed") else None

        return poll(f"DAG run {self.run_id} to end", ended, timeout, interval=1.0, alive=self.stack.alive)

    def log_lines_with(self, text: str, *, task_id: str = "*", attempt: int | None = None,
                       since: float = 0.0) -> int:
        """Lines containing ``text`` in this DAG run's task and trigger log files (the workers and
        triggerers write them on this host), modified after ``since``."""
        folder = self.stack.logs / "tasks" / f"dag_id={self.dag_id}" / f"run_id={self.run_id}"
        pattern = f"task_id={task_id}/**/attempt={attempt if attempt is not None else '*'}.log*"
        return sum(path.read_text(errors="replace").count(text) for path in folder.glob(pattern)
                   if path.is_file() and path.stat().st_mtime >= since)

    def by_triggerer(self) -> dict[str, int]:
        return dict(Counter(str(t["triggerer"]) for t in self.tis() if t["state"] == "deferred" and t["triggerer"]))

    # -- the checks every scenario ends with ------------------------------------------------------

    def check_outcome(self, tasks: int, starts: int, *, try_number: int | None = 1, state: str = "success") -> None:
        """Every task instance ended ``state`` (in try ``try_number``), and Dify saw exactly one
        start per task instance that starts a run (``starts`` of them)."""
        tis = self.tis()
        self.equal(Counter(t["state"] for t in tis), Counter({state: tasks}),
                   f"all {tasks} task instances ended {state}")
        if try_number is not None:
            self.equal(sorted({t["try_number"] for t in tis}), [try_number], f"each in try {try_number}")
        seen = self.starts()
        duplicates = sum(n - 1 for n in seen.values() if n > 1)
        self.equal((len(seen), duplicates), (starts, 0), f"Dify saw {starts} run starts, one per task instance, "
                                                         "none twice")
        lost = [t for t in tis if t["state"] != state]
        if state == "success":  # the result each task pushed (the run's outputs, the sensor's detail)
            (pushed,), = self.stack.sql(
                "SELECT count(*) FROM xcom WHERE dag_id = %s AND run_id = %s AND key = 'return_value' "
                "AND task_id IN ('op', 'stream', 'sense')",
                self.dag_id, self.run_id)
            self.equal(pushed, tasks, f"{tasks} results in XCom (return_value), none lost")
            lost += [None] * max(0, tasks - int(pushed))
        self.counts.update({"task_instances": len(tis), "run_starts": sum(seen.values()),
                            "duplicate_starts": duplicates, "lost_results": len(lost)})

