"""Prove that ``airflow_harness.run_dag`` drives real Airflow: XCom, deferral, reschedule, retries,
connections, logs, the task state store and the watchdog. Each test can fail: it asserts on what
Airflow recorded, not on what the test itself did.
"""

# Airflow's BaseTrigger.__init__ and TriggerEvent are untyped.
# mypy: disable-error-code="no-untyped-call"
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.connection import get_async_connection
from airflow.providers.common.compat.sdk import (
    DAG,
    BaseHook,
    BaseOperator,
    BaseSensorOperator,
    get_current_context,
    task,
)
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent
from airflow_harness import DagRunTimeoutError, connection_env, run_dag

from dify_provider.task_state import task_state
from dify_provider.version_compat import AIRFLOW_V_3_0_PLUS

pytestmark = pytest.mark.airflow

START = datetime(2024, 1, 1)
stdlib_log = logging.getLogger(__name__)


class EchoTrigger(BaseTrigger):
    """Fires one event carrying ``value`` and, if given, the host of connection ``conn_id``."""

    def __init__(self, value: Any, conn_id: str | None = None) -> None:
        super().__init__()
        self.value = value
        self.conn_id = conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {
            "value": self.value,
            "conn_id": self.conn_id,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self.log.info("trigger running with %s", self.value)
        payload: dict[str, Any] = {"value": self.value}
        if self.conn_id:
            conn = await get_async_connection(self.conn_id)
            payload["host"] = conn.host
            payload["extra"] = conn.extra_dejson
        await asyncio.sleep(0)
        yield TriggerEvent(payload)


TRIGGER_CALLS: list[str] = []


class NeverFiresTrigger(BaseTrigger):
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(3600)
        yield TriggerEvent({})

    async def cleanup(self) -> None:
        TRIGGER_CALLS.append("cleanup")

    async def on_kill(self) -> None:
        TRIGGER_CALLS.append("on_kill")


class EndTaskTrigger(BaseTrigger):
    """Ends the task from the trigger, without resuming it on a worker."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TaskSuccessEvent(xcoms={"return_value": {"status": "succeeded"}, "run_id": "r-1"})


class FailsOnFirstTryTrigger(BaseTrigger):
    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        assert self.task_instance is not None
        if self.task_instance.try_number == 1:
            raise RuntimeError("poll crashed")
        yield TriggerEvent({"ok": True})


class DeferToOperator(BaseOperator):
    """Defers to ``trigger``; records whether it was resumed."""

    def __init__(self, *, trigger: BaseTrigger, defer_timeout: timedelta | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.trigger = trigger
        self.defer_timeout = defer_timeout

    def execute(self, context: Any) -> None:
        self.defer(trigger=self.trigger, method_name="execute_complete", timeout=self.defer_timeout)

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        self.log.info("resumed with %s", event)
        return event


class DeferOnceOperator(BaseOperator):
    def __init__(self, *, value: Any, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value = value
        self.conn_id = conn_id

    def execute(self, context: Any) -> None:
        self.log.info("deferring with %s", self.value)
        task_state(context).set("remote_id", "job-9")
        self.defer(
            trigger=EchoTrigger(self.value, self.conn_id),
            method_name="execute_complete",
            kwargs={"started_try": context["ti"].try_number},
        )

    def execute_complete(self, context: Any, event: dict[str, Any], started_try: int) -> dict[str, Any]:
        self.log.info("resumed with %s", event)
        return {
            **event,
            "started_try": started_try,
            "resumed_try": context["ti"].try_number,
            "stored": task_state(context).get("remote_id"),
        }


POKES: Counter[str] = Counter()


class CountingSensor(BaseSensorOperator):
    """Done on the third poke. Pokes are counted per run id (module global: runs are in-process)."""

    def poke(self, context: Any) -> bool:
        POKES[context["run_id"]] += 1
        self.log.info("poke %d", POKES[context["run_id"]])
        return POKES[context["run_id"]] >= 3


def test_xcom_passes_downstream_and_logs_are_captured(dag_id: str) -> None:
    with DAG(dag_id, schedule=None, start_date=START) as dag:

        @task
        def push() -> int:
            return 41

        @task
        def pull(value: int) -> int:
            stdlib_log.warning("pulled %d via stdlib logging", value)
            return value + 1

        pull(push())  # type: ignore[arg-type]  # TaskFlow passes an XComArg

    result = run_dag(dag)

    assert result.state == "success"
    assert result.states == {"push": "success", "pull": "success"}
    assert result.xcom("push") == 41
    assert result.xcom("pull") == 42
    assert result.ti("pull").try_number == 1
    assert "pulled 41 via stdlib logging" in result.log("pull")
    assert "Done. Returned value was: 42" in result.log("pull")
    assert "pulled" not in result.log("push")
    with pytest.raises(KeyError):
        result.xcom("push", key="nope")
    assert result.xcom("push", key="nope", default=None) is None


def test_dag_run_conf_reaches_tasks(dag_id: str) -> None:
    with DAG(dag_id, schedule=None, start_date=START) as dag:

        @task
        def read_conf(dag_run: Any = None) -> Any:
            return dag_run.conf["inputs"]

        read_conf()

    result = run_dag(dag, conf={"inputs": {"q": "hello"}})

    assert result.xcom("read_conf") == {"q": "hello"}


def test_failure_is_reported_not_raised(dag_id: str) -> None:
    with DAG(dag_id, schedule=None, start_date=START) as dag:

        @task
        def boom() -> None:
            raise ValueError("kaput")

        @task
        def after() -> None:
            pass

        boom() >> after()

    result = run_dag(dag)

    assert result.state == "failed"
    assert result.states == {"boom": "failed", "after": "upstream_failed"}
    assert "ValueError: kaput" in result.log("boom")


def test_deferrable_task_resumes_after_inline_trigger(dag_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(*connection_env("harness_conn", conn_type="http", host="http://127.0.0.1:1", extra={"k": "v"}))
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        DeferOnceOperator(task_id="wait", value={"n": 7}, conn_id="harness_conn")

    result = run_dag(dag)

    assert result.state == "success"
    assert result.xcom("wait") == {
        "value": {"n": 7},
        "host": "http://127.0.0.1:1",
        "extra": {"k": "v"},
        "started_try": 1,  # defer(kwargs=...) survive the trigger event (dag.test() 3.3.2 drops them)
        "resumed_try": 1,
        # the task state written before deferring is readable on resume (store or its stand-in)
        "stored": "job-9",
    }
    log = result.log("wait")
    # execute, the trigger and execute_complete all log under the same task instance and try
    assert log.index("deferring with") < log.index("trigger running with") < log.index("resumed with")


def test_connection_env_var_reaches_a_task(dag_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(*connection_env("harness_conn", conn_type="http", host="h.example", password="s3cret", port=8))
    with DAG(dag_id, schedule=None, start_date=START) as dag:

        @task
        def read_conn() -> dict[str, Any]:
            conn = BaseHook.get_connection("harness_conn")
            return {"host": conn.host, "password": conn.password, "port": conn.port}

        read_conn()

    result = run_dag(dag)

    assert result.xcom("read_conn") == {"host": "h.example", "password": "s3cret", "port": 8}


def test_reschedule_sensor_completes_within_one_run(dag_id: str) -> None:
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        CountingSensor(task_id="sense", mode="reschedule", poke_interval=0, timeout=60)

    result = run_dag(dag)

    assert result.state == "success"
    assert POKES[result.run_id] == 3
    # rescheduling does not consume tries
    assert result.ti("sense").try_number == 1
    assert result.log("sense").count("Rescheduling task, marking task as UP_FOR_RESCHEDULE") == 2


def test_retry_reruns_the_task_within_one_run(dag_id: str) -> None:
    with DAG(dag_id, schedule=None, start_date=START) as dag:

        @task(retries=1, retry_delay=timedelta(0))
        def flaky(ti: Any = None) -> int:
            if ti.try_number == 1:
                raise RuntimeError("first try fails")
            return int(ti.try_number)

        flaky()

    result = run_dag(dag)

    assert result.state == "success"
    flaky_ti = result.ti("flaky")
    assert flaky_ti.try_number == 2
    assert [(t.try_number, t.state) for t in flaky_ti.tries] == [(1, "failed"), (2, "success")]
    assert result.xcom("flaky") == 2
    assert "first try fails" in result.log("flaky", try_number=1)
    assert "first try fails" not in result.log("flaky", try_number=2)


def test_task_state_store_survives_a_retry(dag_id: str) -> None:
    """The task state store (3.3+), or the provider's Variable stand-in before (task_state)."""
    with DAG(dag_id, schedule=None, start_date=START) as dag:

        @task(retries=1, retry_delay=timedelta(0))
        def durable() -> Any:
            context = get_current_context()
            state = task_state(context)
            if context["ti"].try_number == 1:
                state.set("job_id", "run-123")
                raise RuntimeError("worker lost after submitting")
            return state.get("job_id")

        durable()

    result = run_dag(dag)

    assert result.state == "success"
    assert result.ti("durable").try_number == 2
    assert result.xcom("durable") == "run-123"
    assert result.state_store("durable", "job_id") == "run-123"


def test_the_stand_in_variable_survives_a_retry_and_is_deleted_from_a_task(dag_id: str) -> None:
    """Where there is no task state store, task state lives in a Variable: written by one try,
    read by the next, deleted from a task (the ORM model on Airflow 2, the Execution API on 3)."""
    from dify_provider.task_state import VariableTaskState

    with DAG(dag_id, schedule=None, start_date=START) as dag:

        @task(retries=1, retry_delay=timedelta(0))
        def durable(ti: Any = None) -> Any:
            store = VariableTaskState(ti)
            if ti.try_number == 1:
                store.set("record", {"workflow_run_id": "run-123"})
                raise RuntimeError("worker lost after starting the run")
            found = store.get("record")
            store.delete("record")
            return {"found": found, "after_delete": store.get("record")}

        durable()

    result = run_dag(dag)

    assert result.state == "success"
    assert result.ti("durable").try_number == 2
    assert result.xcom("durable") == {"found": {"workflow_run_id": "run-123"}, "after_delete": None}


def test_watchdog_interrupts_a_run_that_never_finishes(dag_id: str) -> None:
    with DAG(dag_id, schedule=None, start_date=START) as dag:

        class WaitForever(BaseOperator):
            def execute(self, context: Any) -> None:
                self.defer(trigger=NeverFiresTrigger(), method_name="execute")

        WaitForever(task_id="stuck")

    with pytest.raises(DagRunTimeoutError, match=r"did not finish within 1\.0 s") as excinfo:
        run_dag(dag, timeout=1.0)

    assert excinfo.value.result is not None
    assert excinfo.value.result.states["stuck"] != "success"


def test_trigger_can_end_the_task_without_resuming_it(dag_id: str) -> None:
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        DeferToOperator(task_id="wait", trigger=EndTaskTrigger())

    result = run_dag(dag)

    assert result.states == {"wait": "success"}
    assert result.xcom("wait") == {"status": "succeeded"}
    assert result.xcom("wait", key="run_id") == "r-1"
    assert "resumed with" not in result.log("wait")


def test_defer_timeout_fails_the_task_like_the_scheduler(dag_id: str) -> None:
    TRIGGER_CALLS.clear()
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        DeferToOperator(task_id="wait", trigger=NeverFiresTrigger(), defer_timeout=timedelta(seconds=0.2))

    result = run_dag(dag)

    assert result.states == {"wait": "failed"}
    # Airflow 2's scheduler fails a timed-out deferral with TaskDeferralError and this message
    timed_out = "TaskDeferralTimeout" if AIRFLOW_V_3_0_PLUS else "TaskDeferralError: Trigger/execution timeout"
    assert timed_out in result.log("wait")
    assert "resumed with" not in result.log("wait")
    # a timed-out trigger is cleaned up, not killed
    assert TRIGGER_CALLS == ["cleanup"]


def test_trigger_error_fails_the_try_and_is_retried(dag_id: str) -> None:
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        DeferToOperator(task_id="wait", trigger=FailsOnFirstTryTrigger(), retries=1, retry_delay=timedelta(0))

    result = run_dag(dag)

    assert result.state == "success"
    assert [(t.try_number, t.state) for t in result.ti("wait").tries] == [(1, "failed"), (2, "success")]
    assert "poll crashed" in result.log("wait", try_number=1)
    assert result.xcom("wait") == {"ok": True}


def test_metadata_db_connection_reaches_task_and_trigger(dag_id: str) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    conn_id = f"db_{dag_id}"[:200]
    with create_session() as session:
        session.add(Connection(conn_id=conn_id, conn_type="http", host="db.example", extra='{"k": 1}'))
    try:
        with DAG(dag_id, schedule=None, start_date=START) as dag:
            DeferOnceOperator(task_id="wait", value=1, conn_id=conn_id)

        result = run_dag(dag)
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()

    assert result.xcom("wait")["host"] == "db.example"
    assert result.xcom("wait")["extra"] == {"k": 1}
