"""What a task instance remembers of its Dify run across tries.

Dify has no idempotency key, so the only way a retry can avoid paying for a second run is to
know the first one. The run id is written the moment it is known, to a place every try of the
task instance shares and XCom is not (Airflow clears a task's XComs when a new try starts):

* Airflow 3.3+: the task state store (``context["task_state_store"]``), scoped to the task
  instance and deleted with its DAG run;
* before: one Airflow Variable per task instance (``dify_provider.run.<hash>``, described with
  the DAG, task and run it belongs to), deleted when the task ends: on success, or when it fails
  for the last time. A task killed with retries left keeps it for the next try.

Later facts go into the same record: that this task stopped the run (a stopped run's record
still says ``running`` on a real Dify 1.13.2, so without this a retry would wait on a dead run),
and that the run's result was delivered (so a task cleared after success runs again instead of
returning the old answer).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: task_state_store key; survives retries of the same task instance (Airflow 3.3+).
STATE_KEY = "dify_workflow_run"
#: Prefix of the Variables that stand in for the state store before Airflow 3.3.
VARIABLE_PREFIX = "dify_provider.run."


class _Store(Protocol):
    def get(self, key: str) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...


class VariableStore:
    """The task state store's stand-in before Airflow 3.3: one Airflow Variable per task instance.

    Variables are the one place every Airflow since 2.x lets a task write and a later try of it
    read back (through the metadata DB on 2.x, the Execution API on 3.x).
    """

    #: The record is deleted, not marked, when the task ends: nothing is left behind.
    forgets = True

    def __init__(self, ti: Any, purpose: str | None = None, what: str = "the Dify run",
                 kept: str = "kept for its retries") -> None:
        """``purpose``: another record of the same task instance (a sensor's progress memory);
        ``what`` and ``kept`` describe it in the Variable's description."""
        scope = f"{ti.dag_id}\x00{ti.run_id}\x00{ti.task_id}\x00{getattr(ti, 'map_index', -1)}"
        if purpose:
            scope += f"\x00{purpose}"
        self.name = VARIABLE_PREFIX + hashlib.sha256(scope.encode()).hexdigest()[:40]
        where = f"{ti.task_id}" + (f"[{ti.map_index}]" if getattr(ti, "map_index", -1) not in (-1, None) else "")
        self._description = (f"airflow-provider-dify: {what} of {ti.dag_id}.{where} in DAG run {ti.run_id}, "
                             f"{kept}; deleted when the task ends")

    def get(self, key: str) -> Any:
        from airflow.providers.common.compat.sdk import Variable

        # Positional: the default's keyword is default_var on Airflow 2, default on 3.
        return Variable.get(self.name, None, True)

    def set(self, key: str, value: Any) -> None:
        from airflow.providers.common.compat.sdk import Variable

        Variable.set(self.name, value, description=self._description, serialize_json=True)

    def delete(self) -> None:
        from airflow.providers.common.compat.sdk import Variable

        with contextlib.suppress(Exception):  # already gone, or the store is unreachable: nothing to keep
            Variable.delete(self.name)


class RunMemory:
    """The record of this task instance's run, in whichever store this Airflow has."""

    def __init__(self, context: Context) -> None:
        self._try = try_number(context)
        self._store: _Store | None = context.get("task_state_store")
        self._variable: VariableStore | None = None
        if self._store is None and context.get("ti") is not None:
            self._variable = VariableStore(context["ti"])
            self._store = self._variable

    def get(self) -> dict[str, Any]:
        if self._store is None:
            return {}
        value = self._store.get(STATE_KEY)
        return value if isinstance(value, dict) else {}

    def starting(self, user: str, at: float) -> None:
        """Written before the start request: if its answer is lost, a retry knows a run may
        exist, for whom and since when, and can look for it."""
        self._set({"starting_at": at, "user": user, "try_number": self._try})

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
        writer = threading.Thread(target=self.mark, kwargs=facts, name="dify-state-store", daemon=True)
        writer.start()
        writer.join(timeout=2.0)

    def delivered(self) -> None:
        """The run's result reached the task: a later try (a clear) must start a new run."""
        if self._variable is not None:
            self._variable.delete()
        else:
            self.mark(delivered=True)

    def killed(self, why: str, *, final: bool) -> None:
        """``on_kill`` outside the try's own code (Airflow 2 resuming a deferral past its
        execution_timeout): the last try deletes a Variable record, others mark it stopped."""
        if final and self._variable is not None:
            self._variable.delete()
        else:
            self.mark_soon(stopped=why)

    @contextlib.contextmanager
    def kept_for_retries(self, context: Context) -> Iterator[None]:
        """Around a try: if it fails for the last time, a Variable record is deleted (the state
        store's rows go with the DAG run). A deferral is not an end."""
        try:
            yield
        except BaseException as exc:
            if self._variable is not None and _final(exc, context):
                self._variable.delete()
            raise

    def _set(self, value: dict[str, Any]) -> None:
        if self._store is not None:
            self._store.set(STATE_KEY, value)


def _final(exc: BaseException, context: Context) -> bool:
    from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout, TaskDeferred

    if isinstance(exc, TaskDeferred):
        return False
    if isinstance(exc, AirflowFailException | AirflowSensorTimeout):
        return True
    ti = context.get("ti")
    max_tries = getattr(ti, "max_tries", None)
    return max_tries is not None and try_number(context) > int(max_tries)


def try_number(context: Context) -> int:
    return int(getattr(context.get("ti"), "try_number", 1) or 1)


def default_user(context: Context) -> str:
    """``airflow:<dag>:<task>:<run>[:<map index>]``, hashed when longer than Dify's 255 chars.

    Stable for every try of one task instance, so Dify's logs show which task ran what, and a
    retry with no record can find its run by it.
    """
    ti = context["ti"]
    parts = ["airflow", ti.dag_id, ti.task_id, ti.run_id]
    if getattr(ti, "map_index", -1) not in (-1, None):
        parts.append(str(ti.map_index))
    user = ":".join(parts)
    if len(user) > 255:
        user = user[:200] + ":" + hashlib.sha256(user.encode()).hexdigest()[:32]
    return user
