"""Wait for a Dify run started outside Airflow (a web app, a webhook, another system).

Trigger with the run id as a param, e.g.
``airflow dags trigger example_dify_wait_external -c '{"workflow_run_id": "<uuid>"}'``, or from the
UI's "Trigger" form. The sensor checks the id before any request, so a missing or mistyped id fails
at once. ``mode="reschedule"`` frees the worker slot between checks.
"""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import Param, dag

from dify_provider.sensors.workflow_run import WorkflowRunSensor


@dag(
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"workflow_run_id": Param("", type="string", description="Dify workflow run id (UUID)")},
    tags=["dify", "example"],
)
def example_dify_wait_external() -> None:
    WorkflowRunSensor(
        task_id="wait",
        workflow_run_id="{{ params.workflow_run_id }}",
        mode="reschedule",
        poke_interval=5,
        max_poke_interval=60,
        timeout=3600,
    )


example_dify_wait_external()
