"""What differs by Airflow version, tested on every version the suite runs on (``make test``,
``make test-min``, ``make test-compat``); the degraded paths are also forced on the newest one."""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

import pytest
from airflow_harness import run_dag
from dify_helpers import finish_first_run_after_polls
from test_operator import CrashAfterStart, op_dag, starts

from dify_provider import task_state as task_state_module
from dify_provider.operators import run_memory
from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.testing import DifyEmulator, Scenario
from dify_provider.version_compat import TASK_STATE_STORE, TRIGGER_ON_KILL, DifyFeatureUnavailableWarning

pytestmark = pytest.mark.airflow


def _operator_warnings(**kwargs: Any) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DifyRunWorkflowOperator(task_id="run", inputs={"text": "x"}, **kwargs)
    return [w for w in caught if issubclass(w.category, DifyFeatureUnavailableWarning)]


def test_a_deferred_kill_that_cannot_stop_the_run_is_said_at_parse() -> None:
    found = _operator_warnings(deferrable=True)
    if TRIGGER_ON_KILL:
        assert found == []
    else:
        (warning,) = found
        assert "run: stopping the Dify run when the deferred task is killed" in str(warning.message)
        assert "needs Airflow 3.3+" in str(warning.message)
        assert warning.filename == __file__  # points at the DAG file's line, not at the provider
    assert _operator_warnings(deferrable=False) == []


def test_the_warning_also_shows_where_the_flag_is_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    from dify_provider.operators import base

    monkeypatch.setattr(base, "TRIGGER_ON_KILL", False)
    (warning,) = _operator_warnings(deferrable=True)
    assert "timeout and execution_timeout still stop it" in str(warning.message)


@pytest.fixture
def no_state_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow before 3.3: the context has no task state store (forced on newer ones)."""
    real = task_state_module.task_state

    def without_store(context: Any) -> Any:
        return real({k: v for k, v in context.items() if k != "task_state_store"})

    monkeypatch.setattr(run_memory, "task_state", without_store)


@pytest.mark.parametrize("user", [None, "shared-etl-user"], ids=["default-user", "own-user"])
def test_retry_reattaches_without_a_state_store_whatever_the_user(dify_emulator: DifyEmulator, dag_id: str,
                                                                  no_state_store: None, user: str | None) -> None:
    # Dify's logs could only find the run by the default end-user id; the Variable needs none.
    dify_emulator.script("echo", Scenario(hold=True))
    with finish_first_run_after_polls(dify_emulator, 2):
        result = run_dag(op_dag(dag_id, cls=CrashAfterStart, retries=1, retry_delay=timedelta(0), user=user))
    assert result.state == "success"
    assert result.ti("run").try_number == 2
    assert starts(dify_emulator) == 1
    assert "re-attaching to Dify workflow run" in result.log("run", try_number=2)
    assert "found in Dify's logs" not in result.log("run", try_number=2)
    if not TASK_STATE_STORE:  # the Variable stand-in is gone once the task succeeded
        assert result.state_store("run", run_memory.STATE_KEY) is None


def test_the_stand_in_variable_is_deleted_when_the_task_fails_for_good(dify_emulator: DifyEmulator, dag_id: str,
                                                                       no_state_store: None) -> None:
    from airflow.models.variable import Variable

    dify_emulator.script("echo", Scenario(status="failed", error="bad luck"), Scenario(status="failed"))
    result = run_dag(op_dag(dag_id, retries=1, retry_delay=timedelta(0)))
    assert result.state == "failed"
    assert result.ti("run").try_number == 2
    assert starts(dify_emulator) == 2  # the first run failed: the retry asks for a new one
    assert not [v for v in _variables(Variable) if dag_id in (v.description or "")]


def test_a_stopped_run_keeps_its_record_for_a_later_clear(dify_emulator: DifyEmulator, dag_id: str,
                                                          no_state_store: None) -> None:
    dify_emulator.script("echo", Scenario(hold=True))
    result = run_dag(op_dag(dag_id, timeout=2.0))
    assert result.state == "failed"
    record = result.state_store("run", run_memory.STATE_KEY) if not TASK_STATE_STORE else _record_variable(result)
    assert "(timeout)" in record["stopped"]


def _variables(model: Any) -> list[Any]:
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(model).all()
        session.expunge_all()
        return rows


def _record_variable(result: Any) -> Any:
    from airflow.models.variable import Variable

    from dify_provider.task_state import VariableTaskState

    ti = type("TI", (), {"dag_id": result.dag_id, "run_id": result.run_id, "task_id": "run", "map_index": -1})
    return Variable.get(VariableTaskState(ti).name(run_memory.STATE_KEY), None, True)
