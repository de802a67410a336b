"""A Chenyu progress answer (or error) as the backend-neutral :class:`Snapshot`.

This is all the waiting logic Chenyu contributes: the verdict comes from :func:`.status.judge`,
the XCom detail from :meth:`RunProgress.summary`, and the lines a person watching the task log
wants (percent, queue position and estimated wait, each run-log line once) go in
``Snapshot.progress``, which every generic waiter logs without repeating a line.
"""

from __future__ import annotations

from dify_provider.client import errors as e
from dify_provider.client.chenyu.models import RunLogEntry, RunProgress
from dify_provider.client.chenyu.status import ChenyuRunStatus, judge
from dify_provider.client.status import Reason
from dify_provider.client.waiting import RunKind, Snapshot, human_duration, snapshot_of_error

CHENYU_RUN = RunKind("Chenyu run", "Chenyu", "wrong run order id, or a run order of another account's key")


def snapshot_of_progress(progress: RunProgress, run_order_id: str) -> Snapshot:
    decision = judge(progress.status)
    rid = run_order_id
    error = progress.error.text() if progress.error else ""
    messages = {
        Reason.SUCCEEDED: f"Chenyu run {rid} succeeded{_effort(progress)}",
        Reason.FAILED: f"Chenyu run {rid} failed: {error or _last_error_line(progress) or 'no error text from Chenyu'}",
        Reason.STOPPED: f"Chenyu run {rid} was canceled" + (f": {error}" if error else ""),
        Reason.RUNNING: f"Chenyu run {rid} is {_position(progress)}",
        Reason.UNKNOWN_STATUS: f"Chenyu run {rid} reports status {str(progress.status)!r}, unknown to this "
        "provider; treating it as not finished",
    }
    lines = [_log_line(entry) for entry in progress.logs]
    if decision.reason is Reason.RUNNING:
        lines.append(messages[Reason.RUNNING])
    return Snapshot(decision.verdict, decision.reason, rid, messages[decision.reason], str(progress.status),
                    progress.summary(), tuple(lines))


def snapshot_of_chenyu_error(run_order_id: str, exc: e.DifyError) -> Snapshot:
    """Transient errors wait, a missing run order or a refused key fail: the generic rules,
    worded for Chenyu."""
    return snapshot_of_error(run_order_id, exc, CHENYU_RUN)


def _position(progress: RunProgress) -> str:
    """``queued: position 3, about 40 s to wait`` / ``running: 43% (3/7 nodes)``."""
    if progress.status == ChenyuRunStatus.QUEUED:
        queue = progress.queue_info
        parts = []
        if queue is not None and queue.position is not None:
            parts.append(f"position {queue.position}")
        if queue is not None and queue.estimated_wait_sec is not None:
            parts.append(f"about {human_duration(queue.estimated_wait_sec)} to wait")
        return "queued" + (f": {', '.join(parts)}" if parts else "")
    text = f"running: {progress.progress_percent:.0f}%"
    engine = progress.progress_snapshot
    if engine.completed_node_count is not None and engine.total_runnable_nodes:
        text += f" ({engine.completed_node_count}/{engine.total_runnable_nodes} nodes)"
    return text


def _log_line(entry: RunLogEntry) -> str:
    when = entry.at.in_timezone("UTC").format("HH:mm:ss") if entry.at else "--:--:--"
    where = f" [{entry.node_id}]" if entry.node_id else ""
    what = entry.event_type or "log"
    return f"Chenyu log {when} {(entry.level or 'info').upper()} {what}{where}: {entry.message}"


def _last_error_line(progress: RunProgress) -> str:
    errors = [entry.message for entry in progress.logs if (entry.level or "").lower() == "error" and entry.message]
    return errors[-1] if errors else ""


def _effort(progress: RunProgress) -> str:
    """`` in 8.4 s, cost 0.0003 (compute 0.0003, external models 0)``."""
    text = ""
    if progress.actual_execution_duration_sec is not None:
        text += f" in {progress.actual_execution_duration_sec:.1f} s"
    if progress.total_cost is not None:
        text += (f"{',' if text else ''} cost {progress.total_cost:g} (compute {progress.compute_cost or 0:g}, "
                 f"external models {progress.external_model_cost or 0:g})")
    return text
