"""A backend-neutral trigger that polls a remote run until it ends.

Restart safety is the design rule: the trigger carries only ids, the connection id and absolute
wall-clock deadlines, has no side effects in ``run()`` (a triggerer restart or a second
triggerer may run it again at any time), and stops remote work only in ``on_kill``, and there
only when the task instance is no longer deferred: Airflow 3.3.2 calls ``on_kill`` on a user's
action, and also when a triggerer hands the trigger over to another one (see
:meth:`RunPollingTrigger._moved_not_killed`).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dify_provider.client.errors import DifyConfigError
from dify_provider.client.status import Reason, Verdict
from dify_provider.client.waiting import PollSchedule, RunKind, Snapshot, timeout_snapshot
from dify_provider.outcome import WaitLogger

#: ``on_kill`` must finish inside ``[triggerer] on_kill_timeout``; a stop call is quick or dead.
STOP_TIMEOUT = 10.0

#: An unchanged "still running" line is repeated in the task log only this often (seconds).
REPEAT_AFTER = 60.0

#: Wake-ups snap to a grid of this many seconds (at most a 40th of the poll delay), so that of the
#: thousands of triggers a triggerer holds, those due at about the same moment wake in one pass of
#: the event loop and poll together: each wake-up alone costs an event-loop pass (a system call,
#: timer bookkeeping), and at 1,000 runs waited on that was about a tenth of a poll's CPU (bench/).
#: Snapping to the nearest point moves a poll by at most half the grid, and not on average.
WAKE_GRID = 0.05


def _on_grid(when: float, delay: float) -> float:
    grid = min(WAKE_GRID, delay / 40)
    return round(when / grid) * grid if grid > 0 else when


class RunPollingTrigger(BaseTrigger, ABC):
    """Poll until the run ends, ``end_time`` passes (stop waiting) or ``execution_deadline``
    passes (the task's ``execution_timeout``: the operator stops the run when it sees it).

    :param run_id: the remote run to watch.
    :param conn_id: Airflow connection id; the key is looked up in the triggerer, never carried.
    :param poll_interval: seconds between polls (the first ``grace`` seconds with backoff).
    :param max_poll_interval: enable backoff up to this many seconds between polls.
    :param started_at: epoch seconds when waiting began (backoff is computed from it).
    :param end_time: epoch seconds after which waiting stops with a ``timeout`` event.
    :param execution_deadline: epoch seconds of the task's ``execution_timeout``.
    :param stop_on_kill: stop the remote run when a user kills the deferred task (backends
        whose API can stop a run implement :meth:`stop_run`).

    A backend implements :meth:`poll` (one look, errors mapped to snapshots), ``serialize()``
    (its own ids plus :meth:`common_kwargs`), sets :attr:`run_kind`, and may implement
    :meth:`stop_run`; backend-specific wait options belong to the subclass.
    """

    #: How messages (timeouts) name this backend's runs.
    run_kind: ClassVar[RunKind]

    def __init__(
        self,
        *,
        run_id: str,
        conn_id: str,
        poll_interval: float,
        max_poll_interval: float | None = None,
        started_at: float | None = None,
        end_time: float | None = None,
        execution_deadline: float | None = None,
        stop_on_kill: bool = False,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.started_at = time.time() if started_at is None else started_at
        self.end_time = end_time
        self.execution_deadline = execution_deadline
        if stop_on_kill and type(self).stop_run is RunPollingTrigger.stop_run:
            raise DifyConfigError("stop_on_kill", f"{type(self).__name__} has no way to stop a run")
        self.stop_on_kill = stop_on_kill
        self.schedule = PollSchedule(poll_interval, max_poll_interval)

    def common_kwargs(self) -> dict[str, Any]:
        """What ``serialize()`` carries for the base class: plain values, no credentials."""
        return {
            "poll_interval": self.poll_interval,
            "max_poll_interval": self.max_poll_interval,
            "started_at": self.started_at,
            "end_time": self.end_time,
            "execution_deadline": self.execution_deadline,
            "stop_on_kill": self.stop_on_kill,
        }

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {**self.own_kwargs(), **self.common_kwargs()}

    @abstractmethod
    def own_kwargs(self) -> dict[str, Any]:
        """The backend's own constructor arguments (ids, options): plain values, no credentials."""

    @abstractmethod
    async def poll(self) -> Snapshot:
        """One look at the run. Must not raise for backend errors: map them to snapshots."""

    async def stop_run(self) -> None:
        """Stop the remote run. Backends whose API can do it override this; the others refuse
        ``stop_on_kill=True`` when built, rather than pretend on kill."""
        raise NotImplementedError(f"{type(self).__name__} cannot stop a run")

    def _deadline(self) -> tuple[float, Reason] | None:
        limits = [(t, r) for t, r in ((self.end_time, Reason.TIMEOUT),
                                      (self.execution_deadline, Reason.EXECUTION_TIMEOUT)) if t is not None]
        return min(limits) if limits else None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        say = WaitLogger(self.log, repeat_after=REPEAT_AFTER)
        loop = asyncio.get_running_loop()
        planned = loop.time()  # when the poll about to be made was due (loop clock)
        while True:
            try:
                snapshot = await self.poll()
            except Exception as exc:  # a bug must end the wait visibly, not kill the trigger silently
                self.log.exception("polling %s failed unexpectedly", self.run_id)
                snapshot = Snapshot(Verdict.FAILURE, Reason.ERROR, self.run_id, f"{type(exc).__name__}: {exc}")
            if snapshot.verdict is not Verdict.WAIT:
                say.show_progress(snapshot)  # the run's last log lines, before the worker resumes
                yield TriggerEvent(snapshot.to_event())
                return
            now = time.time()
            say(snapshot)
            deadline = self._deadline()
            if deadline is not None and now >= deadline[0]:
                # The poll above was the last check at the deadline: a run that ended during the
                # final sleep is reported as ended, not as a timeout.
                yield TriggerEvent(timeout_snapshot(self.run_id, deadline[1], now - self.started_at, snapshot,
                                                    self.run_kind).to_event())
                return
            delay = self.schedule.delay(now - self.started_at)
            # Sleep without the last answer: thousands of runs wait here at once, and keeping each
            # one's snapshot (run detail, outputs) alive costs memory and moves it into the GC's
            # oldest generation, which every full collection then scans (see bench/).
            del snapshot
            current = loop.time()
            # Keep to the schedule (polls every ``delay``, not every ``delay`` plus a round trip);
            # after a poll that ran late, leave at least half a delay before the next.
            planned = max(planned + delay, current + delay / 2)
            wake = _on_grid(planned, delay)
            if deadline is not None:
                limit = current + max(0.0, deadline[0] - now)
                if wake >= limit:  # the last look is at the deadline itself, never before it
                    planned = wake = limit
            await asyncio.sleep(max(0.0, wake - current))

    async def on_kill(self) -> None:
        if not self.stop_on_kill:
            return
        if await self._moved_not_killed():
            self.log.info("trigger for remote run %s cancelled while its task instance is still deferred: it "
                          "moved to another triggerer, which waits on; the run is not stopped", self.run_id)
            return
        try:
            await asyncio.wait_for(self.stop_run(), timeout=STOP_TIMEOUT)
            self.log.info("stopped remote run %s because the task was killed", self.run_id)
        except Exception:
            self.log.exception("could not stop remote run %s on kill", self.run_id)

    async def _moved_not_killed(self) -> bool:
        """True when the task instance is still deferred, i.e. nobody killed it.

        Airflow 3.3.2's triggerer cancels "as a user action" (and so calls ``on_kill``) every
        trigger it runs that is no longer assigned to it, also when the scheduler gave it to
        another triggerer because this one missed heartbeats. ``make e2e-distributed`` saw that
        stop a paid run nobody had killed, which the other triggerer then waited on for good
        (Dify 1.13 shows a stopped run as running). A user's kill (mark failed or success, clear)
        changes the task instance's state before the trigger is cancelled. When the state cannot
        be read, the kill is honoured, as before.
        """
        ti = getattr(self, "task_instance", None)
        if ti is None:
            return False
        try:
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
            from asgiref.sync import sync_to_async

            map_index = getattr(ti, "map_index", -1)
            states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=ti.dag_id, map_index=map_index, task_ids=[ti.task_id], run_ids=[ti.run_id])
        except Exception as exc:  # no Execution API here (Airflow 2, a test): honour the kill
            self.log.debug("could not read the state of task instance %s: %s", getattr(ti, "task_id", "?"), exc)
            return False
        key = ti.task_id if map_index is None or map_index < 0 else f"{ti.task_id}_{map_index}"
        return (states.get(ti.run_id) or {}).get(key) == "deferred"
