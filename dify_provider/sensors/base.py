"""A backend-neutral sensor that waits for a remote run in poke, reschedule or deferrable mode.

A backend supplies three things: how to check its id before any request, one synchronous
poll, and the trigger to defer to. Everything else (the terminal rules, timeouts, soft_fail,
backoff, the log) is here once.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from dify_provider.client.errors import DifyConfigError
from dify_provider.client.status import Verdict, WaitPolicy
from dify_provider.client.waiting import PollSchedule, Snapshot
from dify_provider.outcome import WaitLogger, conclude
from dify_provider.triggers.base import RunPollingTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class RunPollingSensor(BaseSensorOperator):
    """
    :param poke_interval: seconds between polls (default 5).
    :param max_poke_interval: turn on backoff: after 30 s of waiting, poll every 10% of the time
        waited so far, up to this many seconds. Short runs are seen as fast as without it; long
        runs cost a fraction of the requests.
    :param timeout: seconds to wait before failing (or skipping, with ``soft_fail``).
    :param deferrable: wait in the triggerer instead of a worker slot; defaults to
        ``[operators] default_deferrable``.
    :param fail_on_partial: fail when the run partially succeeded (default: succeed, warn).
    :param fail_on_paused: fail when the run pauses for human input (default: keep waiting).
    """

    def __init__(
        self,
        *,
        poke_interval: float = 5.0,
        max_poke_interval: float | None = None,
        deferrable: bool | None = None,
        fail_on_partial: bool = False,
        fail_on_paused: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.max_poke_interval = max_poke_interval
        # Read when the DAG is parsed, not when this module is imported, so env changes apply.
        self.deferrable = (conf.getboolean("operators", "default_deferrable", fallback=False)
                           if deferrable is None else deferrable)
        self.fail_on_partial = fail_on_partial
        self.fail_on_paused = fail_on_paused
        # Checked at parse time, so a bad DAG fails to load instead of failing at run time.
        self.schedule = PollSchedule(float(self.poke_interval), max_poke_interval)

    @property
    def policy(self) -> WaitPolicy:
        return WaitPolicy(fail_on_partial=self.fail_on_partial, fail_on_paused=self.fail_on_paused)

    @abstractmethod
    def validate_run_id(self) -> str:
        """Check the (rendered) run id; raise ``DifyConfigError`` naming the field."""

    @abstractmethod
    def poll_once(self) -> Snapshot:
        """One synchronous look at the run; backend errors come back as snapshots."""

    @abstractmethod
    def build_trigger(self, run_id: str, *, last: Snapshot, **common: Any) -> RunPollingTrigger:
        """The trigger to defer to, given the shared keyword arguments and the last poll."""

    def _say(self, snapshot: Snapshot) -> None:
        if not hasattr(self, "_wait_logger"):
            self._wait_logger = WaitLogger(self.log)
        self._wait_logger(snapshot)

    def _checked_run_id(self) -> str:
        try:
            return self.validate_run_id()
        except DifyConfigError as exc:
            raise AirflowFailException(str(exc)) from exc

    def poke(self, context: Context) -> bool | PokeReturnValue:
        snapshot = self.poll_once()
        if snapshot.verdict is Verdict.WAIT:
            self._say(snapshot)
            return False
        return PokeReturnValue(is_done=True, xcom_value=conclude(snapshot, self.log, terminal_failure_retries=False))

    def execute(self, context: Context) -> Any:
        run_id = self._checked_run_id()
        if not self.deferrable:
            return super().execute(context)
        snapshot = self.poll_once()  # already over? then no deferral round trip at all
        if snapshot.verdict is not Verdict.WAIT:
            return conclude(snapshot, self.log, terminal_failure_retries=False)
        now = time.time()  # waiting messages are the trigger's to log, once
        deadline = now + self.execution_timeout.total_seconds() if self.execution_timeout else None
        trigger = self.build_trigger(
            run_id, poll_interval=float(self.poke_interval), max_poll_interval=self.max_poke_interval,
            started_at=now, end_time=now + self.timeout, execution_deadline=deadline,
            fail_on_partial=self.fail_on_partial, fail_on_paused=self.fail_on_paused, last=snapshot,
        )
        # The trigger owns the timeout (it checks the run one last time at the deadline); the
        # framework's deferral timeout is only a backstop should the triggerer be gone for good.
        backstop = timedelta(seconds=self.timeout + 2 * (self.max_poke_interval or self.poke_interval) + 60)
        self.defer(trigger=trigger, method_name="execute_complete", timeout=backstop)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        try:
            snapshot = Snapshot.from_event(event)
        except ValueError as exc:
            raise AirflowException(str(exc)) from None
        return conclude(snapshot, self.log, terminal_failure_retries=False)

    def _get_next_poke_interval(self, started_at: Any, run_duration: Any, poke_count: int) -> float:
        # Airflow's own exponential backoff doubles from the first poke; ours keeps the first
        # 30 s at the base interval so short runs are not seen later (see PollSchedule).
        return self.schedule.delay(run_duration())
