"""Run a Dify workflow and use its outputs downstream.

The operator starts the run, waits for it (on the stream: completion is seen immediately) and
returns the run's ``outputs`` dict; token usage lands in XCom under ``total_tokens``.
Needs a ``dify_default`` connection (see the README; ``make demo`` points it at the emulator).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from dify_provider.operators.workflow import DifyRunWorkflowOperator


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["dify", "example"])
def example_dify_run_workflow() -> None:
    run = DifyRunWorkflowOperator(
        task_id="run",
        inputs={"text": "hello from airflow"},
    )

    @task
    def report(outputs: dict, ti=None) -> dict:  # type: ignore[no-untyped-def]
        tokens = ti.xcom_pull(task_ids="run", key="total_tokens")
        print(f"outputs={outputs} total_tokens={tokens}")
        return {"outputs": outputs, "total_tokens": tokens}

    report(run.output)


example_dify_run_workflow()
