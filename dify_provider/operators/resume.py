"""What a task instance remembers of its Dify run across tries, and what a retry does with it.

Dify has no idempotency key, so the only way a retry can avoid paying for a second run is to
know the first one. The run id goes to Airflow's task state store (3.3+; shared by every try of
one task instance, unlike XCom) the moment it is known, and later facts are added to the same
record: that this task stopped the run (a stopped run's record still says ``running`` on a real
Dify 1.13.2, so without this a retry would wait on a dead run), and that the run's result was
delivered (so a task cleared after success runs again instead of returning the old answer).

A retry then follows Airflow's own durable-job contract (``ResumableJobMixin``): a run still
going is re-attached, a run that succeeded is reused (its outputs, no second paid run), a run
that failed or was stopped is replaced by a new one.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dify_provider.client import errors as e
from dify_provider.client.status import Verdict, WaitPolicy
from dify_provider.client.waiting import Snapshot, snapshot_of_run

if TYPE_CHECKING:
    from airflow.sdk import Context

    from dify_provider.client.sync import DifyClient

#: task_state_store key; survives retries of the same task instance (Airflow 3.3+).
STATE_KEY = "dify_workflow_run"


class RunMemory:
    """The task state store's record of this task instance's run (a no-op without a store)."""

    def __init__(self, context: Context) -> None:
        self._store = context.get("task_state_store")
        self._try = try_number(context)

    @property
    def available(self) -> bool:
        return self._store is not None

    def get(self) -> dict[str, Any]:
        if self._store is None:
            return {}
        value = self._store.get(STATE_KEY)
        return value if isinstance(value, dict) else {}

    def starting(self, user: str, at: float) -> None:
        """Written before the start request: if its answer is lost, a retry knows a run may
        exist, for whom and since when, and can look for it."""
        self._set({"starting_at": at, "user": user, "try_number": self._try})

    def started(self, run_id: str, task_id: str | None, user: str) -> None:
        self._set({**self.get(), "workflow_run_id": run_id, "task_id": task_id, "user": user,
                   "try_number": self._try})

    def mark(self, **facts: Any) -> None:
        """Add facts (``stopped=...``, ``delivered=True``) to the record of the current run."""
        current = self.get()
        if current:
            self._set({**current, **facts})

    def mark_soon(self, **facts: Any) -> None:
        """:meth:`mark` without risking a deadlock, for ``on_kill``: it may run in a signal handler
        that interrupted the main thread while that held its connection to Airflow's supervisor
        (the store is reached through it). The write then waits in a thread of its own, given up
        after two seconds."""
        writer = threading.Thread(target=self.mark, kwargs=facts, name="dify-state-store", daemon=True)
        writer.start()
        writer.join(timeout=2.0)

    def _set(self, value: dict[str, Any]) -> None:
        if self._store is not None:
            self._store.set(STATE_KEY, value)


def try_number(context: Context) -> int:
    return int(getattr(context.get("ti"), "try_number", 1) or 1)


def default_user(context: Context) -> str:
    """``airflow:<dag>:<task>:<run>[:<map index>]``, hashed when longer than Dify's 255 chars.

    Stable for every try of one task instance, so Dify's logs show which task ran what, and a
    retry with no state-store record can find its run by it.
    """
    ti = context["ti"]
    parts = ["airflow", ti.dag_id, ti.task_id, ti.run_id]
    if getattr(ti, "map_index", -1) not in (-1, None):
        parts.append(str(ti.map_index))
    user = ":".join(parts)
    if len(user) > 255:
        user = user[:200] + ":" + hashlib.sha256(user.encode()).hexdigest()[:32]
    return user


@dataclass(frozen=True)
class EarlierRun:
    """A run an earlier try started that this try takes over instead of starting one."""

    run_id: str
    task_id: str | None
    #: Set when the run already ended as the task wants: finish with it, do not wait.
    done: Snapshot | None = None


def earlier_run(client: DifyClient, memory: RunMemory, policy: WaitPolicy, log: Any, *,
                try_number: int, user: str, find_by_user: bool) -> EarlierRun | None:
    """What a retry should take over, if anything; ``None``: start a new run.

    ``find_by_user``: with no run id recorded (no state store, or the start's answer was lost),
    look the run up in Dify's logs by this task instance's own end-user id. A run still going is
    re-attached; a finished one is taken only when an earlier try recorded that it was starting
    one at that time (otherwise it cannot be told apart from a cleared task's earlier run).
    Dify 1.13.2 writes a run's log row when it starts, and keeps a stopped run's row ``running``:
    without a record of the stop, such a run would be re-attached (the state store keeps that).
    """
    if try_number <= 1:
        return None
    record = memory.get()
    run_id = record.get("workflow_run_id")
    if run_id:
        return _from_record(client, record, policy, log, try_number)
    if find_by_user:
        since = record.get("starting_at")
        return _from_logs(client, policy, log, try_number, user, None if since is None else float(since))
    return None


def _from_record(client: DifyClient, record: dict[str, Any], policy: WaitPolicy, log: Any,
                 try_number: int) -> EarlierRun | None:
    run_id, task_id = str(record["workflow_run_id"]), record.get("task_id")
    if record.get("delivered"):
        log.info("Dify run %s already delivered its result to an earlier try (the task was cleared or failed "
                 "after it succeeded): starting a new run", run_id)
        return None
    if record.get("stopped"):
        log.info("Dify run %s was stopped by an earlier try (%s): starting a new run", run_id, record["stopped"])
        return None
    try:
        snapshot = snapshot_of_run(client.get_workflow_run(run_id), policy)
    except e.DifyError as exc:
        log.warning("Could not read Dify run %s started by an earlier try (%s): starting a new run", run_id, exc)
        return None
    if snapshot.verdict is Verdict.WAIT:
        log.info("Retry %s: re-attaching to Dify workflow run %s (status %s) started by an earlier try, instead "
                 "of starting a new one", try_number, run_id, snapshot.status)
        return EarlierRun(run_id, task_id)
    if snapshot.verdict is Verdict.SUCCESS:
        log.info("Retry %s: Dify workflow run %s started by an earlier try already %s: using its outputs instead "
                 "of starting (and paying for) a new run", try_number, run_id, snapshot.status)
        return EarlierRun(run_id, task_id, done=snapshot)
    log.info("Dify run %s of an earlier try ended %s: starting a new run", run_id, snapshot.status)
    return None


def _from_logs(client: DifyClient, policy: WaitPolicy, log: Any, try_number: int, user: str,
               since: float | None) -> EarlierRun | None:
    try:
        page = client.list_workflow_logs(created_by_end_user_session_id=user, limit=5)
    except e.DifyError as exc:
        log.warning("could not look for an earlier run of this task in Dify's logs: %s", exc)
        return None
    for entry in page.data:
        run = entry.workflow_run
        if not run.is_terminal:
            log.info("Retry %s: re-attaching to Dify workflow run %s (status %s), found in Dify's logs by this "
                     "task's end-user id", try_number, run.id, run.status)
            return EarlierRun(run.id, None)
        if since is None or (run.created_at or 0) < int(since) - 1:
            continue
        try:
            snapshot = snapshot_of_run(client.get_workflow_run(run.id), policy)
        except e.DifyError:
            continue
        if snapshot.verdict is Verdict.SUCCESS:
            log.info("Retry %s: the start request of an earlier try lost its answer, but Dify's logs show its run "
                     "%s %s: using its outputs instead of starting (and paying for) a new run", try_number, run.id,
                     snapshot.status)
            return EarlierRun(run.id, None, done=snapshot)
        return None
    if since is not None:
        log.warning("An earlier try's start request lost its answer and Dify's logs show no run of it: starting "
                    "a new run")
    return None
