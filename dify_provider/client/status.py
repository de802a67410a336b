"""The one place that knows Dify's run statuses and what each means for a waiting caller.

Hook, sensor, trigger and operator all decide "done / failed / keep waiting" through
:func:`judge`, so the rules cannot drift apart between the sync, deferred and streaming paths
(every provider we studied repeats this table three or four times and got it wrong in one copy).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class WorkflowRunStatus(enum.StrEnum):
    """All values of Dify's ``WorkflowExecutionStatus`` (dify-api.md section 5)."""

    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    PARTIAL_SUCCEEDED = "partial-succeeded"
    PAUSED = "paused"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


#: Dify's own ``_END_STATE``: once here, a run never changes again.
TERMINAL_STATUSES: frozenset[WorkflowRunStatus] = frozenset(
    {
        WorkflowRunStatus.SUCCEEDED,
        WorkflowRunStatus.FAILED,
        WorkflowRunStatus.STOPPED,
        WorkflowRunStatus.PARTIAL_SUCCEEDED,
    }
)

#: The only values ``GET /workflows/logs?status=`` accepts; others are a 400 from Dify.
LOG_FILTER_STATUSES: frozenset[WorkflowRunStatus] = frozenset(
    {WorkflowRunStatus.SUCCEEDED, WorkflowRunStatus.FAILED, WorkflowRunStatus.STOPPED}
)


def parse_status(value: str) -> WorkflowRunStatus | str:
    """Return the enum member, or the raw string for a status this library does not know.

    Unknown strings are kept (an intermediate Dify release called the pause ``suspended``) so a
    caller can log them; they are never terminal.
    """
    try:
        return WorkflowRunStatus(value)
    except ValueError:
        return value


def is_terminal(status: WorkflowRunStatus | str) -> bool:
    return status in TERMINAL_STATUSES


class Verdict(enum.StrEnum):
    """What a waiting caller should do next."""

    SUCCESS = "success"
    FAILURE = "failure"
    WAIT = "wait"


class Reason(enum.StrEnum):
    """Why a wait ended (or did not). Carried in trigger events, so values are a wire format:
    add members, never rename them."""

    SUCCEEDED = "succeeded"
    PARTIAL_SUCCEEDED = "partial_succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    PAUSED = "paused"
    RUNNING = "running"
    UNKNOWN_STATUS = "unknown_status"
    NOT_FOUND = "not_found"
    AUTH = "auth"
    TIMEOUT = "timeout"
    EXECUTION_TIMEOUT = "execution_timeout"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How strict a waiting caller is about the two in-between outcomes."""

    fail_on_partial: bool = False
    fail_on_paused: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: Reason


_DECISIONS: dict[WorkflowRunStatus, Decision] = {
    WorkflowRunStatus.SUCCEEDED: Decision(Verdict.SUCCESS, Reason.SUCCEEDED),
    WorkflowRunStatus.FAILED: Decision(Verdict.FAILURE, Reason.FAILED),
    WorkflowRunStatus.STOPPED: Decision(Verdict.FAILURE, Reason.STOPPED),
    WorkflowRunStatus.RUNNING: Decision(Verdict.WAIT, Reason.RUNNING),
    WorkflowRunStatus.SCHEDULED: Decision(Verdict.WAIT, Reason.RUNNING),
}


def judge(status: WorkflowRunStatus | str, policy: WaitPolicy = WaitPolicy()) -> Decision:
    """Map a run status to a decision. Unknown statuses wait: failing closed on a status a newer
    Dify invented would fail healthy runs; the caller logs the unknown value instead."""
    status = parse_status(str(status))  # a raw "succeeded" (e.g. from summary()) is not unknown
    if status == WorkflowRunStatus.PARTIAL_SUCCEEDED:
        verdict = Verdict.FAILURE if policy.fail_on_partial else Verdict.SUCCESS
        return Decision(verdict, Reason.PARTIAL_SUCCEEDED)
    if status == WorkflowRunStatus.PAUSED:
        return Decision(Verdict.FAILURE if policy.fail_on_paused else Verdict.WAIT, Reason.PAUSED)
    if isinstance(status, WorkflowRunStatus):
        return _DECISIONS[status]
    return Decision(Verdict.WAIT, Reason.UNKNOWN_STATUS)
