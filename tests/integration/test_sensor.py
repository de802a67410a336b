"""WorkflowRunSensor through real Airflow (dag.test) against the emulator over loopback."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import DAG
from airflow_harness import run_dag
from dify_helpers import after_polls, detail_polls, start_run

from dify_provider.sensors.workflow_run import WorkflowRunSensor
from dify_provider.testing import DifyEmulator, Fault, Scenario

pytestmark = pytest.mark.airflow
START = datetime(2024, 1, 1)
MODES = {
    "poke": {"mode": "poke"},
    "reschedule": {"mode": "reschedule"},
    "deferrable": {"deferrable": True},
}


def sensor_dag(dag_id: str, run_id: str, **kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        WorkflowRunSensor(task_id="wait", workflow_run_id=run_id, poke_interval=0.05,
                          timeout=kwargs.pop("timeout", 60), **kwargs)
    return dag


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("status", "dag_state", "text"),
    [
        ("succeeded", "success", "succeeded"),
        ("partial-succeeded", "success", "partially succeeded"),
        ("failed", "failed", "boom in node 2"),
        ("stopped", "failed", "was stopped"),
    ],
)
def test_each_terminal_status(dify_emulator: DifyEmulator, dag_id: str, mode: str, status: str,
                              dag_state: str, text: str) -> None:
    run_id = start_run(dify_emulator, Scenario(hold=True))
    error = "boom in node 2" if status == "failed" else None
    with after_polls(dify_emulator, run_id, 2, lambda: dify_emulator.finish(run_id, status=status, error=error)):
        result = run_dag(sensor_dag(dag_id, run_id, **MODES[mode]))
    assert result.state == dag_state
    assert detail_polls(dify_emulator, run_id) >= 2  # it really waited
    assert text in result.log("wait")
    key = dify_emulator.api_key("echo")
    assert key not in result.log("wait")
    if dag_state == "success":
        detail = result.xcom("wait")
        assert key not in json.dumps(detail)
        assert detail["status"] == status
        assert detail["outputs"]["text"] == "HI"
        assert detail["total_tokens"] > 0
        assert detail["finished_at"] is not None
    else:
        assert result.ti("wait").try_number == 1  # a finished run that failed is not re-waited


@pytest.mark.parametrize("mode", MODES)
def test_paused_then_resumed_logs_once(dify_emulator: DifyEmulator, dag_id: str, mode: str) -> None:
    run_id = start_run(dify_emulator, Scenario(status="paused"))
    dify_emulator.wait_for(run_id, status="paused")
    with after_polls(dify_emulator, run_id, 3, lambda: dify_emulator.resume(run_id)):
        result = run_dag(sensor_dag(dag_id, run_id, **MODES[mode]))
    assert result.state == "success"
    assert result.xcom("wait")["status"] == "succeeded"
    log = result.log("wait")
    if mode != "reschedule":  # a rescheduled sensor is a new process at every poke
        assert log.count("paused waiting for human input") == 1
    assert "/logs?workflow_run_id=" in log  # says where to act


def test_fail_on_paused(dify_emulator: DifyEmulator, dag_id: str) -> None:
    run_id = start_run(dify_emulator, Scenario(status="paused"))
    dify_emulator.wait_for(run_id, status="paused")
    result = run_dag(sensor_dag(dag_id, run_id, fail_on_paused=True))
    assert result.state == "failed"
    assert "paused waiting for human input" in result.log("wait")


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_fail_on_partial(dify_emulator: DifyEmulator, dag_id: str, mode: str) -> None:
    run_id = start_run(dify_emulator, Scenario(status="partial-succeeded"))
    dify_emulator.wait_for(run_id, status="partial-succeeded")
    result = run_dag(sensor_dag(dag_id, run_id, fail_on_partial=True, **MODES[mode]))
    assert result.state == "failed"


@pytest.mark.parametrize("mode", MODES)
def test_unknown_run_fails_clearly(dify_emulator: DifyEmulator, dag_id: str, mode: str) -> None:
    missing = "0b7a1c9e-0000-4000-8000-000000000000"
    result = run_dag(sensor_dag(dag_id, missing, retries=2, **MODES[mode]))
    assert result.state == "failed"
    assert "not found: wrong id, another app's key, or older than the log retention" in result.log("wait")
    assert result.ti("wait").try_number == 1  # no retries: it cannot get better


@pytest.mark.parametrize("mode", MODES)
def test_bad_key_fails_clearly(dify_emulator: DifyEmulator, dag_id: str, monkeypatch: pytest.MonkeyPatch,
                               mode: str) -> None:
    run_id = start_run(dify_emulator)
    conn = json.loads(dify_emulator.airflow_connection_json())
    conn["password"] = "app-wrong-key-123"
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_DEFAULT", json.dumps(conn))
    result = run_dag(sensor_dag(dag_id, run_id, retries=1, **MODES[mode]))
    assert result.state == "failed"
    log = result.log("wait")
    assert "refused the connection's API key" in log
    assert "app-wrong-key-123" not in log
    assert result.ti("wait").try_number == 1


def test_invalid_run_id_fails_before_any_request(dify_emulator: DifyEmulator, dag_id: str) -> None:
    result = run_dag(sensor_dag(dag_id, "{{ 'not-a-uuid' }}"))
    assert result.state == "failed"
    assert "workflow_run_id: 'not-a-uuid' is not a Dify id" in result.log("wait")
    assert dify_emulator.requests_to("GET", "/workflows/run/not-a-uuid") == []


@pytest.mark.parametrize("mode", MODES)
def test_transient_faults_do_not_fail_the_task(dify_emulator: DifyEmulator, dag_id: str, mode: str) -> None:
    run_id = start_run(dify_emulator)
    dify_emulator.wait_for(run_id, status="succeeded")
    endpoint = "GET /workflows/run/{id}"
    dify_emulator.inject(
        Fault.http_error(503, endpoint=endpoint),
        Fault.too_many_requests(endpoint=endpoint),
        Fault.reset(endpoint=endpoint),
    )
    result = run_dag(sensor_dag(dag_id, run_id, **MODES[mode]))
    assert result.state == "success"
    assert detail_polls(dify_emulator, run_id) >= 4


@pytest.mark.parametrize("mode", MODES)
def test_timeout_and_soft_fail(dify_emulator: DifyEmulator, dag_id: str, mode: str) -> None:
    run_id = start_run(dify_emulator, Scenario(hold=True))
    failed = run_dag(sensor_dag(dag_id, run_id, timeout=0.3, **MODES[mode]))
    assert failed.state == "failed"
    skipped = run_dag(sensor_dag(dag_id + "_soft", run_id, timeout=0.3, soft_fail=True, **MODES[mode]))
    assert skipped.states["wait"] == "skipped"


def test_backoff_polls_less(dify_emulator: DifyEmulator, dag_id: str) -> None:
    """max_poke_interval keeps the base interval during the grace period: a short run costs the same."""
    run_id = start_run(dify_emulator, Scenario(hold=True))
    with after_polls(dify_emulator, run_id, 3, lambda: dify_emulator.finish(run_id)):
        result = run_dag(sensor_dag(dag_id, run_id, max_poke_interval=30))
    assert result.state == "success"


def test_deferred_wait_under_dag_test_closes_its_client(dify_emulator: DifyEmulator, dag_id: str) -> None:
    """dag.test() runs each deferral in an asyncio.run of its own; the shared client must be closed
    when that loop ends, or aiohttp logs "Unclosed client session" errors to the DAG author (and the
    client, which references its loop, keeps the dead loop alive)."""
    from dify_provider.hooks.dify import SharedAsyncClients

    run_id = start_run(dify_emulator, Scenario(hold=True))
    with after_polls(dify_emulator, run_id, 2, lambda: dify_emulator.finish(run_id)):
        result = run_dag(sensor_dag(dag_id, run_id, deferrable=True))
    assert result.state == "success"
    assert "DEFERRED" in result.log("wait")  # the wait did run in a trigger
    left = [entries for loop, entries in SharedAsyncClients._by_loop.items() if loop.is_closed()]
    assert left == []
