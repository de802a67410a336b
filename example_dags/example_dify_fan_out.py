"""Fan out: one Dify run per item with dynamic task mapping, then the DAG run's spend per task.

``expand`` creates one task instance, hence one Dify run, per input. Each mapped instance has its
own default Dify ``user`` (it includes the map index), so a retry of one item re-attaches to that
item's run and never to a sibling's. Each has a budget too: a run that spends more than
``max_total_tokens`` (over all tries of its task) is stopped and its task fails without retries.

``spend`` reads the ``usage`` XCom of every mapped task (tokens, price and currency as Dify
reported them, per node) and prints a table of what each task spent, with the DAG run's total.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
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

    runs = DifyRunWorkflowOperator.partial(task_id="run", max_total_tokens=10_000).expand(inputs=items())

    @task
    def spend(usages: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        """A table of each mapped task's spend; prices are decimal strings, summed as Decimal."""
        tokens, price, currencies = 0, Decimal(0), set()
        print(f"{'task':<8} {'tokens':>8} {'price':>12}  currency  nodes")
        for index, usage in enumerate(usages):
            usage = usage or {}
            tokens += int(usage.get("total_tokens") or 0)
            if usage.get("total_price") is not None:
                price += Decimal(usage["total_price"])
                currencies.add(usage.get("currency"))
            print(f"{f'run[{index}]':<8} {usage.get('total_tokens', 0):>8,} {usage.get('total_price', '-'):>12}  "
                  f"{usage.get('currency') or '-':<8}  {len(usage.get('nodes') or [])}")
        currency = currencies.pop() if len(currencies) == 1 else None
        print(f"{'total':<8} {tokens:>8,} {price:>12}  {currency or '-':<8}")
        return {"runs": len(usages), "total_tokens": tokens, "total_price": str(price), "currency": currency}

    # One value per mapped run, in map-index order.
    spend(XComArg(runs, key="usage"))


example_dify_fan_out()
