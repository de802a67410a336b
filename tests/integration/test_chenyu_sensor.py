"""ChenyuRunSensor and ChenyuRunTrigger through real Airflow (dag.test) against the Chenyu emulator.

Emulated runs move one step per progress read, so these tests decide how far a run gets by how
it is polled (or hold it and finish it from a helper thread): nothing sleeps for time it could
control. Reschedule mode waits out dag.test()'s one-second reschedule steps, so its scenarios are
kept short.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from datetime import datetime
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import DAG
from airflow_harness import run_dag

from dify_provider.client.errors import DifyConfigError
from dify_provider.hooks.chenyu import ChenyuHook, SharedChenyuClients
from dify_provider.sensors.chenyu import ChenyuRunSensor
from dify_provider.testing.chenyu import ChenyuEmulator
from dify_provider.testing.chenyu_state import ChenyuFault, ChenyuScenario
from dify_provider.triggers.chenyu import ChenyuRunTrigger
from dify_provider.version_compat import TASK_STATE_STORE

pytestmark = pytest.mark.airflow
START = datetime(2024, 1, 1)
MODES = {
    "poke": {"mode": "poke"},
    "reschedule": {"mode": "reschedule"},
    "deferrable": {"deferrable": True},
}


def sensor_dag(dag_id: str, run_order_id: str, **kwargs: Any) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        ChenyuRunSensor(task_id="wait", run_order_id=run_order_id, poke_interval=0.05,
                        timeout=kwargs.pop("timeout", 60), **kwargs)
    return dag


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("status", "dag_state", "text"),
    [
        ("succeeded", "success", "succeeded in"),
        ("failed", "failed", "failed: boom in node 2"),
        ("canceled", "failed", "was canceled"),
    ],
)
def test_each_terminal_status(chenyu_emulator: ChenyuEmulator, dag_id: str, mode: str, status: str,
                              dag_state: str, text: str) -> None:
    run_order_id = chenyu_emulator.create_run(ChenyuScenario(
        queue_polls=1, steps=1, status=status, error="boom in node 2" if status == "failed" else None,  # type: ignore[arg-type]
        external_model_cost=0.002, outputs={"text": "a poem", "image": "https://cdn.example/x.png"}))
    result = run_dag(sensor_dag(dag_id, run_order_id, retries=2, **MODES[mode]))
    assert result.state == dag_state
    assert len(chenyu_emulator.progress_reads(run_order_id)) == 3  # queued, running, then the end
    assert text in result.log("wait")
    if dag_state == "success":
        detail = result.xcom("wait")
        assert detail["status"] == "succeeded"
        assert detail["outputs"] == {"text": "a poem", "image": "https://cdn.example/x.png"}
        assert detail["actual_execution_duration_sec"] >= 0
        assert detail["queued_sec"] >= 0
        assert detail["total_sec"] >= detail["queued_sec"]
        assert (detail["compute_cost"], detail["external_model_cost"]) == (0.0001, 0.002)  # 1 node
        assert detail["total_cost"] == pytest.approx(detail["compute_cost"] + detail["external_model_cost"])
        assert detail["run_order_id"] == run_order_id
        assert detail["terminal_at"].startswith("20")
    else:
        assert result.ti("wait").try_number == 1  # a finished run that failed is not re-waited


@pytest.mark.parametrize("mode", MODES)
def test_progress_is_logged_for_a_person_each_line_once(chenyu_emulator: ChenyuEmulator, dag_id: str,
                                                        mode: str) -> None:
    steps = 2 if mode == "reschedule" else 3
    run_order_id = chenyu_emulator.create_run(ChenyuScenario(queue_polls=2, steps=steps, wait_per_position=20))
    result = run_dag(sensor_dag(dag_id, run_order_id, **MODES[mode]))
    assert result.state == "success"
    log = result.log("wait")
    status_lines = ["is queued: position 1, about 20 s to wait", f"is running: 0% (0/{steps} nodes)",
                    f"is running: 50% (1/{steps} nodes)" if steps == 2 else "is running: 33% (1/3 nodes)"]
    if mode != "deferrable":  # deferred, the first read is the worker's; the trigger logs from the second
        status_lines.append("is queued: position 2, about 40 s to wait")
    run_log = ["INFO execution_queued: queued at position 2", "INFO execution_start: execution started",
               "INFO node_succeeded [n1]: node n1 finished", "INFO execution_success: execution succeeded"]
    for line in status_lines + run_log:
        assert log.count(line) == 1, (line, log)
    assert "succeeded in" in log
    assert log.index("position 1") < log.index("execution started") < log.index("execution succeeded")


def test_reschedule_keeps_the_memory_of_shown_lines_per_try(chenyu_emulator: ChenyuEmulator, dag_id: str) -> None:
    run_order_id = chenyu_emulator.create_run(ChenyuScenario(queue_polls=1, steps=2))
    result = run_dag(sensor_dag(dag_id, run_order_id, mode="reschedule"))
    assert result.state == "success"
    stored = result.state_store("wait", "dify_provider.wait_progress")
    if not TASK_STATE_STORE:  # kept in a Variable while rescheduled, deleted when the sensor ended
        assert stored is None
        return
    assert stored["try"] == 1
    assert stored["shown"]
    assert run_order_id not in json.dumps(stored)  # digests only


@pytest.mark.parametrize("mode", MODES)
def test_unknown_run_order_fails_clearly_without_retries(chenyu_emulator: ChenyuEmulator, dag_id: str,
                                                          mode: str) -> None:
    result = run_dag(sensor_dag(dag_id, "wfrun_00000000000000000000", retries=2, **MODES[mode]))
    assert result.state == "failed"
    assert "Chenyu run wfrun_00000000000000000000 not found: wrong run order id" in result.log("wait")
    assert result.ti("wait").try_number == 1  # it cannot get better


@pytest.mark.parametrize("mode", MODES)
def test_transient_faults_do_not_fail_the_task(chenyu_emulator: ChenyuEmulator, dag_id: str, mode: str) -> None:
    run_order_id = chenyu_emulator.create_run(ChenyuScenario(queue_polls=0, steps=1))
    # The client retries all but the malformed body, with the shared backoff; that one ends a
    # poll and the waiter tries again at the next (so backoff restarts: the test stays quick).
    chenyu_emulator.inject(
        ChenyuFault.http_error(502, body="<html><title>502 Bad Gateway</title></html>"),
        ChenyuFault.envelope_error(status_code=503, reason="Execution engine unavailable."),  # code != 0, HTTP 200
        ChenyuFault.malformed_json(),
        ChenyuFault.reset(),
        ChenyuFault.too_many_requests(retry_after=0),
    )
    result = run_dag(sensor_dag(dag_id, run_order_id, **MODES[mode]))
    assert result.state == "success"
    faulted = [r.fault for r in chenyu_emulator.requests if r.fault]
    assert faulted == ["http_error", "envelope_error", "malformed_json", "reset", "http_error"]
    if mode != "deferrable":  # deferred, the worker's first read met them; only the trigger logs waiting
        assert "transient error, still waiting" in result.log("wait")  # the parse error: the waiter retried


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_engine_error_that_is_not_transient_fails(chenyu_emulator: ChenyuEmulator, dag_id: str, mode: str) -> None:
    run_order_id = chenyu_emulator.create_run(ChenyuScenario(hold=True))
    chenyu_emulator.inject(ChenyuFault.envelope_error(code=42, msg="Workflow was deleted.", engine_code="WF_DELETED",
                                                      status_code=None))
    result = run_dag(sensor_dag(dag_id, run_order_id, **MODES[mode]))
    assert result.state == "failed"
    assert "Chenyu API error 200 WF_DELETED" in result.log("wait")


@pytest.mark.parametrize("mode", MODES)
def test_timeout_and_soft_fail(chenyu_emulator: ChenyuEmulator, dag_id: str, mode: str) -> None:
    run_order_id = chenyu_emulator.create_run(ChenyuScenario(queue_polls=0, hold=True))
    failed = run_dag(sensor_dag(dag_id, run_order_id, timeout=0.3, **MODES[mode]))
    assert failed.state == "failed"
    if mode == "deferrable":
        assert f"gave up waiting for Chenyu run {run_order_id}" in failed.log("wait")
    skipped = run_dag(sensor_dag(dag_id + "_soft", run_order_id, timeout=0.3, soft_fail=True, **MODES[mode]))
    assert skipped.states["wait"] == "skipped"


def test_invalid_run_order_id_fails_before_any_request(chenyu_emulator: ChenyuEmulator, dag_id: str) -> None:
    result = run_dag(sensor_dag(dag_id, "{{ 'not a run id' }}"))
    assert result.state == "failed"
    assert "run_order_id: 'not a run id' is not a run order id" in result.log("wait")
    assert chenyu_emulator.requests == []


def test_bad_key_fails_clearly_and_is_never_shown(chenyu_emulator: ChenyuEmulator, dag_id: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    run_order_id = chenyu_emulator.create_run()
    conn = chenyu_emulator.airflow_connection()
    conn["password"] = "cy-wrong-key-4242"
    monkeypatch.setenv("AIRFLOW_CONN_CHENYU_DEFAULT", json.dumps(conn))
    result = run_dag(sensor_dag(dag_id, run_order_id, retries=2))
    assert result.state == "failed"
    log = result.log("wait")
    assert "Chenyu refused the connection's API key" in log
    assert "cy-wrong-key-4242" not in log
    assert result.ti("wait").try_number == 1


def test_the_key_is_never_in_logs_xcom_or_the_serialised_trigger(chenyu_emulator: ChenyuEmulator,
                                                                 dag_id: str) -> None:
    key = chenyu_emulator.api_key
    run_order_id = chenyu_emulator.create_run(ChenyuScenario(queue_polls=1, steps=2))
    chenyu_emulator.inject(ChenyuFault.http_error(500), ChenyuFault.reset())  # errors are logged too
    result = run_dag(sensor_dag(dag_id, run_order_id, deferrable=True))
    assert result.state == "success"
    everything = "\n".join(str(line) for line in result.log_lines)
    assert "Chenyu log" in everything  # the trigger's lines were captured
    assert key not in everything
    assert key not in json.dumps(result.xcom("wait"))
    trigger = ChenyuRunTrigger(run_order_id, poll_interval=2, end_time=time.time() + 60)
    assert key not in repr(trigger.serialize()) + repr(trigger) + repr(ChenyuHook())


# --- the trigger on its own ------------------------------------------------------------------------


def rebuild(trigger: ChenyuRunTrigger) -> ChenyuRunTrigger:
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)  # type: ignore[no-any-return]


async def first_event(trigger: ChenyuRunTrigger) -> dict[str, Any]:
    try:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("trigger ended without an event")
    finally:
        await SharedChenyuClients.close_all()


def test_trigger_serialises_plain_values_and_rebuilds_mid_run(chenyu_emulator: ChenyuEmulator) -> None:
    run_order_id = chenyu_emulator.create_run(ChenyuScenario(queue_polls=0, hold=True))
    original = ChenyuRunTrigger(run_order_id, poll_interval=0.05, end_time=time.time() + 60)
    path, kwargs = original.serialize()
    assert path == "dify_provider.triggers.chenyu.ChenyuRunTrigger"
    assert kwargs == {"run_order_id": run_order_id, "chenyu_conn_id": "chenyu_default", "poll_interval": 0.05,
                      "max_poll_interval": None, "started_at": original.started_at, "end_time": original.end_time,
                      "execution_deadline": None, "stop_on_kill": False}
    json.dumps(kwargs)

    async def abandon_after_two_reads() -> None:  # a triggerer restart
        task = asyncio.ensure_future(first_event(original))
        await asyncio.to_thread(chenyu_emulator.wait_for_requests, run_order_id, 2, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await original.cleanup()

    asyncio.run(abandon_after_two_reads())
    restarted = rebuild(original)
    assert restarted.serialize() == (path, kwargs)  # deadlines and backoff continue, not restart
    chenyu_emulator.finish(run_order_id)
    event = asyncio.run(first_event(restarted))
    assert (event["verdict"], event["reason"], event["status"]) == ("success", "succeeded", "succeeded")
    assert event["detail"]["run_order_id"] == run_order_id
    assert "progress" not in event


def test_trigger_deadline_gives_a_timeout_event_in_chenyu_words(chenyu_emulator: ChenyuEmulator) -> None:
    run_order_id = chenyu_emulator.create_run(ChenyuScenario(queue_polls=0, hold=True))
    event = asyncio.run(first_event(ChenyuRunTrigger(run_order_id, poll_interval=30, end_time=time.time() + 0.2)))
    assert event["reason"] == "timeout"
    assert event["message"].startswith(f"gave up waiting for Chenyu run {run_order_id} after")
    assert "last status: running" in event["message"]


def test_trigger_refuses_what_chenyu_cannot_do() -> None:
    with pytest.raises(DifyConfigError, match="stop_on_kill: ChenyuRunTrigger has no way to stop a run"):
        ChenyuRunTrigger("wfrun_1", poll_interval=1, stop_on_kill=True)
    with pytest.raises(DifyConfigError, match="run_order_id"):
        ChenyuRunTrigger("", poll_interval=1)


# --- the hook ---------------------------------------------------------------------------------------


def test_hook_test_connection(chenyu_emulator: ChenyuEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = ChenyuHook().test_connection()
    assert ok, message
    assert message == f"Connected to Chenyu at {chenyu_emulator.base_url}: the API key was accepted"
    conn = chenyu_emulator.airflow_connection()
    conn["password"] = "cy-wrong-key-4242"
    monkeypatch.setenv("AIRFLOW_CONN_CHENYU_DEFAULT", json.dumps(conn))
    ok, message = ChenyuHook().test_connection()
    assert not ok
    assert "check the Chenyu API key" in message
    assert "cy-wrong-key-4242" not in message


def test_hook_reads_the_connection_and_names_bad_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CHENYU_DEFAULT", json.dumps({"conn_type": "chenyu", "password": "k"}))
    config = ChenyuHook().config
    assert (config.base_url, config.timeout, config.verify) == ("https://www.chenyu.cn", 30.0, True)
    monkeypatch.setenv("AIRFLOW_CONN_CHENYU_DEFAULT", json.dumps(
        {"conn_type": "chenyu", "password": "k", "extra": {"timeout": "soon"}}))
    with pytest.raises(DifyConfigError, match=r"connection 'chenyu_default'.extra.timeout: must be a number"):
        _ = ChenyuHook().config
    monkeypatch.setenv("AIRFLOW_CONN_CHENYU_DEFAULT", json.dumps({"conn_type": "chenyu"}))
    with pytest.raises(DifyConfigError, match=r"connection 'chenyu_default'.password: is empty"):
        _ = ChenyuHook().config
