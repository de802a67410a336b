"""Fan out: one Dify run per item with dynamic task mapping, then total the tokens.

Each mapped task instance has its own default Dify ``user`` (it includes the map index), so a
retry of one item re-attaches to that item's run and never to a sibling's.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from dify_provider.operators.workflow import DifyRunWorkflowOperator


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["dify", "example"])
def example_dify_fan_out() -> None:
    @task
    def items() -> list[dict]:
        return [{"text": word} for word in ("alpha", "beta", "gamma")]

    runs = DifyRunWorkflowOperator.partial(task_id="run").expand(inputs=items())

    @task
    def total_tokens(ti=None) -> int:  # type: ignore[no-untyped-def]
        counts = ti.xcom_pull(task_ids="run", key="total_tokens")
        total = sum(int(c or 0) for c in counts)
        print(f"total_tokens={total} over {len(counts)} runs")
        return total

    runs >> total_tokens()


example_dify_fan_out()
