"""Framework-free waiting primitives: what one poll concluded, and when to poll next.

A backend (Dify today) turns its own answer, or its own error, into a :class:`Snapshot`; every
waiter (poke-mode sensor, trigger, streaming operator) acts on snapshots only, so the rules for
"done, failed, keep waiting" exist once whatever the backend or the Airflow mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dify_provider.client import errors as e
from dify_provider.client.models import WorkflowRun
from dify_provider.client.status import Decision, Reason, Verdict, WaitPolicy, judge

#: Bumped when the event payload changes shape, so a rolling upgrade never misreads an event.
EVENT_VERSION = 1


@dataclass(frozen=True)
class Snapshot:
    """One poll's conclusion. ``detail`` is JSON-safe and small: it goes to XCom and events."""

    verdict: Verdict
    reason: Reason
    run_id: str
    message: str
    status: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_event(self) -> dict[str, Any]:
        return {
            "version": EVENT_VERSION,
            "verdict": str(self.verdict),
            "reason": str(self.reason),
            "run_id": self.run_id,
            "status": self.status,
            "message": self.message,
            "detail": self.detail,
        }

    @classmethod
    def from_event(cls, payload: Any) -> Snapshot:
        """Fail closed: anything that is not a well-formed event of a known version is an error,
        never a silent success (the bug dbt Cloud and OpenAI both shipped)."""
        if not isinstance(payload, dict) or payload.get("version") != EVENT_VERSION:
            raise ValueError(f"not a trigger event this provider understands: {payload!r:.200}")
        try:
            return cls(
                verdict=Verdict(payload["verdict"]),
                reason=Reason(payload["reason"]),
                run_id=str(payload["run_id"]),
                message=str(payload["message"]),
                status=payload.get("status"),
                detail=dict(payload.get("detail") or {}),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"malformed trigger event ({exc}): {payload!r:.200}") from None


def _tokens(run: WorkflowRun) -> str:
    return f"{run.total_steps} steps, {run.total_tokens} tokens, {run.elapsed_time:.1f} s"


def snapshot_of_run(run: WorkflowRun, policy: WaitPolicy, *, console_link: str | None = None) -> Snapshot:
    decision: Decision = judge(run.status, policy)
    rid = run.id
    messages = {
        Reason.SUCCEEDED: f"Dify workflow run {rid} succeeded ({_tokens(run)})",
        Reason.PARTIAL_SUCCEEDED: f"Dify workflow run {rid} partially succeeded: some nodes failed and were "
        f"handled by their error strategy ({_tokens(run)})",
        Reason.FAILED: f"Dify workflow run {rid} failed: {run.error or 'no error text from Dify'}",
        Reason.STOPPED: f"Dify workflow run {rid} was stopped (stop API, moderation or an operator)"
        + (f": {run.error}" if run.error else ""),
        Reason.PAUSED: f"Dify workflow run {rid} is paused waiting for human input; answer the form in "
        f"{console_link or 'the Dify console'} (or POST /form/human_input/<token>) to resume it",
        Reason.RUNNING: f"Dify workflow run {rid} is {run.status}",
        Reason.UNKNOWN_STATUS: f"Dify workflow run {rid} reports status {str(run.status)!r}, unknown to this "
        "provider; treating it as not finished",
    }
    return Snapshot(decision.verdict, decision.reason, rid, messages[decision.reason], str(run.status),
                    run.summary())


#: Errors that say nothing about the run: the wait goes on, bounded by its timeout.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    e.DifyTransportError,
    e.DifyServerError,
    e.DifyRateLimitError,
    e.DifyResponseError,
)


def snapshot_of_error(run_id: str, exc: e.DifyError) -> Snapshot:
    if isinstance(exc, TRANSIENT_ERRORS):
        return Snapshot(Verdict.WAIT, Reason.ERROR, run_id, f"transient error, still waiting: {exc}")
    if isinstance(exc, e.DifyNotFoundError):
        return Snapshot(Verdict.FAILURE, Reason.NOT_FOUND, run_id,
                        f"Dify workflow run {run_id} not found: wrong id, another app's key, or older than "
                        "the log retention")
    if isinstance(exc, e.DifyAuthError):
        return Snapshot(Verdict.FAILURE, Reason.AUTH, run_id, f"Dify refused the connection's API key: {exc}")
    return Snapshot(Verdict.FAILURE, Reason.ERROR, run_id, str(exc))


def timeout_snapshot(run_id: str, reason: Reason, waited: float, last: Snapshot | None) -> Snapshot:
    what = "execution_timeout" if reason is Reason.EXECUTION_TIMEOUT else "timeout"
    status = last.status if last else None
    return Snapshot(Verdict.FAILURE, reason, run_id,
                    f"gave up waiting for Dify workflow run {run_id} after {_human(waited)} ({what}); "
                    f"last status: {status or 'unknown'}", status, last.detail if last else {})


def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class PollSchedule:
    """Fixed interval, or "start fast, grow to a cap".

    With ``max_interval`` set, polls stay at ``interval`` for the first ``grace`` seconds (so short
    runs are seen as fast as with fixed polling), then wait ``ratio`` of the time already waited,
    up to ``max_interval``. The delay depends only on elapsed time, so a trigger rebuilt after a
    triggerer restart continues the same schedule from its serialised start time.
    """

    interval: float
    max_interval: float | None = None
    grace: float = 30.0
    ratio: float = 0.1

    def __post_init__(self) -> None:
        if not (self.interval > 0 and math.isfinite(self.interval)):
            raise e.DifyConfigError("poll_interval", "must be a positive number of seconds")
        if self.max_interval is not None and self.max_interval < self.interval:
            raise e.DifyConfigError("max_poll_interval", "must be at least poll_interval")

    def delay(self, elapsed: float) -> float:
        if self.max_interval is None or elapsed < self.grace:
            return self.interval
        return min(self.max_interval, max(self.interval, self.ratio * elapsed))
