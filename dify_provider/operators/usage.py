"""A task's spend and budget, shared by the operators that start Dify runs.

One :class:`UsageAccount` per try: it meters the run (:class:`~dify_provider.client.usage.UsageMeter`),
adds what the task's earlier runs spent (kept in the run record, so a budget holds across
retries), says when the budget is crossed, and at the end reports: XCom ``usage``, one log line,
metrics, and the facts OpenLineage reads.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from dify_provider.client.usage import Budget, Spend, UsageMeter, decimal_text, describe, spend_of
from dify_provider.metrics import emit_usage

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from dify_provider.client.models import StreamEvent
    from dify_provider.operators.run_memory import RunMemory

#: XCom key of a try's spend.
USAGE_XCOM_KEY = "usage"
#: Seconds between writes of the spend so far into the run record while a run goes on.
SAVE_EVERY = 2.0


class BudgetExceededError(AirflowFailException):
    """The task's budget is spent: retrying would spend more, so it fails without retries."""


class UsageAccount:
    """The spend of one try of a task, and the budget it checks it against."""

    def __init__(self, context: Context, memory: RunMemory, budget: Budget, log: logging.Logger | Any) -> None:
        self.context, self.memory, self.budget, self.log = context, memory, budget, log
        self.meter = UsageMeter()
        self.run_id: str | None = None
        self.started = time.time()
        self._earlier = memory.spent()
        self._floor = Spend()
        self._saved_at = 0.0

    # --- before anything starts ----------------------------------------------------------------

    def refuse_if_spent(self, app: str) -> None:
        """A try whose task already spent its budget starts nothing."""
        if self.budget.active and self.budget.exhausted(self._earlier):
            spent = self._earlier
            ti = self.context["ti"]
            emit_usage({}, dag_id=ti.dag_id, task_id=ti.task_id, app=app, budget_exceeded=True, log=self.log)
            raise BudgetExceededError(
                f"budget spent by earlier tries of this task: they spent {_spend_text(spent)}, the budget is "
                f"{self.budget.describe()}; nothing was started. Raise max_total_tokens / max_total_price to let it "
                "spend more."
            )

    def attach(self, run_id: str) -> None:
        """The try's run is known (started, or re-attached from an earlier try)."""
        self.run_id = run_id
        self._earlier = self.memory.spent(besides=run_id)
        recorded = (self.memory.get().get("spend") or {}).get(run_id)
        self._floor = Spend.from_dict(recorded)

    # --- while it runs --------------------------------------------------------------------------

    def see(self, event: StreamEvent) -> str | None:
        """Take a stream event; a reason when the budget is now crossed."""
        return self._check() if self.meter.see(event) else None

    def see_run_total(self, tokens: Any) -> str | None:
        return self._check() if self.meter.see_run_total(tokens) else None

    def this_run(self) -> Spend:
        spend = spend_of(self.meter)
        floor = self._floor
        return Spend(max(spend.tokens, floor.tokens), max(spend.price, floor.price), spend.currency or floor.currency)

    def total(self) -> Spend:
        return self._earlier + self.this_run()

    def _check(self) -> str | None:
        self.save(force=False)
        return self.budget.breach(self.total()) if self.budget.active else None

    def save(self, *, force: bool = True) -> None:
        """Write this run's spend into the record (throttled while the run goes on)."""
        now = time.monotonic()
        if self.run_id is None or (not force and now - self._saved_at < SAVE_EVERY):
            return
        self._saved_at = now
        self.memory.mark(**self.facts())

    def facts(self) -> dict[str, Any]:
        return self.memory.spend_facts(self.run_id, self.this_run()) if self.run_id else {}

    # --- at the end -----------------------------------------------------------------------------

    def usage(self, *, elapsed_time: float | None = None) -> dict[str, Any]:
        usage = self.meter.as_dict()
        usage["elapsed_time"] = round(elapsed_time if elapsed_time is not None else time.time() - self.started, 3)
        usage["try_number"] = int(getattr(self.context.get("ti"), "try_number", 1) or 1)
        earlier = self._earlier
        if earlier.tokens or earlier.price:  # what the task spent in all, when earlier runs spent too
            total = self.total()
            usage["all_tries"] = {"total_tokens": total.tokens, **(
                {"total_price": decimal_text(total.price), "currency": total.currency} if total.price else {})}
        return usage

    def report(self, *, app: str, elapsed_time: float | None = None, budget_exceeded: bool = False) -> dict[str, Any]:
        """Push XCom ``usage``, log the spend, emit the metrics; returns the usage."""
        usage = self.usage(elapsed_time=elapsed_time)
        if self.meter.source == "run record":
            self.log.info("Dify run %s: only its total_tokens is known (the wait was by polling, and a run's record "
                          "has no price or prompt/completion split)", self.run_id)
        elif not self.meter.complete:
            self.log.info("Dify run %s: its stream broke, so the price and the prompt/completion split count only "
                          "the nodes that finished before; total_tokens is the run record's", self.run_id)
        self.log.info("Dify run %s %s", self.run_id, describe(usage))
        ti = self.context["ti"]
        ti.xcom_push(key=USAGE_XCOM_KEY, value=usage)
        self.save()
        emit_usage(usage, dag_id=ti.dag_id, task_id=ti.task_id, app=app, budget_exceeded=budget_exceeded,
                   log=self.log)
        return usage


def _spend_text(spend: Spend) -> str:
    text = f"{spend.tokens:,} tokens"
    return text + (f", {decimal_text(spend.price)} {spend.currency or ''}".rstrip() if spend.price else "")


def lineage_facts(operator: Any, usage: dict[str, Any], status: str | None, run_id: str | None) -> dict[str, Any]:
    """The facts :class:`~dify_provider.lineage.DifyLineageMixin` turns into OpenLineage facets,
    from a run operator's try: where the app lives, what ran, what it spent."""
    from dify_provider.lineage import lineage_namespace

    try:
        settings = operator.hook.settings
        namespace, app_id = lineage_namespace(settings.config.base_url), settings.app_id
    except Exception:  # lineage never fails a task
        namespace, app_id = None, None
    return {
        "namespace": namespace, "app": getattr(operator, "_app_name", None) or app_id or operator.dify_conn_id,
        "app_id": app_id, "app_mode": getattr(operator, "_mode", None) or operator.app_mode, "run_id": run_id,
        "kind": "workflow_run" if operator._dify_run_id else "message", "status": status,
        **{key: usage.get(key) for key in ("total_tokens", "prompt_tokens", "completion_tokens", "total_price",
                                           "currency", "elapsed_time")},
        "trace_id": getattr(operator, "_trace_id", None),
    }
