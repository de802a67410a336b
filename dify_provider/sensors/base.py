"""A backend-neutral sensor that waits for a remote run in poke, reschedule or deferrable mode.

A backend supplies three things: how to check its id before any request, one synchronous
poll, and the trigger to defer to. Everything else (the terminal rules, timeouts, soft_fail,
backoff, the log and its progress lines) is here once; backend-specific wait options belong to
the subclass, which passes them to its trigger in ``build_trigger``.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from dify_provider.client.errors import DifyConfigError
from dify_provider.client.status import Verdict
from dify_provider.client.waiting import PollSchedule, Snapshot
from dify_provider.outcome import WaitLogger, conclude
from dify_provider.task_state import TaskState, task_state

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from dify_provider.triggers.base import RunPollingTrigger  # imported by the subclass's build_trigger


class RunPollingSensor(BaseSensorOperator):
    """
    :param poke_interval: seconds between polls (default 5).
    :param max_poke_interval: turn on backoff: after 30 s of waiting, poll every 10% of the time
        waited so far, up to this many seconds. Short runs are seen as fast as without it; long
        runs cost a fraction of the requests.
    :param timeout: seconds to wait before failing (or skipping, with ``soft_fail``).
    :param deferrable: wait in the triggerer instead of a worker slot; defaults to
        ``[operators] default_deferrable``.
    """

    def __init__(
        self,
        *,
        poke_interval: float = 5.0,
        max_poke_interval: float | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.max_poke_interval = max_poke_interval
        # Read when the DAG is parsed, not when this module is imported, so env changes apply.
        self.deferrable = (conf.getboolean("operators", "default_deferrable", fallback=False)
                           if deferrable is None else deferrable)
        # Checked at parse time, so a bad DAG fails to load instead of failing at run time.
        self.schedule = PollSchedule(float(self.poke_interval), max_poke_interval)

    @abstractmethod
    def validate_run_id(self) -> str:
        """Check the (rendered) run id; raise ``DifyConfigError`` naming the field."""

    @abstractmethod
    def poll_once(self) -> Snapshot:
        """One synchronous look at the run; backend errors come back as snapshots."""

    @abstractmethod
    def build_trigger(self, run_id: str, *, last: Snapshot, **common: Any) -> RunPollingTrigger:
        """The trigger to defer to, given the shared keyword arguments and the last poll."""

    def observe(self, snapshot: Snapshot) -> None:
        """Called with every snapshot the sensor acts on (each poll, the trigger's last event),
        before it acts; a backend keeps what it needs from it (e.g. lineage facts). No-op here."""

    def _logger(self, context: Context, snapshot: Snapshot) -> WaitLogger:
        """One logger per wait. A rescheduled sensor is a new process at every poke, so the
        memory of progress lines already shown lives in the task's state (the task state store,
        or a Variable before Airflow 3.3), per try (read only when there are progress lines:
        backends without them never touch it)."""
        if not hasattr(self, "_wait_logger"):
            stored = self._stored_progress(context) if snapshot.progress else {}
            self._wait_logger = WaitLogger(self.log, stored.get("shown", ()))
        return self._wait_logger

    def _stored_progress(self, context: Context) -> dict[str, Any]:
        store = task_state(context) if self.reschedule else None
        value = store.get(PROGRESS_KEY) if store is not None else None
        if isinstance(value, dict) and value.get("try") == _try_number(context):
            return value
        return {}

    def _say(self, context: Context, snapshot: Snapshot, *, final: bool = False) -> None:
        logger = self._logger(context, snapshot)
        if final:  # the run's last log lines; nothing to remember after that
            logger.show_progress(snapshot)
            return
        store = task_state(context) if self.reschedule else None
        if logger(snapshot) and store is not None:
            shown: list[Any] = logger.shown()
            store.set(PROGRESS_KEY, {"try": _try_number(context), "shown": shown})

    def _checked_run_id(self) -> str:
        try:
            return self.validate_run_id()
        except DifyConfigError as exc:
            raise AirflowFailException(str(exc)) from exc

    def poke(self, context: Context) -> bool | PokeReturnValue:
        snapshot = self.poll_once()
        self.observe(snapshot)
        if snapshot.verdict is Verdict.WAIT:
            self._say(context, snapshot)
            return False
        self._say(context, snapshot, final=True)
        return PokeReturnValue(is_done=True, xcom_value=conclude(snapshot, self.log, terminal_failure_retries=False))

    def execute(self, context: Context) -> Any:
        run_id = self._checked_run_id()
        if not self.deferrable:
            store = task_state(context) if self.reschedule else None
            if store is not None and store.forgets:
                return self._execute_then_forget_progress(context, store)
            return super().execute(context)
        snapshot = self.poll_once()  # already over? then no deferral round trip at all
        self.observe(snapshot)
        if snapshot.verdict is not Verdict.WAIT:
            self._say(context, snapshot, final=True)
            return conclude(snapshot, self.log, terminal_failure_retries=False)
        now = time.time()  # waiting messages are the trigger's to log, once
        deadline = now + self.execution_timeout.total_seconds() if self.execution_timeout else None
        trigger = self.build_trigger(
            run_id, poll_interval=float(self.poke_interval), max_poll_interval=self.max_poke_interval,
            started_at=now, end_time=now + self.timeout, execution_deadline=deadline, last=snapshot,
        )
        # The trigger owns the timeout (it checks the run one last time at the deadline); the
        # framework's deferral timeout is only a backstop should the triggerer be gone for good.
        backstop = timedelta(seconds=self.timeout + 2 * (self.max_poke_interval or self.poke_interval) + 60)
        self.defer(trigger=trigger, method_name="execute_complete", timeout=backstop)

    def _execute_then_forget_progress(self, context: Context, store: TaskState) -> Any:
        """Rescheduled, with no task state store (Airflow < 3.3): keep the progress memory while
        another poke follows, delete it however the sensor ends (done, failed, timed out, skipped)."""
        from airflow.exceptions import AirflowRescheduleException  # the class sensors raise on 2.x and 3.x

        ended = True
        try:
            return super().execute(context)
        except AirflowRescheduleException:
            ended = False
            raise
        finally:
            if ended:
                store.delete(PROGRESS_KEY)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        try:
            snapshot = Snapshot.from_event(event)
        except ValueError as exc:
            raise AirflowException(str(exc)) from None
        self.observe(snapshot)
        return conclude(snapshot, self.log, terminal_failure_retries=False)

    def _get_next_poke_interval(self, started_at: Any, run_duration: Any, poke_count: int) -> float:
        # Airflow's own exponential backoff doubles from the first poke; ours keeps the first
        # 30 s at the base interval so short runs are not seen later (see PollSchedule).
        return self.schedule.delay(run_duration())


#: Task state store key of a rescheduled sensor's progress-line memory.
PROGRESS_KEY = "dify_provider.wait_progress"


def _try_number(context: Context) -> int | None:
    ti = context.get("ti")
    return getattr(ti, "try_number", None)
