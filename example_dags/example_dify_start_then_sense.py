"""Start a Dify run without waiting, then wait for it with the deferrable sensor.

Useful when something else must happen between start and finish, or when the wait should not
hold a worker slot: the sensor waits in the triggerer (run ``airflow triggerer``).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import dag, task

from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.sensors.workflow_run import WorkflowRunSensor


@dag(
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["dify", "example"],
)
def example_dify_start_then_sense() -> None:
    start = DifyRunWorkflowOperator(
        task_id="start",
        inputs={"text": "started, not awaited"},
        wait_for_termination=False,  # returns once Dify names the run; its id is in XCom
    )
    wait = WorkflowRunSensor(
        task_id="wait",
        workflow_run_id="{{ ti.xcom_pull(task_ids='start', key='workflow_run_id') }}",
        deferrable=True,
        poke_interval=1,
        timeout=600,
    )

    @task
    def use(detail: dict[str, Any]) -> str:
        print(f"status={detail['status']} outputs={detail['outputs']} tokens={detail['total_tokens']}")
        return str(detail["outputs"].get("text"))

    start >> wait
    use(wait.output)


example_dify_start_then_sense()
