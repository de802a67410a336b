"""What a retry does with the run an earlier try of the same task instance started.

It follows Airflow's own durable-job contract (``ResumableJobMixin``): a run still going is
re-attached, a run that succeeded is reused (its outputs, no second paid run), a run that failed
or was stopped is replaced by a new one. What the earlier try left behind is read from
:class:`~dify_provider.operators.run_memory.RunMemory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dify_provider.client import errors as e
from dify_provider.client.status import Verdict, WaitPolicy
from dify_provider.client.waiting import Snapshot, snapshot_of_run

if TYPE_CHECKING:
    from dify_provider.client.sync import DifyClient
    from dify_provider.operators.run_memory import RunMemory

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
