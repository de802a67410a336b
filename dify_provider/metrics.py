"""Usage metrics through Airflow's ``Stats``, so spend is charted where the deployment's other
metrics go (StatsD, DogStatsD, OpenTelemetry: whatever ``[metrics]`` configures; nothing when
metrics are off).

Names (after Airflow's ``[metrics] statsd_prefix``, ``airflow.`` by default), each tagged
``dag_id``, ``task_id``, ``app`` (and ``currency`` for the price):

- ``dify.tokens``, ``dify.prompt_tokens``, ``dify.completion_tokens``: counters, tokens of a try's run;
- ``dify.price_micros``: counter, the run's price in millionths of ``currency`` (counters are
  whole numbers; 0.0123 USD counts 12,300);
- ``dify.run_duration``: timer, the run's elapsed time;
- ``dify.budget_exceeded``: counter, runs stopped (or tries refused) by a budget.

Tags reach DogStatsD and OpenTelemetry as tags/attributes, plain StatsD only with
``statsd_influxdb_enabled``; without them a StatsD server sees the totals over all tasks.
"""

from __future__ import annotations

import datetime
import logging
from decimal import Decimal
from typing import Any

PREFIX = "dify"


def emit_usage(usage: dict[str, Any], *, dag_id: str, task_id: str, app: str, budget_exceeded: bool = False,
               log: logging.Logger | Any = None) -> None:
    """Emit one try's usage; a metrics failure is logged, never fails the task."""
    try:
        from airflow.providers.common.compat.sdk import Stats

        tags = {"dag_id": dag_id, "task_id": task_id, "app": app}
        for key in ("total_tokens", "prompt_tokens", "completion_tokens"):
            if usage.get(key):
                Stats.incr(f"{PREFIX}.{key.removeprefix('total_')}", count=int(usage[key]), tags=tags)
        if usage.get("total_price"):
            micros = int((Decimal(str(usage["total_price"])) * 1_000_000).to_integral_value())
            Stats.incr(f"{PREFIX}.price_micros", count=micros, tags={**tags, "currency": usage.get("currency") or ""})
        if usage.get("elapsed_time") is not None:
            Stats.timing(f"{PREFIX}.run_duration", datetime.timedelta(seconds=float(usage["elapsed_time"])), tags=tags)
        if budget_exceeded:
            Stats.incr(f"{PREFIX}.budget_exceeded", tags=tags)
    except Exception:
        (log or logging.getLogger(__name__)).warning("could not emit Dify usage metrics", exc_info=True)
