"""What a real Dify 1.13.2 showed, through real Airflow against the emulator (whose defaults are
that server's): the version comes from the ``X-Version`` header, ``timeout`` ends a wait on time
whatever the stream does, a refused input in streaming mode is silence, and a stopped run's
record keeps saying ``running``."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from airflow_harness import run_dag
from dify_helpers import finish_first_run_after_polls
from test_operator import RUN_ENDPOINT, op_dag, starts

from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.testing import DifyEmulator, Fault, Scenario
from dify_provider.version_compat import AIRFLOW_V_3_3_PLUS

pytestmark = pytest.mark.airflow


def stated_version(emu: DifyEmulator, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    conn = emu.airflow_connection()
    conn["extra"]["server_version"] = version
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_DEFAULT", json.dumps(conn))


# --- 1. the server version --------------------------------------------------------------------


def test_version_from_the_header_lets_a_deferrable_task_defer(dify_emulator: DifyEmulator, dag_id: str) -> None:
    result = run_dag(op_dag(dag_id, deferrable=True))
    assert result.state == "success"
    log = result.log("run")
    assert "Dify 1.13.2 (X-Version header) keeps a run going when its stream is closed: deferring" in log
    assert "DEFERRED" in log
    assert not dify_emulator.requests_to("GET", "/v1/")  # learned for free, no probe


def test_wait_for_termination_false_returns_at_once_on_113(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(hold=True))
    result = run_dag(op_dag(dag_id, wait_for_termination=False))
    assert result.state == "success"
    run_id = result.xcom("run", key="workflow_run_id")
    assert dify_emulator.runs[run_id].status == "running"
    assert "returning without waiting" in result.log("run")
    dify_emulator.finish(run_id)


@pytest.mark.parametrize("wait", [True, False], ids=["deferrable", "no-wait"])
def test_unknown_version_says_what_it_assumes(dify_emulator: DifyEmulator, dag_id: str, wait: bool) -> None:
    dify_emulator.configure(version_header=False)
    dify_emulator.script("echo", Scenario(steps=3, step_seconds=0.05))
    result = run_dag(op_dag(dag_id, deferrable=wait, wait_for_termination=wait))
    assert result.state == "success"
    log = result.log("run")
    assert "the Dify server's version is unknown" in log
    assert "set the extra server_version" in log
    assert "'dify_default'" in log
    assert "DEFERRED" not in log
    assert ("Not deferring" in log) == wait
    assert ("follows run" in log) != wait
    (run,) = dify_emulator.runs.values()
    assert run.status == "succeeded"  # followed to the end either way
    assert len(dify_emulator.requests_to("GET", "/v1/")) == 1  # one probe, answered 404


@pytest.mark.parametrize(("header", "stated", "line"), [
    (False, "1.13.2", "Dify 1.13.2 (the connection's server_version extra) keeps a run going"),
    (True, "1.12.0", "states server_version 1.12.0, but the server says Dify 1.13.2 (X-Version header)"),
], ids=["server-cannot-tell", "stale-extra"])
def test_the_stated_version_serves_only_where_the_server_cannot_tell(
        dify_emulator: DifyEmulator, dag_id: str, monkeypatch: pytest.MonkeyPatch, header: bool, stated: str,
        line: str) -> None:
    dify_emulator.configure(version_header=header)
    stated_version(dify_emulator, monkeypatch, stated)
    result = run_dag(op_dag(dag_id, deferrable=True))
    assert result.state == "success"
    log = result.log("run")
    assert line in log
    assert "DEFERRED" in log
    assert not dify_emulator.requests_to("GET", "/v1/")  # no probe either way


def test_version_from_an_index_that_answers(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.configure(version_header=False, index_route=True, server_version="1.12.1",
                            pre_113_disconnect=True)
    dify_emulator.script("echo", Scenario(steps=3, step_seconds=0.05))
    result = run_dag(op_dag(dag_id, deferrable=True))
    assert result.state == "success"
    assert "Dify 1.12.1 (GET /) is older than 1.13" in result.log("run")
    assert not next(iter(dify_emulator.runs.values())).orphaned


def test_a_bad_stated_version_names_the_extra(dify_emulator: DifyEmulator, dag_id: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    stated_version(dify_emulator, monkeypatch, "latest")
    result = run_dag(op_dag(dag_id, retries=2, retry_delay=timedelta(0)))
    assert result.state == "failed"
    assert result.ti("run").try_number == 1
    assert "connection 'dify_default'.extra.server_version: 'latest' is not a version" in result.log("run")
    assert starts(dify_emulator) == 0


# --- 2. timeouts on time ------------------------------------------------------------------------


def _start_and_stop_times(emu: DifyEmulator) -> tuple[float, float]:
    (start,) = emu.requests_to("POST", "/workflows/run")
    (stop,) = emu.wait_for_requests("POST", "/stop")
    return start.received_at, stop.received_at


@pytest.mark.parametrize("silence", ["silent", "pinging"])
def test_timeout_ends_the_wait_on_time(dify_emulator: DifyEmulator, dag_id: str, silence: str) -> None:
    # Before: the watchdog closed the stream but the blocked read returned only with the next
    # frame (the 10 s ping; on a silent stream the 45 s inactivity limit).
    dify_emulator.script("echo", Scenario(hold=True))
    if silence == "silent":
        dify_emulator.inject(Fault.silent_stream(after_events=2, endpoint=RUN_ENDPOINT))
    else:
        dify_emulator.configure(ping_interval=8.0)
    result = run_dag(op_dag(dag_id, timeout=1.5))
    assert result.state == "failed"
    started, stopped = _start_and_stop_times(dify_emulator)
    assert stopped - started < 4.0  # 1.5 s + start-up; not the next ping, not 45 s
    (run,) = dify_emulator.runs.values()
    assert run.status == "stopped"
    log = result.log("run")
    assert "gave up waiting for Dify workflow run" in log
    assert "Stopped Dify run" in log


def test_execution_timeout_ends_a_silent_stream_on_time(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(hold=True))
    dify_emulator.inject(Fault.silent_stream(after_events=2, endpoint=RUN_ENDPOINT))
    result = run_dag(op_dag(dag_id, execution_timeout=timedelta(seconds=2)))
    assert result.state == "failed"
    started, stopped = _start_and_stop_times(dify_emulator)
    assert stopped - started < 5.0
    (run,) = dify_emulator.runs.values()
    assert run.status == "stopped"
    assert "Stopped Dify run" in result.log("run")


def test_timeout_before_the_run_is_announced(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.inject(Fault.silent_stream(after_events=0, endpoint=RUN_ENDPOINT))
    result = run_dag(op_dag(dag_id, timeout=1.0))
    assert result.state == "failed"
    assert "Dify had not announced the run yet, so there was nothing to stop" in result.log("run")
    assert not dify_emulator.requests_to("POST", "/stop")


# --- 3. what the real server contradicts --------------------------------------------------------


def _short_idle_timeout(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """The client's inactivity limit (45 s; at least Dify's 10 s ping interval in real use)."""
    from dify_provider.hooks import dify as hook_module

    real = hook_module.settings_from_connection

    def shortened(conn: Any) -> Any:
        settings = real(conn)
        object.__setattr__(settings.config, "stream_idle_timeout", seconds)
        return settings

    monkeypatch.setattr(hook_module, "settings_from_connection", shortened)


@pytest.mark.parametrize("ending", ["client-idle-timeout", "server-idle-timeout"])
def test_silent_bad_input_names_the_input_and_is_not_retried(dify_emulator: DifyEmulator, dag_id: str,
                                                             monkeypatch: pytest.MonkeyPatch, ending: str) -> None:
    # A real 1.13.2: a missing required input in streaming mode is HTTP 200, one ping, silence.
    if ending == "client-idle-timeout":
        _short_idle_timeout(monkeypatch, 1.0)
    else:
        dify_emulator.configure(stream_idle_timeout=0.5)
    result = run_dag(op_dag(dag_id, inputs={"count": 2}, check_required_inputs=False, retries=2,
                            retry_delay=timedelta(0)))
    assert result.state == "failed"
    assert result.ti("run").try_number == 1
    log = result.log("run")
    assert "inputs: missing required workflow input(s) 'text'" in log
    assert "answers refused inputs with silence" in log
    assert "Not retried" in log
    assert starts(dify_emulator) == 1
    assert not dify_emulator.runs  # Dify created none


def test_silence_with_good_inputs_points_at_the_server(dify_emulator: DifyEmulator, dag_id: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Good inputs, HTTP 200, and no run to be seen (not announced, not in the logs): a server
    # whose workers do not pick the run up looks like this.
    _short_idle_timeout(monkeypatch, 1.0)
    dify_emulator.inject(Fault.silent_stream(after_events=0, endpoint=RUN_ENDPOINT),
                         Fault.http_error(500, endpoint="GET /workflows/logs"))
    result = run_dag(op_dag(dag_id))
    assert result.state == "failed"
    log = result.log("run")
    assert "The inputs match the app's input form, so the likely cause is the server" in log
    assert "workflow_based_app_execution" in log
    assert "a retry can help then" in log


@pytest.mark.parametrize(("inputs", "problem"), [
    ({"text": "x" * 300}, "'text' must be at most 256 characters, got 300"),
    ({"text": "x", "count": "many"}, "'count' must be a valid number, got 'many'"),
    ({"text": 5}, "'text' must be a string (text-input), got int"),
], ids=["too-long", "not-a-number", "not-a-string"])
def test_inputs_dify_would_refuse_fail_before_any_run(dify_emulator: DifyEmulator, dag_id: str,
                                                       inputs: dict[str, Any], problem: str) -> None:
    result = run_dag(op_dag(dag_id, inputs=inputs, retries=2, retry_delay=timedelta(0)))
    assert result.state == "failed"
    assert result.ti("run").try_number == 1
    assert problem in result.log("run")
    assert starts(dify_emulator) == 0


class CrashAfterRunEnded(DifyRunWorkflowOperator):
    """The worker dies on try 1 after the run succeeded, before the task could finish."""

    def _finish(self, context: Any, memory: Any, snapshot: Any) -> Any:
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated worker crash after the run ended")
        return super()._finish(context, memory, snapshot)


def test_retry_reuses_a_run_that_already_succeeded(dify_emulator: DifyEmulator, dag_id: str) -> None:
    result = run_dag(op_dag(dag_id, cls=CrashAfterRunEnded, retries=1, retry_delay=timedelta(0)))
    assert result.state == "success"
    assert result.ti("run").try_number == 2
    assert starts(dify_emulator) == 1  # no second paid run
    assert "already succeeded: using its outputs instead of starting" in result.log("run", try_number=2)
    assert result.xcom("run")["text"] == "HELLO"
    record = result.state_store("run", "dify_workflow_run")
    if AIRFLOW_V_3_3_PLUS:
        assert record["delivered"] is True  # a clear then starts a new run
    else:
        assert record is None  # the stand-in Variable is deleted when the task ends


def test_a_stop_is_remembered_because_the_record_keeps_saying_running(dify_emulator: DifyEmulator,
                                                                    dag_id: str) -> None:
    # Dify 1.13.2 leaves a stopped run's record "running": a later try of this task instance (a
    # clear; `timeout` itself fails without retries) must not re-attach and wait on a dead run.
    dify_emulator.script("echo", Scenario(hold=True))
    result = run_dag(op_dag(dag_id, timeout=2.0))
    assert result.state == "failed"
    record = result.state_store("run", "dify_workflow_run")
    assert record["workflow_run_id"] == result.xcom("run", key="workflow_run_id")
    assert "(timeout)" in record["stopped"]
    assert "delivered" not in record


def test_retry_after_execution_timeout_kill_starts_anew(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(hold=True), Scenario())
    result = run_dag(op_dag(dag_id, execution_timeout=timedelta(seconds=1.5), retries=1,
                            retry_delay=timedelta(0)))
    assert result.state == "success"
    assert starts(dify_emulator) == 2
    assert "was stopped by an earlier try (the Airflow task was killed)" in result.log("run", try_number=2)


def test_stopped_run_record_stays_running_like_the_real_server(dify_emulator: DifyEmulator, dag_id: str) -> None:
    from dify_provider.client import ClientConfig, DifyClient

    dify_emulator.script("echo", Scenario(hold=True))
    result = run_dag(op_dag(dag_id, timeout=2.0))
    assert result.state == "failed"
    (run,) = dify_emulator.runs.values()
    config = ClientConfig(api_key=dify_emulator.api_key("echo"), base_url=dify_emulator.base_url)
    with DifyClient(config) as client:
        assert str(client.get_workflow_run(run.id).status) == "running"
    assert run.status == "stopped"


def test_reattach_still_works_for_a_run_that_is_really_going(dify_emulator: DifyEmulator, dag_id: str) -> None:
    from test_operator import CrashAfterStart

    dify_emulator.script("echo", Scenario(hold=True))
    with finish_first_run_after_polls(dify_emulator, 2):
        result = run_dag(op_dag(dag_id, cls=CrashAfterStart, retries=1, retry_delay=timedelta(0)))
    assert result.state == "success"
    assert starts(dify_emulator) == 1


def test_a_lost_start_whose_run_succeeded_is_reused_by_the_retry(dify_emulator: DifyEmulator, dag_id: str) -> None:
    # The start's answer is cut before the run is announced, and the first look in Dify's logs
    # fails: try 1 fails "ambiguously". It had written that it was starting a run, so try 2 finds
    # the run in the logs (by its end-user id, created since then) and takes its outputs.
    dify_emulator.inject(
        Fault.drop(endpoint=RUN_ENDPOINT, after_run_created=True),
        Fault.http_error(500, endpoint="GET /workflows/logs"),
    )
    result = run_dag(op_dag(dag_id, retries=1, retry_delay=timedelta(0)))
    assert result.state == "success"
    assert starts(dify_emulator) == 1
    assert "failed ambiguously" in result.log("run", try_number=1)
    assert "lost its answer, but Dify's logs show its run" in result.log("run", try_number=2)
    (run,) = dify_emulator.runs.values()
    assert result.xcom("run", key="workflow_run_id") == run.id
    assert result.xcom("run")["text"] == "HELLO"
