"""What a task instance remembers of its Dify run across tries.

Dify has no idempotency key, so the only way a retry can avoid paying for a second run is to
know the first one. The run id is written the moment it is known to the task instance's state
(:mod:`dify_provider.task_state`: Airflow's task state store, or an Airflow Variable before 3.3;
never XCom, which Airflow clears when a new try starts). A Variable record is deleted when the
task ends: on success, or when it fails for the last time (unless it stopped the run, see
below); a task killed with retries left keeps it for the next try.

Later facts go into the same record: that this task stopped the run (a stopped run's record
still says ``running`` on a real Dify 1.13.2, so without this a retry would wait on a dead run),
and that the run's result was delivered (so a task cleared after success runs again instead of
returning the old answer). What each run of the task spent (``spend``, per run id) stays in the
record across its runs, so a budget holds over all tries; it goes when the task succeeds.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from dify_provider.client.usage import Spend
from dify_provider.task_state import task_state

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: task_state_store key; survives retries of the same task instance.
STATE_KEY = "dify_workflow_run"


class RunMemory:
    """The record of this task instance's run, in whichever store this Airflow has.

    Read once and then kept here: only this task instance writes its record, and within one
    execution only through this object, while every read or write through the store is a round
    trip to Airflow's API server (before this cache, a deferred task made 16 reads; measured by
    ``make e2e-distributed``). A write that would change nothing is not sent.
    """

    def __init__(self, context: Context) -> None:
        self._try = try_number(context)
        self._state = task_state(context)
        self._record: dict[str, Any] | None = None  # None: not read yet

    def get(self) -> dict[str, Any]:
        if self._state is None:
            return {}
        if self._record is None:
            value = self._state.get(STATE_KEY)
            self._record = value if isinstance(value, dict) else {}
        return dict(self._record)

    def starting(self, user: str, at: float) -> None:
        """Written before the start request: if its answer is lost, a retry knows a run may
        exist, for whom and since when, and can look for it."""
        spend = self.get().get("spend")
        self._set({"starting_at": at, "user": user, "try_number": self._try, **({"spend": spend} if spend else {})})

    def started(self, run_id: str, task_id: str | None, user: str) -> None:
        self._set({**self.get(), "workflow_run_id": run_id, "task_id": task_id, "user": user,
                   "try_number": self._try})

    def mark(self, **facts: Any) -> None:
        """Add facts (``stopped=...``) to the record of the current run."""
        current = self.get()
        if current:
            self._set({**current, **facts})

    def mark_soon(self, **facts: Any) -> None:
        """:meth:`mark` without risking a deadlock, for ``on_kill``: it may run in a signal handler
        that interrupted the main thread while that held its connection to Airflow's supervisor
        (the store is reached through it). The write then waits in a thread of its own, given up
        after two seconds."""
        self._record = None  # read afresh: on Airflow 2 this object may be pre_execute's, older than the record
        writer = threading.Thread(target=self.mark, kwargs=facts, name="dify-state-store", daemon=True)
        writer.start()
        writer.join(timeout=2.0)

    def spent(self, *, besides: str | None = None) -> Spend:
        """What the task's runs spent so far (but run ``besides``), as their records say."""
        total = Spend()
        for run_id, spend in (self.get().get("spend") or {}).items():
            if run_id != besides:
                total = total + Spend.from_dict(spend)
        return total

    def spend_facts(self, run_id: str, spend: Spend) -> dict[str, Any]:
        """The ``spend`` fact with run ``run_id``'s spend set (for :meth:`mark` and ``mark_soon``)."""
        return {"spend": {**(self.get().get("spend") or {}), run_id: spend.as_dict()}}

    def delivered(self) -> None:
        """The run's result reached the task: a later try (a clear) must start a new run."""
        if self._state is not None and self._state.forgets:
            self._state.delete(STATE_KEY)
            self._record = {}
        elif self.get():
            self._set({**{k: v for k, v in self.get().items() if k != "spend"}, "delivered": True})

    @contextlib.contextmanager
    def kept_for_retries(self, context: Context) -> Iterator[None]:
        """Around a try: if it fails for the last time, a Variable record is deleted (the state
        store's rows go with the DAG run), unless it says this task stopped its run: a cleared
        task must not re-attach to a stopped run that Dify 1.13 still shows as running. A
        deferral is not an end."""
        try:
            yield
        except BaseException as exc:
            if (self._state is not None and self._state.forgets and _final(exc, context)
                    and not self.get().get("stopped")):
                self._state.delete(STATE_KEY)
                self._record = {}
            raise

    def _set(self, value: dict[str, Any]) -> None:
        if self._state is not None and value != self._record:
            self._state.set(STATE_KEY, value)
            self._record = dict(value)


def _final(exc: BaseException, context: Context) -> bool:
    from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout, TaskDeferred

    if isinstance(exc, TaskDeferred) or type(exc).__name__ == "TaskAwaitingInput":  # 3.3: waits for a person
        return False
    if isinstance(exc, AirflowFailException | AirflowSensorTimeout):
        return True
    ti = context.get("ti")
    max_tries = getattr(ti, "max_tries", None)
    return max_tries is not None and try_number(context) > int(max_tries)


def try_number(context: Context) -> int:
    return int(getattr(context.get("ti"), "try_number", 1) or 1)


def default_user(context: Context, *, scope: Literal["task", "dag_run"] = "task") -> str:
    """``airflow:<dag>:<task>:<run>[:<map index>]``, hashed when longer than Dify's 255 chars.

    Stable for every try of one task instance, so Dify's logs show which task ran what, and a
    retry with no record can find its run by it. ``scope="dag_run"`` gives
    ``airflow:<dag>:<run>`` instead, shared by the tasks of a DAG run: Dify lets only a
    conversation's own end user continue it, so chat tasks share one to hold a conversation.
    """
    ti = context["ti"]
    parts = ["airflow", ti.dag_id, ti.run_id] if scope == "dag_run" else ["airflow", ti.dag_id, ti.task_id, ti.run_id]
    if scope == "task" and getattr(ti, "map_index", -1) not in (-1, None):
        parts.append(str(ti.map_index))
    user = ":".join(parts)
    if len(user) > 255:
        user = user[:200] + ":" + hashlib.sha256(user.encode()).hexdigest()[:32]
    return user
