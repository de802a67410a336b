"""OpenLineage facets of the Dify tasks (``dify_provider.lineage``), with and without the provider.

The facet builder and the "not installed" path run everywhere (the older Airflow venvs have no
OpenLineage provider); the facet contents and the real listener need the provider and skip without
it. The real-parts test runs a DAG in a fresh Airflow process with OpenLineage enabled and its file
transport, as a deployment configures it: the listener, the extractor and the transport are
OpenLineage's own, and the Dify server is the emulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dify_helpers import start_run

import dify_provider
from dify_provider.client.status import Reason, Verdict
from dify_provider.client.waiting import Snapshot
from dify_provider.lineage import DIFY_RUN_FACET, EXTERNAL_QUERY_FACET, DifyLineageMixin, lineage_namespace
from dify_provider.testing import DifyEmulator, Scenario

REPO = Path(dify_provider.__file__).resolve().parents[1]
RUN_ID = "b8e2c8a0-3c5e-4d6f-9a1b-2c3d4e5f6a7b"
FACTS: dict[str, Any] = {
    "namespace": "dify://127.0.0.1:8080",
    "app": "Translator",
    "app_id": "5f0c1e2d-0000-4000-8000-000000000001",
    "app_mode": "advanced-chat",
    "run_id": RUN_ID,
    "kind": "workflow_run",
    "status": "stopped",
    "total_tokens": 1234,
    "prompt_tokens": 1000,
    "completion_tokens": 234,
    "total_price": "0.0123",
    "currency": "USD",
    "elapsed_time": 2.5,
    "trace_id": "trace-42",
}


class Task(DifyLineageMixin):
    """The mixin on its own, as any task class would carry it."""


def _ol_provider() -> Any:
    return pytest.importorskip("airflow.providers.openlineage.extractors", reason="OpenLineage provider not installed")


def _facet_dict(facet: Any) -> dict[str, Any]:
    from openlineage.client.serde import Serde

    return {k: v for k, v in Serde.to_dict(facet).items() if not k.startswith("_")}


@pytest.mark.parametrize("facts", [None, {}], ids=["none", "empty"])
def test_no_facts_no_facets(facts: dict[str, Any] | None) -> None:
    never_set = Task()
    assert never_set.get_openlineage_facets_on_complete(None) is None
    task = Task()
    task._lineage_facts = facts
    assert task.get_openlineage_facets_on_complete(None) is None
    assert task.get_openlineage_facets_on_failure(None) is None


@pytest.mark.parametrize("method", ["get_openlineage_facets_on_complete", "get_openlineage_facets_on_failure"])
def test_facts_become_the_dify_run_and_external_query_facets(method: str) -> None:
    extractors = _ol_provider()
    task = Task()
    task._lineage_facts = dict(FACTS)
    lineage = getattr(task, method)(None)
    assert isinstance(lineage, extractors.OperatorLineage)
    assert (lineage.inputs, lineage.outputs, lineage.job_facets) == ([], [], {})  # no datasets
    assert set(lineage.run_facets) == {DIFY_RUN_FACET, EXTERNAL_QUERY_FACET}
    assert _facet_dict(lineage.run_facets[DIFY_RUN_FACET]) == {
        "namespace": "dify://127.0.0.1:8080", "app": "Translator", "appId": FACTS["app_id"],
        "appMode": "advanced-chat", "runId": RUN_ID, "kind": "workflow_run", "status": "stopped",
        "totalTokens": 1234, "promptTokens": 1000, "completionTokens": 234, "totalPrice": "0.0123",
        "currency": "USD", "elapsedTime": 2.5, "traceId": "trace-42",
    }
    assert _facet_dict(lineage.run_facets[EXTERNAL_QUERY_FACET]) == {
        "externalQueryId": RUN_ID, "source": "dify://127.0.0.1:8080"}


def test_unknown_facts_are_left_out_and_a_price_stays_decimal() -> None:
    _ol_provider()
    task = Task()
    task._lineage_facts = {"run_id": RUN_ID, "status": None, "total_tokens": True, "total_price": 1e-05}
    lineage = task.get_openlineage_facets_on_complete(None)
    assert _facet_dict(lineage.run_facets[DIFY_RUN_FACET]) == {"runId": RUN_ID, "totalPrice": "0.00001"}
    assert EXTERNAL_QUERY_FACET not in lineage.run_facets  # no namespace: no source to name


def _block_openlineage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every OpenLineage import fail, as it does where neither the provider nor its client is
    installed (a None entry in ``sys.modules`` fails the import, loaded or not)."""
    names = {"openlineage", "airflow.providers.openlineage", "airflow.providers.openlineage.extractors",
             "dify_provider.lineage_facets"}
    names |= {m for m in sys.modules if m.startswith(("openlineage.", "airflow.providers.openlineage."))}
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def test_no_facets_without_openlineage(monkeypatch: pytest.MonkeyPatch) -> None:
    _block_openlineage(monkeypatch)
    with pytest.raises(ImportError):
        import airflow.providers.openlineage.extractors  # noqa: F401  # the block holds
    task = Task()
    task._lineage_facts = dict(FACTS)
    assert task.get_openlineage_facets_on_complete(None) is None
    assert task.get_openlineage_facets_on_failure(None) is None


@pytest.mark.parametrize(
    ("url", "namespace"),
    [
        ("http://127.0.0.1:8080/v1", "dify://127.0.0.1:8080"),
        ("https://api.dify.ai/v1", "dify://api.dify.ai"),
        ("https://user:secret@Dify.Example.COM:443/v1?x=1", "dify://dify.example.com"),
        ("http://dify.internal:80", "dify://dify.internal"),
        ("https://dify.internal:8443/sub/v1", "dify://dify.internal:8443"),
        ("http://[::1]:5001/v1", "dify://[::1]:5001"),
        ("dify.internal:5001", "dify://dify.internal:5001"),
        ("", "dify://unknown"),
    ],
)
def test_lineage_namespace(url: str, namespace: str) -> None:
    assert lineage_namespace(url) == namespace


PROBE = """
import json, sys
from airflow.providers.common.compat.sdk import DAG, BaseSensorOperator
with DAG("baseline", schedule=None):
    BaseSensorOperator(task_id="plain")
before = set(sys.modules)
from dify_provider.sensors.workflow_run import WorkflowRunSensor
with DAG("parse_only", schedule=None):
    WorkflowRunSensor(task_id="wait", workflow_run_id="b8e2c8a0-3c5e-4d6f-9a1b-2c3d4e5f6a7b")
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_parsing_a_dag_with_the_sensor_imports_no_openlineage() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120,
                         cwd=REPO)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"dify_provider.sensors.workflow_run", "dify_provider.lineage"} <= set(loaded)  # it imported them
    assert [m for m in loaded if "openlineage" in m or m == "dify_provider.lineage_facets"] == []


# --- the sensor's facts ---------------------------------------------------------------------


def _sensor(base_url: str = "http://127.0.0.1:8080/v1", app_id: str | None = "app-uuid") -> Any:
    from dify_provider.sensors.workflow_run import WorkflowRunSensor

    sensor = WorkflowRunSensor(task_id="wait", workflow_run_id=RUN_ID)
    config = types.SimpleNamespace(base_url=base_url)  # what the facts read of the connection
    sensor.__dict__["hook"] = types.SimpleNamespace(settings=types.SimpleNamespace(config=config, app_id=app_id))
    return sensor


def test_the_sensor_keeps_the_last_known_facts_of_its_run() -> None:
    sensor = _sensor()
    assert sensor._lineage_facts is None  # nothing before the first poll
    running = Snapshot(Verdict.WAIT, Reason.RUNNING, RUN_ID, "running", "running",
                       {"total_tokens": 10, "elapsed_time": 0.5})
    sensor.observe(running)
    assert sensor._lineage_facts == {"namespace": "dify://127.0.0.1:8080", "app": "app-uuid", "app_id": "app-uuid",
                                     "kind": "workflow_run", "run_id": RUN_ID, "status": "running",
                                     "total_tokens": 10, "elapsed_time": 0.5}
    sensor.observe(Snapshot(Verdict.WAIT, Reason.ERROR, RUN_ID, "transient error, still waiting: 502"))
    assert sensor._lineage_facts["status"] == "running"  # a poll that learnt nothing forgets nothing
    assert sensor._lineage_facts["total_tokens"] == 10
    sensor.observe(Snapshot(Verdict.FAILURE, Reason.FAILED, RUN_ID, "failed", "failed",
                            {"total_tokens": 30, "elapsed_time": 1.5}))
    assert sensor._lineage_facts["status"] == "failed"
    assert (sensor._lineage_facts["total_tokens"], sensor._lineage_facts["elapsed_time"]) == (30, 1.5)


def test_a_deferred_sensor_reports_the_trigger_s_last_event() -> None:
    """Resumed from the trigger, the sensor is a new task process: the event is all it knows."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    sensor = _sensor(app_id=None)
    stopped = Snapshot(Verdict.FAILURE, Reason.STOPPED, RUN_ID, "was stopped", "stopped",
                       {"total_tokens": 7, "elapsed_time": 3.0})
    with pytest.raises(AirflowFailException, match="was stopped"):
        sensor.execute_complete({}, stopped.to_event())
    assert sensor._lineage_facts == {"namespace": "dify://127.0.0.1:8080", "kind": "workflow_run", "run_id": RUN_ID,
                                     "status": "stopped", "total_tokens": 7, "elapsed_time": 3.0}


def test_the_sensor_facts_survive_an_unreadable_connection() -> None:
    from dify_provider.sensors.workflow_run import WorkflowRunSensor

    class Broken:
        @property
        def settings(self) -> Any:
            raise RuntimeError("no such connection")

    sensor = WorkflowRunSensor(task_id="wait", workflow_run_id=RUN_ID)
    sensor.__dict__["hook"] = Broken()
    sensor.observe(Snapshot(Verdict.FAILURE, Reason.AUTH, RUN_ID, "Dify refused the key"))
    assert sensor._lineage_facts == {"kind": "workflow_run", "run_id": RUN_ID}


# --- real parts: Airflow's OpenLineage listener and file transport --------------------------

DAG_SCRIPT = """
import os
from datetime import datetime

from airflow.utils import db

db.initdb()

from airflow.providers.common.compat.sdk import DAG

import dify_provider
from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.sensors.workflow_run import WorkflowRunSensor
from dify_provider.testing.airflow import test_dag

print("package:", dify_provider.__file__)

with DAG("lineage", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    WorkflowRunSensor(task_id="done", workflow_run_id=os.environ["DONE_RUN"], poke_interval=0.05, timeout=30)
    WorkflowRunSensor(task_id="broke", workflow_run_id=os.environ["BROKE_RUN"], poke_interval=0.05, timeout=30)
    DifyRunWorkflowOperator(task_id="run", inputs={"text": "lineage"})
print("dag run:", test_dag(dag).state)
"""


def _finished_run(emu: DifyEmulator, status: str, error: str | None = None) -> str:
    """A run that ended before the sensor looks (the emulator plays its nodes, spending tokens)."""
    run_id = start_run(emu, Scenario(status=status, error=error))
    emu.wait_for(run_id, status=status)
    return run_id


def _airflow_env(home: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENLINEAGE"))}
    (home / "dags").mkdir(parents=True)
    return {
        **keep,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        # this checkout's package, whatever the venv has installed
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        **extra,
    }


@pytest.mark.airflow
def test_openlineage_events_carry_the_dify_run(dify_emulator: DifyEmulator, tmp_path: Path) -> None:
    _ol_provider()
    done = _finished_run(dify_emulator, "succeeded")
    broke = _finished_run(dify_emulator, "failed", error="boom in node 2")
    tokens = dify_emulator.runs[done].total_tokens
    assert tokens > 0
    events_file = tmp_path / "ol.json"
    script = tmp_path / "lineage_dag.py"
    script.write_text(textwrap.dedent(DAG_SCRIPT))
    env = _airflow_env(
        tmp_path / "home",
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "file", "log_file_path": str(events_file),
                                                    "append": True}),
        AIRFLOW__OPENLINEAGE__NAMESPACE="dify-provider-tests",
        AIRFLOW_CONN_DIFY_DEFAULT=dify_emulator.airflow_connection_json(),
        DONE_RUN=done,
        BROKE_RUN=broke,
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env,
                          cwd=REPO, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert f"package: {REPO / 'dify_provider' / '__init__.py'}" in proc.stdout  # this checkout's code ran
    assert "dag run: failed" in proc.stdout, output[-5000:]  # "broke" failed, as its run did

    text = events_file.read_text()
    assert dify_emulator.api_key("echo") not in text
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    by_task = {(e["job"]["name"], e["eventType"]): e for e in events}
    complete = by_task[("lineage.done", "COMPLETE")]
    failed = by_task[("lineage.broke", "FAIL")]
    assert complete["job"]["namespace"] == "dify-provider-tests"
    namespace = lineage_namespace(dify_emulator.base_url)
    app_id = dify_emulator.app_id("echo")
    facet = complete["run"]["facets"][DIFY_RUN_FACET]
    assert {k: facet[k] for k in ("runId", "status", "totalTokens", "kind", "namespace", "appId")} == {
        "runId": done, "status": "succeeded", "totalTokens": tokens, "kind": "workflow_run",
        "namespace": namespace, "appId": app_id}
    assert complete["run"]["facets"][EXTERNAL_QUERY_FACET]["externalQueryId"] == done
    assert (complete["inputs"], complete["outputs"]) == ([], [])
    facet = failed["run"]["facets"][DIFY_RUN_FACET]
    assert (facet["runId"], facet["status"], facet["appId"]) == (broke, "failed", app_id)
    # the operator's run: its spend from the stream, its mode and the trace id it sent
    facet = by_task[("lineage.run", "COMPLETE")]["run"]["facets"][DIFY_RUN_FACET]
    (started,) = (r for r in dify_emulator.requests_to("POST", "/workflows/run") if "x-trace-id" in r.headers)
    ran = dify_emulator.runs[facet["runId"]]
    assert (facet["status"], facet["kind"], facet["appMode"], facet["totalTokens"]) == (
        "succeeded", "workflow_run", "workflow", ran.total_tokens)
    assert Decimal(facet["totalPrice"]) > 0
    assert (facet["currency"], facet["traceId"]) == ("USD", started.headers["x-trace-id"])
    # and the START events, before any poll, carry none
    assert DIFY_RUN_FACET not in by_task[("lineage.done", "START")]["run"]["facets"]
