"""DifyRunWorkflowOperator through real Airflow (dag.test) against the emulator over loopback."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import DAG, AirflowException, task
from airflow_harness import run_dag
from dify_helpers import FailAfterSuccess, finish_first_run_after_polls

from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.testing import DifyEmulator, Fault, Scenario
from dify_provider.triggers.workflow_run import WorkflowRunTrigger
from dify_provider.version_compat import AIRFLOW_V_3_0_PLUS

pytestmark = pytest.mark.airflow
START = datetime(2024, 1, 1)
RUN_ENDPOINT = "POST /workflows/run"


def op_dag(dag_id: str, *, downstream: bool = False, cls: type = DifyRunWorkflowOperator, **kwargs: Any) -> DAG:
    kwargs.setdefault("inputs", {"text": "hello"})
    kwargs.setdefault("poll_interval", 0.05)
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        run = cls(task_id="run", **kwargs)
        if downstream:
            @task
            def shout(outputs: dict[str, Any]) -> str:
                return str(outputs["text"]) + "!"

            shout(run.output)
    return dag


def starts(emu: DifyEmulator) -> int:
    return len(emu.requests_to("POST", "/workflows/run"))


@pytest.mark.parametrize("deferrable", [False, True])
def test_success_outputs_tokens_and_downstream(dify_emulator: DifyEmulator, dag_id: str, deferrable: bool) -> None:
    result = run_dag(op_dag(dag_id, downstream=True, deferrable=deferrable))
    assert result.state == "success"
    outputs = result.xcom("run")
    assert (outputs["text"], outputs["length"], outputs["echo"]["text"]) == ("HELLO", 5, "hello")
    assert result.xcom("shout") == "HELLO!"
    (run,) = dify_emulator.runs.values()
    assert result.xcom("run", key="workflow_run_id") == run.id
    assert result.xcom("run", key="task_id") == run.task_id
    assert result.xcom("run", key="status") == "succeeded"
    assert result.xcom("run", key="total_tokens") == run.total_tokens > 0
    assert result.xcom("run", key="total_steps") == run.total_steps
    assert result.xcom("run", key="finished_at") is not None
    assert run.user == f"airflow:{dag_id}:run:{result.run_id}"
    link = result.xcom("run", key="dify_run_url")
    assert link.endswith(f"/app/{dify_emulator.app_id('echo')}/logs?workflow_run_id={run.id}")
    log = result.log("run")
    assert f"Started Dify workflow run {run.id}" in log
    assert ("DEFERRED" in log) == deferrable
    assert starts(dify_emulator) == 1


@pytest.mark.parametrize("deferrable", [False, True])
@pytest.mark.parametrize(
    ("scenario", "kwargs", "state", "text"),
    [
        (Scenario(status="failed", error="LLM node exploded"), {}, "failed", "LLM node exploded"),
        (Scenario(status="stopped"), {}, "failed", "was stopped"),
        (Scenario(status="partial-succeeded"), {}, "success", "partially succeeded"),
        (Scenario(status="partial-succeeded"), {"fail_on_partial": True}, "failed", "partially succeeded"),
    ],
    ids=["failed", "stopped", "partial", "partial-strict"],
)
def test_terminal_statuses(dify_emulator: DifyEmulator, dag_id: str, deferrable: bool, scenario: Scenario,
                           kwargs: dict[str, Any], state: str, text: str) -> None:
    dify_emulator.script("echo", scenario)
    result = run_dag(op_dag(dag_id, deferrable=deferrable, **kwargs))
    assert result.state == state
    assert text in result.log("run")
    assert starts(dify_emulator) == 1


def test_stream_cut_mid_run_polls_and_never_restarts(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(steps=6, step_seconds=0.05))
    dify_emulator.inject(Fault.cut_stream(after_events=2, endpoint=RUN_ENDPOINT))
    result = run_dag(op_dag(dag_id, retries=2, retry_delay=timedelta(0)))
    assert result.state == "success"
    assert result.ti("run").try_number == 1
    assert starts(dify_emulator) == 1
    assert len(dify_emulator.runs) == 1
    assert "polling the run instead (not re-starting it)" in result.log("run")
    assert result.xcom("run")["text"] == "HELLO"


def test_in_stream_error_after_start_reads_the_run_and_never_restarts(dify_emulator: DifyEmulator,
                                                                      dag_id: str) -> None:
    # HTTP 200 was already sent: only the ``error`` event says the run failed. The operator must
    # neither take the broken stream for success nor start the run again; the run's record decides.
    dify_emulator.script("echo", Scenario(hold=True))
    dify_emulator.inject(Fault.stream_error("provider_quota_exceeded", "Your quota for Dify Hosted Model Provider "
                                            "has been exhausted.", status=400, endpoint=RUN_ENDPOINT))
    result = run_dag(op_dag(dag_id))
    assert result.state == "failed"
    assert starts(dify_emulator) == 1
    assert len(dify_emulator.runs) == 1
    log = result.log("run")
    assert "Dify sent an error event on the stream of run" in log
    assert "polling the run instead (not re-starting it)" in log
    assert "Your quota for Dify Hosted Model Provider has been exhausted." in log
    (run,) = dify_emulator.runs.values()
    assert run.status == "failed"


def test_in_stream_error_before_start_fails_with_dify_words(dify_emulator: DifyEmulator, dag_id: str) -> None:
    # Dify 1.13+ can report invalid inputs inside the stream, before any run is announced.
    dify_emulator.inject(Fault.stream_error("invalid_param", "when must be a valid date", status=400,
                                            after_events=0, endpoint=RUN_ENDPOINT))
    result = run_dag(op_dag(dag_id, retries=2, retry_delay=timedelta(0)))
    assert result.state == "failed"
    assert result.ti("run").try_number == 1  # the same inputs would fail again: no retry
    assert starts(dify_emulator) == 1
    assert "when must be a valid date" in result.log("run")


class CrashAfterStart(DifyRunWorkflowOperator):
    """Simulates a worker dying on the first try right after the run started."""

    def _wait(self, t: Any, run_id: str, *args: Any) -> Any:
        if t.context["ti"].try_number == 1:
            raise AirflowException("simulated worker crash")
        return super()._wait(t, run_id, *args)


def test_retry_reattaches_via_task_state_store(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(hold=True))
    with finish_first_run_after_polls(dify_emulator, 2):
        result = run_dag(op_dag(dag_id, cls=CrashAfterStart, retries=1, retry_delay=timedelta(0)))
    assert result.state == "success"
    assert result.ti("run").try_number == 2
    assert starts(dify_emulator) == 1
    assert "re-attaching to Dify workflow run" in result.log("run", try_number=2)
    assert result.xcom("run")["text"] == "HELLO"


def test_ambiguous_start_is_not_resent_and_retry_finds_the_run(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(hold=True))
    dify_emulator.inject(
        Fault.drop(endpoint=RUN_ENDPOINT, after_run_created=True),
        Fault.http_error(500, endpoint="GET /workflows/logs"),
    )
    with finish_first_run_after_polls(dify_emulator, 2) as run_holder:
        result = run_dag(op_dag(dag_id, retries=1, retry_delay=timedelta(0)))
    assert result.state == "success"
    assert starts(dify_emulator) == 1  # the broken start was never re-sent
    assert "not re-sent because Dify has no idempotency key" in result.log("run", try_number=1)
    assert "re-attaching" in result.log("run", try_number=2)
    assert result.xcom("run", key="workflow_run_id") == run_holder["id"]


@pytest.mark.parametrize("deferrable", [False, True])
def test_timeout_stops_the_remote_run(dify_emulator: DifyEmulator, dag_id: str, deferrable: bool) -> None:
    dify_emulator.script("echo", Scenario(hold=True))
    result = run_dag(op_dag(dag_id, timeout=2.0, deferrable=deferrable))
    assert result.state == "failed"
    (run,) = dify_emulator.runs.values()
    assert run.status == "stopped"
    assert dify_emulator.requests_to("POST", f"/workflows/tasks/{run.task_id}/stop")
    assert "Stopped Dify run" in result.log("run")


def test_deferred_execution_timeout_stops_the_remote_run(dify_emulator: DifyEmulator, dag_id: str) -> None:
    """Airflow does not enforce execution_timeout while deferred; the trigger carries it."""
    dify_emulator.script("echo", Scenario(hold=True))
    result = run_dag(op_dag(dag_id, deferrable=True, execution_timeout=timedelta(seconds=1)))
    assert result.state == "failed"
    (run,) = dify_emulator.runs.values()
    assert run.status == "stopped"
    assert "execution_timeout" in result.log("run")


def test_on_kill_stops_the_remote_run(dify_emulator: DifyEmulator) -> None:
    dify_emulator.script("echo", Scenario(hold=True))
    from dify_helpers import start_run

    run_id = start_run(dify_emulator, user="killer")
    run = dify_emulator.runs[run_id]
    op = DifyRunWorkflowOperator(task_id="run", inputs={"text": "x"})
    op._dify_task_id, op._dify_run_id = run.task_id, run_id
    op.on_kill()
    assert dify_emulator.wait_for(run_id, status="stopped").status == "stopped"


def test_trigger_on_kill_stops_the_run_but_cleanup_does_not(dify_emulator: DifyEmulator) -> None:
    from dify_helpers import start_run

    run_id = start_run(dify_emulator, Scenario(hold=True))
    task_id = dify_emulator.runs[run_id].task_id
    trigger = WorkflowRunTrigger(run_id, dify_task_id=task_id, user="u", poll_interval=1, stop_on_kill=True)
    # What Airflow 3.3's triggerer does before running it: BaseTrigger then sets its own task_id
    # attribute to the Airflow task's id, which must not be what is sent to Dify.
    trigger.task_instance = SimpleNamespace(task_id="killed", dag_id="d", run_id="r", map_index=-1, try_number=1)

    async def go() -> None:
        await trigger.cleanup()
        assert dify_emulator.runs[run_id].status == "running"
        await trigger.on_kill()

    asyncio.run(go())
    assert dify_emulator.runs[run_id].status == "stopped"
    assert dify_emulator.requests_to("POST", f"/workflows/tasks/{task_id}/stop")


@pytest.mark.parametrize(("map_index", "state", "stopped"), [
    (-1, "deferred", False),  # handed over to another triggerer: nobody killed it
    (3, "deferred", False),
    (-1, "failed", True),  # marked failed
    (3, None, True),  # cleared
])
def test_on_kill_stops_the_run_only_if_the_task_is_no_longer_deferred(
        dify_emulator: DifyEmulator, monkeypatch: pytest.MonkeyPatch, map_index: int, state: str | None,
        stopped: bool) -> None:
    """Airflow 3.3.2 calls on_kill also on the triggerer that lost a trigger to another one."""
    task_runner = pytest.importorskip("airflow.sdk.execution_time.task_runner")
    from dify_helpers import start_run

    run_id = start_run(dify_emulator, Scenario(hold=True))
    task_id = dify_emulator.runs[run_id].task_id
    asked: list[dict[str, object]] = []

    def get_task_states(**query: object) -> dict[str, dict[str, str | None]]:
        asked.append(query)
        return {"r": {"t" if map_index < 0 else f"t_{map_index}": state}}

    monkeypatch.setattr(task_runner.RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
    trigger = WorkflowRunTrigger(run_id, dify_task_id=task_id, user="u", poll_interval=1, stop_on_kill=True)
    trigger.task_instance = SimpleNamespace(task_id="t", dag_id="d", run_id="r", map_index=map_index, try_number=1)
    asyncio.run(trigger.on_kill())
    assert asked == [{"dag_id": "d", "map_index": map_index, "task_ids": ["t"], "run_ids": ["r"]}]
    assert (dify_emulator.runs[run_id].status == "stopped") is stopped
    assert bool(dify_emulator.requests_to("POST", f"/workflows/tasks/{task_id}/stop")) is stopped


def test_a_trigger_serialised_by_an_earlier_version_still_stops_its_run(dify_emulator: DifyEmulator) -> None:
    from dify_helpers import start_run

    run_id = start_run(dify_emulator, Scenario(hold=True))
    task_id = dify_emulator.runs[run_id].task_id
    old = WorkflowRunTrigger(run_id, task_id=task_id, user="u", poll_interval=1, stop_on_kill=True)  # old kwarg
    assert old.serialize()[1]["dify_task_id"] == task_id
    asyncio.run(old.on_kill())
    assert dify_emulator.runs[run_id].status == "stopped"


def test_pre_113_server_keeps_the_stream_when_deferrable(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.configure(server_version="1.12.1", pre_113_disconnect=True)
    dify_emulator.script("echo", Scenario(steps=4, step_seconds=0.05))
    result = run_dag(op_dag(dag_id, deferrable=True))
    assert result.state == "success"
    log = result.log("run")
    assert "older than 1.13" in log
    assert "DEFERRED" not in log
    (run,) = dify_emulator.runs.values()
    assert run.status == "succeeded"
    assert not run.orphaned


def test_wait_for_termination_false_returns_ids(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(hold=True))
    result = run_dag(op_dag(dag_id, wait_for_termination=False))
    assert result.state == "success"
    run_id = result.xcom("run", key="workflow_run_id")
    assert dify_emulator.runs[run_id].status == "running"  # still going, not orphaned or stopped
    dify_emulator.finish(run_id)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ("{{ 'not a dict' }}", "inputs: must be a dict of workflow variables, got str"),
        ({"text": "x", "when": datetime(2024, 1, 1)}, "inputs: must be JSON-serialisable"),
        ({}, "missing required workflow input(s) 'text'"),
    ],
    ids=["not-a-dict", "not-json", "missing-required"],
)
def test_bad_inputs_fail_before_any_run(dify_emulator: DifyEmulator, dag_id: str, inputs: Any, message: str) -> None:
    result = run_dag(op_dag(dag_id, inputs=inputs, retries=2, retry_delay=timedelta(0)))
    assert result.state == "failed"
    assert message in result.log("run")
    assert result.ti("run").try_number == 1
    assert starts(dify_emulator) == 0


def test_quota_error_fails_at_once(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.inject(Fault.rate_limit(endpoint=RUN_ENDPOINT, times=None))
    result = run_dag(op_dag(dag_id, retries=2, retry_delay=timedelta(0)))
    assert result.state == "failed"
    assert result.ti("run").try_number == 1
    assert starts(dify_emulator) == 1
    assert "quota is used up" in result.log("run")


def test_too_many_requests_at_start_is_retried(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.inject(Fault.too_many_requests(endpoint=RUN_ENDPOINT, retry_after=0))
    result = run_dag(op_dag(dag_id))
    assert result.state == "success"
    assert starts(dify_emulator) == 2
    assert len(dify_emulator.runs) == 1


def test_key_never_reaches_logs_or_xcom(dify_emulator: DifyEmulator, dag_id: str) -> None:
    key = dify_emulator.api_key("echo")
    dify_emulator.script("echo", Scenario(status="failed", error="nope"))
    result = run_dag(op_dag(dag_id, deferrable=True))
    assert result.state == "failed"
    everything = result.log("run") + json.dumps({k: result.xcom("run", key=k) for k in result.xcom_keys("run")})
    assert "workflow_run_id" in everything  # the grep looked at real content
    assert key not in everything


def test_clearing_a_task_starts_a_new_run_not_the_old_answer(dify_emulator: DifyEmulator, dag_id: str) -> None:
    """Try 1 succeeds; a simulated failure after it forces try 2, which must not reuse run 1."""
    result = run_dag(op_dag(dag_id, cls=FailAfterSuccess, retries=1, retry_delay=timedelta(0)))
    assert result.state == "success"
    assert starts(dify_emulator) == 2
    assert "re-attaching" not in result.log("run", try_number=2)


def test_link_reads_the_key_the_operator_pushes_at_start() -> None:
    """Airflow 3's API server reads `xcom_key`, never `get_link`; it must be the key pushed at start."""
    from dify_provider.links import LINK_XCOM_KEY, DifyRunLink

    assert DifyRunLink().xcom_key == LINK_XCOM_KEY
    (link,) = DifyRunWorkflowOperator.operator_extra_links
    assert link.name == "Dify run"


def test_the_ui_link_is_the_url_pushed_at_start(dify_emulator: DifyEmulator, dag_id: str) -> None:
    """What the UI's "Dify run" button opens: Airflow 3's API server reads the XCom named by
    ``xcom_key``; Airflow 2's webserver calls ``get_link`` on the operator of the serialized DAG."""
    from dify_provider.links import LINK_XCOM_KEY, DifyRunLink

    result = run_dag(op_dag(dag_id))
    url = result.xcom("run", key=LINK_XCOM_KEY)
    assert url.endswith(f"?workflow_run_id={result.xcom('run', key='workflow_run_id')}")
    if AIRFLOW_V_3_0_PLUS:
        assert DifyRunLink().xcom_key == LINK_XCOM_KEY
        return
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=result.run_id, task_id="run").one()
        operator = SerializedDagModel.get_dag(dag_id, session=session).get_task("run")
        assert operator.get_extra_links(ti, "Dify run") == url
