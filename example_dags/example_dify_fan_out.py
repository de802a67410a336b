"""Fan out: one Dify run per item with dynamic task mapping, then total the tokens.

``expand`` creates one task instance, hence one Dify run, per input. Each mapped instance has its
own default Dify ``user`` (it includes the map index), so a retry of one item re-attaches to that
item's run and never to a sibling's.
"""

from __future__ import annotations

from collections.abc import Sequence
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
def example_dify_fan_out() -> None:
    @task
    def items() -> list[dict[str, Any]]:
        return [{"text": word} for word in ("alpha", "beta", "gamma")]

    runs = DifyRunWorkflowOperator.partial(task_id="run").expand(inputs=items())

    @task
    def total_tokens(counts: Sequence[int | None]) -> int:
        total = sum(int(count or 0) for count in counts)
        print(f"total_tokens={total} over {len(counts)} runs")
        return total

    # One value per mapped run, in map-index order.
    total_tokens(XComArg(runs, key="total_tokens"))


example_dify_fan_out()
