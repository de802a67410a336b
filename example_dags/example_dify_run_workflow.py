"""Run a Dify workflow and use its outputs downstream.

The operator starts the run, waits for it (on the stream: completion is seen at once) and returns
the run's ``outputs`` dict; token usage lands in XCom under ``total_tokens``. The task's
"Dify run" button opens the run in the Dify console.

Needs a ``dify_default`` connection, e.g. ``AIRFLOW_CONN_DIFY_DEFAULT`` (see the README;
``make demo`` points it at the bundled emulator).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import XComArg, dag, task

from dify_provider.operators.workflow import DifyRunWorkflowOperator


@dag(
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["dify", "example"],
)
def example_dify_run_workflow() -> None:
    run = DifyRunWorkflowOperator(
        task_id="run",
        inputs={"text": "hello from airflow"},
    )

    @task
    def report(outputs: dict[str, Any], total_tokens: int) -> dict[str, Any]:
        print(f"outputs={outputs} total_tokens={total_tokens}")
        return {"outputs": outputs, "total_tokens": total_tokens}

    report(run.output, XComArg(run, key="total_tokens"))


example_dify_run_workflow()
