"""RunMemory reads the record once per execution and sends only writes that change it: each call
through the task state store is a round trip to Airflow's API server (`make e2e-distributed`
counted 16 reads and 6 writes per deferred task before)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from dify_provider.operators.run_memory import STATE_KEY, RunMemory


class CountingStore:
    def __init__(self, value: Any = None) -> None:
        self.data = {} if value is None else {STATE_KEY: value}
        self.gets = self.sets = 0

    def get(self, key: str) -> Any:
        self.gets += 1
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.sets += 1
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def memory(store: CountingStore) -> RunMemory:
    ti = SimpleNamespace(try_number=2, dag_id="d", task_id="t", run_id="r", map_index=-1)
    return RunMemory({"ti": ti, "task_state_store": store})  # type: ignore[arg-type]


def test_one_read_per_execution_and_no_write_that_changes_nothing() -> None:
    store = CountingStore({"workflow_run_id": "run-1", "user": "u"})
    m = memory(store)
    for _ in range(5):
        assert m.get()["workflow_run_id"] == "run-1"
    m.mark(stopped="timeout")
    m.mark(stopped="timeout")  # the same fact again: nothing to send
    assert (store.gets, store.sets) == (1, 1)
    assert store.data[STATE_KEY] == {"workflow_run_id": "run-1", "user": "u", "stopped": "timeout"}
    assert m.get()["stopped"] == "timeout"  # what was written is what is read back


def test_a_caller_cannot_change_the_record_behind_the_store() -> None:
    store = CountingStore({"workflow_run_id": "run-1"})
    m = memory(store)
    m.get()["workflow_run_id"] = "changed"
    assert m.get()["workflow_run_id"] == "run-1"


def test_mark_soon_reads_afresh() -> None:
    # on_kill may hold an object built before execute_complete wrote to the record (Airflow 2)
    store = CountingStore({"workflow_run_id": "run-1"})
    m = memory(store)
    m.get()
    store.data[STATE_KEY] = {"workflow_run_id": "run-1", "spend": {"run-1": {"total_tokens": 5}}}
    m.mark_soon(stopped="killed")
    assert store.data[STATE_KEY] == {"workflow_run_id": "run-1", "spend": {"run-1": {"total_tokens": 5}},
                                     "stopped": "killed"}
