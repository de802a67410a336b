"""Turn a :class:`~dify_provider.client.waiting.Snapshot` into an Airflow task outcome.

Shared by the sensor (poke, reschedule, deferred) and the operator (streaming, deferred), so a
run's status means the same thing whichever path saw it end.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, AirflowSensorTimeout

from dify_provider.client import errors as e
from dify_provider.client.status import Reason, Verdict
from dify_provider.client.waiting import Snapshot, WaitLogger

__all__ = ["DifyRunFailedError", "DifyRunNotFoundError", "WaitLogger", "airflow_error", "conclude"]

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


def airflow_error(exc: e.DifyError) -> AirflowException:
    """A client error raised by a task: input, key, quota and not-found problems fail without
    retries (the same request would fail again); the rest may be retried."""
    if isinstance(exc, e.DifyInvalidInputError | e.DifyAuthError | e.DifyQuotaExceededError
                  | e.DifyNotFoundError | e.DifyConfigError):
        return AirflowFailException(str(exc))
    return AirflowException(str(exc))
