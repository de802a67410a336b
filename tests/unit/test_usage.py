"""The usage meter and budgets of the client (no Airflow): what Dify's events say, added up."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from dify_provider.client import errors as e
from dify_provider.client.chat.events import parse_chat_event
from dify_provider.client.models import parse_event
from dify_provider.client.usage import Budget, Spend, UsageMeter, decimal_text, describe


def node(node_id: str, tokens: int | None, price: Any = None, currency: str | None = "USD", *,
         usage: dict[str, Any] | None = None, node_type: str = "llm") -> Any:
    metadata = None if tokens is None else {"total_tokens": tokens, "total_price": price, "currency": currency}
    outputs = {"text": "x", **({"usage": usage} if usage else {})}
    return parse_event({"event": "node_finished", "task_id": "t", "workflow_run_id": "r", "data": {
        "node_id": node_id, "title": node_id.title(), "node_type": node_type, "elapsed_time": 0.5,
        "execution_metadata": metadata, "outputs": outputs, "process_data": None}})


def finished(tokens: int) -> Any:
    return parse_event({"event": "workflow_finished", "task_id": "t", "workflow_run_id": "r",
                        "data": {"id": "r", "status": "succeeded", "total_tokens": tokens}})


def message_end(**usage: Any) -> Any:
    return parse_chat_event({"event": "message_end", "task_id": "t", "message_id": "m", "id": "m",
                             "metadata": {"usage": usage}})


def test_nodes_add_up_in_decimal() -> None:
    meter = UsageMeter()
    assert meter.see(node("a", 10, "0.1", usage={"prompt_tokens": 7, "completion_tokens": 3}))
    assert meter.see(node("b", 20, "0.2", usage={"prompt_tokens": 15, "completion_tokens": 5}))
    assert not meter.see(node("start", None, node_type="start"))  # execution_metadata null: no spend
    assert not meter.see(node("code", 0, "0", node_type="code"))
    assert meter.see(finished(30)) is False  # the run's total agrees: nothing grew
    usage = meter.as_dict()
    assert usage["total_price"] == "0.3"  # 0.1 + 0.2 as floats would be 0.30000000000000004
    assert (usage["total_tokens"], usage["prompt_tokens"], usage["completion_tokens"]) == (30, 22, 8)
    assert [n["node_id"] for n in usage["nodes"]] == ["a", "b"]
    assert (usage["source"], meter.complete) == ("stream", True)
    assert describe(usage) == "used 30 tokens (22 prompt + 8 completion), 0.3 USD, in 2 nodes"


def test_what_no_source_said_is_left_out() -> None:
    meter = UsageMeter()
    meter.see(node("a", 10, "0.001"))  # no split in its outputs
    meter.see(finished(40))  # the run counted more than the nodes seen (e.g. an embedding)
    usage = meter.as_dict()
    assert usage["total_tokens"] == 40
    assert "prompt_tokens" not in usage
    polled = UsageMeter()
    assert polled.see_run_total(55)
    assert not polled.see_run_total(50)  # never goes down
    assert polled.as_dict() == {"total_tokens": 55, "nodes": [], "source": "run record"}
    assert describe(polled.as_dict()) == "used 55 tokens"


@pytest.mark.parametrize("price", ["1.2E-7", 1.2e-7, "0.00000012"])
def test_prices_in_any_form_come_out_plain(price: Any) -> None:
    meter = UsageMeter()
    meter.see(node("a", 1, price))
    assert meter.as_dict()["total_price"] == "0.00000012"


@pytest.mark.parametrize("price", ["abc", -1, True, "NaN", "Infinity"])
def test_nonsense_prices_are_ignored(price: Any) -> None:
    meter = UsageMeter()
    meter.see(node("a", 5, price))
    assert meter.total_price is None
    assert meter.total_tokens == 5


def test_two_currencies_have_no_total_price() -> None:
    meter = UsageMeter()
    meter.see(node("a", 5, "0.1", "USD"))
    meter.see(node("b", 5, "0.7", "RMB"))
    usage = meter.as_dict()
    assert "total_price" not in usage
    assert usage["currencies"] == ["RMB", "USD"]


def test_message_end_gives_the_split_and_the_price() -> None:
    meter = UsageMeter()
    assert meter.see(message_end(prompt_tokens=12, completion_tokens=8, total_tokens=20, total_price="0.0000300",
                                 currency="USD"))
    usage = meter.as_dict()
    assert (usage["total_tokens"], usage["prompt_tokens"], usage["completion_tokens"]) == (20, 12, 8)
    assert (usage["total_price"], usage["currency"], usage["source"]) == ("0.00003", "USD", "stream")


def test_cut_stream_is_not_complete() -> None:
    meter = UsageMeter()
    meter.see(node("a", 5, "0.1"))
    meter.see_run_total(9)
    assert (meter.complete, meter.source, meter.total_tokens) == (False, "stream, then run record", 9)


def test_budget_of_checks_its_arguments() -> None:
    budget = Budget.of(1000, "0.50 usd")
    assert (budget.max_total_tokens, budget.max_total_price, budget.currency) == (1000, Decimal("0.50"), "USD")
    assert budget.describe() == "1,000 tokens and 0.5 USD"
    assert not Budget.of().active
    for tokens in (0, -5, 2.0, True, "10"):
        with pytest.raises(e.DifyConfigError, match="max_total_tokens"):
            Budget.of(tokens)
    for price in ("0.50", 0.5, Decimal("0.5"), "USD 0.50", "1,00 EUR", "0.00 USD"):
        with pytest.raises(e.DifyConfigError, match="max_total_price"):
            Budget.of(None, price)


def test_budget_breach_and_exhaustion() -> None:
    budget = Budget.of(100, "0.01 USD")
    assert budget.breach(Spend(100, Decimal("0.01"), "USD")) is None  # at the budget: within it
    assert budget.exhausted(Spend(100, Decimal("0"), "USD"))  # but nothing is left for a new try
    assert "101 tokens spent, over the budget of 100" in str(budget.breach(Spend(101)))
    assert "0.011 USD spent, over the budget of 0.01 USD" in str(budget.breach(Spend(1, Decimal("0.011"), "USD")))
    assert "cannot be compared" in str(budget.breach(Spend(1, Decimal("0.001"), "EUR")))
    assert not budget.exhausted(Spend(99, Decimal("0.009"), "USD"))


def test_spend_round_trips_through_the_record() -> None:
    spend = Spend(12, Decimal("0.000012"), "USD")
    assert Spend.from_dict(spend.as_dict()) == spend
    assert Spend.from_dict(None) == Spend()
    assert Spend.from_dict({"tokens": "x", "price": "bad"}) == Spend()
    assert decimal_text(Decimal("10")) == "10"
    assert decimal_text(Decimal("1E+1")) == "10"
