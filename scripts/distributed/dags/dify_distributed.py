"""The DAGs of ``make e2e-distributed``; each scenario triggers a run with its own ``conf``.

``dify_dist``: ``conf`` says how many of each task to map, so one DAG serves every scenario:
``ops`` deferrable operators (the wait is in a triggerer), ``sensor_run_ids`` deferrable sensors
on runs the e2e started itself, ``streams`` operators that stay on the stream in a worker.
``dify_dist_kill``: one deferred operator a user marks failed, one whose ``execution_timeout``
passes while it is deferred; both must stop their Dify run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import dag, get_current_context, task

from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.sensors.workflow_run import WorkflowRunSensor

START = pendulum.datetime(2026, 1, 1, tz="UTC")
POLL = 2.0  # seconds between a waiting run's polls: the load step checks the spacing against it
COMMON: dict[str, Any] = {"schedule": None, "start_date": START, "catchup": False, "tags": ["dify-distributed"],
                          "max_active_tasks": 512, "max_active_runs": 8}


def _conf() -> dict[str, Any]:
    return dict(get_current_context()["dag_run"].conf or {})


@dag(**COMMON)
def dify_dist() -> None:
    @task
    def op_inputs() -> list[dict[str, str]]:
        return [{"text": f"deferred {i}"} for i in range(int(_conf().get("ops", 0)))]

    @task
    def stream_inputs() -> list[dict[str, str]]:
        return [{"text": f"streamed {i}"} for i in range(int(_conf().get("streams", 0)))]

    @task
    def sensor_run_ids() -> list[str]:
        return [str(run_id) for run_id in _conf().get("sensor_run_ids", [])]

    DifyRunWorkflowOperator.partial(
        task_id="op", deferrable=True, poll_interval=POLL, timeout=1800, retries=2, retry_delay=timedelta(seconds=3),
    ).expand(inputs=op_inputs())
    DifyRunWorkflowOperator.partial(
        task_id="stream", deferrable=False, poll_interval=POLL, timeout=1800, retries=2,
        retry_delay=timedelta(seconds=3),
    ).expand(inputs=stream_inputs())
    WorkflowRunSensor.partial(
        task_id="sense", deferrable=True, poke_interval=POLL, timeout=1800, retries=2,
        retry_delay=timedelta(seconds=3),
    ).expand(workflow_run_id=sensor_run_ids())


@dag(**COMMON)
def dify_dist_kill() -> None:
    DifyRunWorkflowOperator(task_id="killed", inputs={"text": "marked failed"}, deferrable=True,
                            poll_interval=POLL, timeout=1800)
    DifyRunWorkflowOperator(task_id="timed_out", inputs={"text": "execution_timeout"}, deferrable=True,
                            poll_interval=POLL, timeout=1800, execution_timeout=timedelta(seconds=20))


dify_dist()
dify_dist_kill()
