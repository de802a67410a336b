"""Framework-free waiting primitives: what one poll concluded, and when to poll next.

A backend (Dify, Chenyu) turns its own answer, or its own error, into a :class:`Snapshot`; every
waiter (poke-mode sensor, trigger, streaming operator) acts on snapshots only, so the rules for
"done, failed, keep waiting" exist once whatever the backend or the Airflow mode.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dify_provider.client import errors as e
from dify_provider.client.status import Decision, Reason, Verdict, WaitPolicy, judge

if TYPE_CHECKING:
    from dify_provider.client.models import WorkflowRun

#: Bumped when the event payload changes shape, so a rolling upgrade never misreads an event.
EVENT_VERSION = 1


@dataclass(frozen=True)
class Snapshot:
    """One poll's conclusion. ``detail`` is JSON-safe and small: it goes to XCom and events.

    ``progress`` is what a person watching the task log should see for this poll (a backend's
    percent, queue position, new run-log lines). Waiters log each distinct line once per wait,
    and while a run waits these lines take the place of the per-poll ``message``. It never goes
    into events: only the waiter that polled shows it.
    """

    verdict: Verdict
    reason: Reason
    run_id: str
    message: str
    status: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    progress: tuple[str, ...] = ()

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
    return Snapshot(decision.verdict, decision.reason, run.id, _message(run, decision.reason, console_link),
                    str(run.status), run.summary())


def _message(run: WorkflowRun, reason: Reason, console_link: str | None) -> str:
    # Only the message that applies is built: a triggerer makes this call thousands of times a
    # second, nearly always for a run that is still running.
    rid = run.id
    match reason:
        case Reason.RUNNING:
            return f"Dify workflow run {rid} is {run.status}"
        case Reason.SUCCEEDED:
            return f"Dify workflow run {rid} succeeded ({_tokens(run)})"
        case Reason.PARTIAL_SUCCEEDED:
            return (f"Dify workflow run {rid} partially succeeded: some nodes failed and were handled by "
                    f"their error strategy ({_tokens(run)})")
        case Reason.FAILED:
            return f"Dify workflow run {rid} failed: {run.error or 'no error text from Dify'}"
        case Reason.STOPPED:
            return (f"Dify workflow run {rid} was stopped (stop API, moderation or an operator)"
                    + (f": {run.error}" if run.error else ""))
        case Reason.PAUSED:
            return (f"Dify workflow run {rid} is paused waiting for human input; answer the form in "
                    f"{console_link or 'the Dify console'} (or POST /form/human_input/<token>) to resume it")
        case _:
            return (f"Dify workflow run {rid} reports status {str(run.status)!r}, unknown to this provider; "
                    "treating it as not finished")


@dataclass(frozen=True)
class RunKind:
    """How messages name one backend's runs, so generic waiters speak each backend's language."""

    #: "Dify workflow run", "Chenyu run": what "<noun> <id> not found" is about.
    noun: str
    #: Who refused a key ("Dify", "Chenyu").
    service: str
    #: Why a run may not be found, for the person fixing it.
    not_found_hint: str


DIFY_RUN = RunKind("Dify workflow run", "Dify", "wrong id, another app's key, or older than the log retention")

#: Errors that say nothing about the run: the wait goes on, bounded by its timeout.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    e.DifyTransportError,
    e.DifyServerError,
    e.DifyRateLimitError,
    e.DifyResponseError,
)


def snapshot_of_error(run_id: str, exc: e.DifyError, kind: RunKind = DIFY_RUN) -> Snapshot:
    if isinstance(exc, TRANSIENT_ERRORS):
        return Snapshot(Verdict.WAIT, Reason.ERROR, run_id, f"transient error, still waiting: {exc}")
    if isinstance(exc, e.DifyNotFoundError):
        return Snapshot(Verdict.FAILURE, Reason.NOT_FOUND, run_id,
                        f"{kind.noun} {run_id} not found: {kind.not_found_hint}")
    if isinstance(exc, e.DifyAuthError):
        return Snapshot(Verdict.FAILURE, Reason.AUTH, run_id, f"{kind.service} refused the connection's API key: {exc}")
    return Snapshot(Verdict.FAILURE, Reason.ERROR, run_id, str(exc))


def timeout_snapshot(run_id: str, reason: Reason, waited: float, last: Snapshot | None,
                     kind: RunKind = DIFY_RUN) -> Snapshot:
    what = "execution_timeout" if reason is Reason.EXECUTION_TIMEOUT else "timeout"
    status = last.status if last else None
    return Snapshot(Verdict.FAILURE, reason, run_id,
                    f"gave up waiting for {kind.noun} {run_id} after {human_duration(waited)} ({what}); "
                    f"last status: {status or 'unknown'}", status, last.detail if last else {})


def human_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.0 h``: durations in messages people read, never raw epochs."""
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


class WaitLogger:
    """Logs a waiting run without flooding the task log: paused and unknown statuses once,
    transient errors as warnings, other status messages at info.

    A backend's progress lines (:attr:`Snapshot.progress`) are shown each once per wait, and
    while a run waits they replace the per-poll message: a person watching sees the percent when
    it moves and each run-log line exactly once, not the same status line every few seconds.
    The memory of shown lines is exportable (:meth:`shown`) so a waiter that is a new process at
    every poll (a rescheduled sensor) can carry it over.

    ``repeat_after`` (seconds) throttles the plain "still running" line: when it has not changed
    it is repeated only that often. A triggerer waiting on thousands of runs spent an eighth of its
    CPU writing the same line per run every few seconds (see ``bench/``); a changed status,
    pauses, errors and progress lines are logged as they come.
    """

    #: A run printing more lines than this may show the oldest of them again; bounds the memory.
    MAX_REMEMBERED = 5000

    def __init__(self, log: logging.Logger | Any, shown: Iterable[str] = (), *, repeat_after: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._said: set[Reason] = set()
        self._repeat_after = repeat_after
        self._clock = clock
        self._last: tuple[str, float] | None = None  # the last plain line, and when it was logged
        # Digests, not lines: small enough to persist between the pokes of a rescheduled sensor.
        self._shown: dict[str, None] = dict.fromkeys(shown)

    def __call__(self, snapshot: Snapshot) -> bool:
        """Log one waiting snapshot; True if it showed a progress line not shown before."""
        new = self.show_progress(snapshot)
        if snapshot.reason is Reason.ERROR:
            self._log.warning("%s", snapshot.message)
        elif snapshot.reason in (Reason.PAUSED, Reason.UNKNOWN_STATUS):
            if snapshot.reason not in self._said:
                self._said.add(snapshot.reason)
                self._log.warning("%s", snapshot.message)
        elif not snapshot.progress:
            now = self._clock()
            if self._last is None or self._last[0] != snapshot.message or now - self._last[1] >= self._repeat_after:
                self._last = (snapshot.message, now)
                self._log.info("%s", snapshot.message)
        return new

    def show_progress(self, snapshot: Snapshot) -> bool:
        """Log the snapshot's progress lines not shown yet; True if any was."""
        new = False
        for line in snapshot.progress:
            digest = hashlib.blake2b(line.encode(), digest_size=8).hexdigest()
            if digest in self._shown:
                continue
            self._shown[digest] = None
            new = True
            self._log.info("%s", line)
        while len(self._shown) > self.MAX_REMEMBERED:
            del self._shown[next(iter(self._shown))]
        return new

    def shown(self) -> list[str]:
        """The memory of lines already shown (opaque digests), oldest first."""
        return list(self._shown)
