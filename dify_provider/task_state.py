"""State a task instance keeps across its tries (and a rescheduled sensor across its pokes).

Airflow 3.3+ has the task state store (``context["task_state_store"]``): key/value state scoped
to the task instance, deleted with its DAG run. Before 3.3, :class:`VariableTaskState` stands in
with one Airflow Variable per task instance and key: Variables are the one place every Airflow
since 2.x lets a task write and a later try of it read back (through the metadata DB on 2.x, the
Execution API on 3.x). XCom cannot: Airflow clears a task's XComs when a new try starts. Such
Variables are named ``dify_provider.state.<hash>``, described with the DAG, task and run they
belong to, and deleted by their owner when the task ends (:attr:`TaskState.forgets`).
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Prefix of the Variables that stand in for the task state store before Airflow 3.3.
VARIABLE_PREFIX = "dify_provider.state."


class TaskState(Protocol):
    #: True when nothing deletes the state for us: its owner deletes it when the task ends.
    forgets: bool

    def get(self, key: str) -> Any: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


class StoreTaskState:
    """Airflow's own task state store (3.3+): rows go with the DAG run."""

    forgets = False

    def __init__(self, store: Any) -> None:
        self._store = store

    def get(self, key: str) -> Any:
        return self._store.get(key)

    def set(self, key: str, value: Any) -> None:
        self._store.set(key, value)

    def delete(self, key: str) -> None:
        self._store.delete(key)


class VariableTaskState:
    """The task state store's stand-in before Airflow 3.3: one Variable per task instance and key."""

    forgets = True

    def __init__(self, ti: Any) -> None:
        self._ti = ti

    def name(self, key: str) -> str:
        ti = self._ti
        scope = f"{ti.dag_id}\x00{ti.run_id}\x00{ti.task_id}\x00{getattr(ti, 'map_index', -1)}\x00{key}"
        return VARIABLE_PREFIX + hashlib.sha256(scope.encode()).hexdigest()[:40]

    def get(self, key: str) -> Any:
        from airflow.providers.common.compat.sdk import Variable

        # Positional: the default's keyword is default_var on Airflow 2, default on 3.
        return Variable.get(self.name(key), None, True)

    def set(self, key: str, value: Any) -> None:
        from airflow.providers.common.compat.sdk import Variable

        ti = self._ti
        where = ti.task_id + (f"[{ti.map_index}]" if getattr(ti, "map_index", -1) not in (-1, None) else "")
        description = (f"airflow-provider-dify: {key} of {ti.dag_id}.{where} in DAG run {ti.run_id}, kept "
                       "across its tries; deleted when the task ends")
        Variable.set(self.name(key), value, description=description, serialize_json=True)

    def delete(self, key: str) -> None:
        from airflow.providers.common.compat.sdk import Variable

        with contextlib.suppress(Exception):  # already gone, or unreachable: nothing to keep either way
            Variable.delete(self.name(key))


def task_state(context: Context) -> TaskState | None:
    """This task instance's state, in whichever store this Airflow has (None outside a task)."""
    store = context.get("task_state_store")
    if store is not None:
        return StoreTaskState(store)
    ti = context.get("ti")
    return VariableTaskState(ti) if ti is not None else None
