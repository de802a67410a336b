"""Turn a :class:`~dify_provider.client.waiting.Snapshot` into an Airflow task outcome.

Shared by the sensor (poke, reschedule, deferred) and the operator (streaming, deferred), so a
run's status means the same thing whichever path saw it end.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from dify_provider.client.status import Reason, Verdict
from dify_provider.client.waiting import Snapshot

_NO_RETRY = {Reason.NOT_FOUND, Reason.AUTH}
_TIMEOUTS = {Reason.TIMEOUT, Reason.EXECUTION_TIMEOUT}


class DifyRunFailedError(AirflowException):
    """The Dify run ended badly (failed, stopped, partial with ``fail_on_partial``, ...)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        super().__init__(snapshot.message)


class DifyRunNotFoundError(AirflowFailException):
    """Retrying cannot help: the id or the key is wrong. Fails without using up retries."""


def conclude(snapshot: Snapshot, log: logging.Logger | Any, *, terminal_failure_retries: bool = True) -> dict[str, Any]:
    """Return the run detail for XCom on success, raise the right Airflow exception otherwise.

    ``terminal_failure_retries=False`` (the sensor) fails a finished-and-failed run without
    retries: re-waiting on a run that already failed can only fail again.
    """
    if snapshot.verdict is Verdict.SUCCESS:
        if snapshot.reason is Reason.PARTIAL_SUCCEEDED:
            log.warning("%s", snapshot.message)
        else:
            log.info("%s", snapshot.message)
        return snapshot.detail
    if snapshot.verdict is Verdict.WAIT:
        raise AirflowException(f"internal error: concluding a run that is still going ({snapshot.message})")
    log.error("%s", snapshot.message)
    if snapshot.reason in _NO_RETRY:
        raise DifyRunNotFoundError(snapshot.message)
    if snapshot.reason in _TIMEOUTS:
        raise AirflowSensorTimeout(snapshot.message)
    if not terminal_failure_retries:
        raise AirflowFailException(snapshot.message)
    raise DifyRunFailedError(snapshot)


class WaitLogger:
    """Logs a waiting run without flooding the task log: paused and unknown statuses once,
    transient errors as warnings, other status messages at info.

    A backend's progress lines (:attr:`Snapshot.progress`) are shown each once per wait, and
    while a run waits they replace the per-poll message: a person watching sees the percent when
    it moves and each run-log line exactly once, not the same status line every few seconds.
    The memory of shown lines is exportable (:meth:`shown`) so a waiter that is a new process at
    every poll (a rescheduled sensor) can carry it over.
    """

    #: A run printing more lines than this may show the oldest of them again; bounds the memory.
    MAX_REMEMBERED = 5000

    def __init__(self, log: logging.Logger | Any, shown: Iterable[str] = ()) -> None:
        self._log = log
        self._said: set[Reason] = set()
        # Digests, not lines: small enough to persist between the pokes of a rescheduled sensor.
        self._shown: dict[str, None] = dict.fromkeys(shown)

    def __call__(self, snapshot: Snapshot) -> None:
        self.show_progress(snapshot)
        if snapshot.reason is Reason.ERROR:
            self._log.warning("%s", snapshot.message)
        elif snapshot.reason in (Reason.PAUSED, Reason.UNKNOWN_STATUS):
            if snapshot.reason not in self._said:
                self._said.add(snapshot.reason)
                self._log.warning("%s", snapshot.message)
        elif not snapshot.progress:
            self._log.info("%s", snapshot.message)

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
