"""The one place that knows Chenyu's run statuses and what each means for a waiting caller.

Chenyu's "query workflow execution progress" page names five statuses and stops its own polling
loop on exactly ``succeeded``, ``failed`` and ``canceled``. Anything else is treated as not
finished (and the waiter warns once): failing a healthy run because Chenyu added a status would
be worse than waiting for it until the timeout.
"""

from __future__ import annotations

import enum

from dify_provider.client.status import Decision, Reason, Verdict


class ChenyuRunStatus(enum.StrEnum):
    """The statuses the progress endpoint documents."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: frozenset[ChenyuRunStatus] = frozenset(
    {ChenyuRunStatus.SUCCEEDED, ChenyuRunStatus.FAILED, ChenyuRunStatus.CANCELED}
)

_DECISIONS: dict[ChenyuRunStatus, Decision] = {
    ChenyuRunStatus.QUEUED: Decision(Verdict.WAIT, Reason.RUNNING),
    ChenyuRunStatus.RUNNING: Decision(Verdict.WAIT, Reason.RUNNING),
    ChenyuRunStatus.SUCCEEDED: Decision(Verdict.SUCCESS, Reason.SUCCEEDED),
    ChenyuRunStatus.FAILED: Decision(Verdict.FAILURE, Reason.FAILED),
    # A canceled run was ended by someone before it finished: the same meaning as Dify's
    # "stopped", so the same wire value (Reason values are a wire format: reuse before adding).
    ChenyuRunStatus.CANCELED: Decision(Verdict.FAILURE, Reason.STOPPED),
}


def parse_status(value: str) -> ChenyuRunStatus | str:
    """The enum member, or the raw string for a status this library does not know (kept so a
    waiter can name it in its warning; never terminal)."""
    try:
        return ChenyuRunStatus(value)
    except ValueError:
        return value


def judge(status: ChenyuRunStatus | str) -> Decision:
    """Map a Chenyu status to the generic decision; unknown statuses wait."""
    parsed = parse_status(str(status))
    if isinstance(parsed, ChenyuRunStatus):
        return _DECISIONS[parsed]
    return Decision(Verdict.WAIT, Reason.UNKNOWN_STATUS)
