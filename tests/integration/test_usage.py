"""Usage, budgets and trace ids of the run operators, through real Airflow (dag.test) against the
emulator over loopback. Spend grows node by node (``NodeSpec.tokens``/``price``); a held node
keeps the run going while the test checks that the budget stopped it, so nothing sleeps."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import DAG, AirflowException
from airflow_harness import run_dag
from dify_helpers import FailAfterSuccess

from dify_provider.operators.chat import DifyChatOperator
from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.testing import DifyEmulator, Fault, NodeSpec, Scenario

pytestmark = pytest.mark.airflow
START = datetime(2024, 1, 1)

#: Two LLM nodes, 100 tokens and 0.0002 USD each, then an end node.
SPENDING = (
    NodeSpec(id="start", type="start", title="Start", tokens=0),
    NodeSpec(id="draft", type="llm", title="Draft", tokens=100, price="0.0002"),
    NodeSpec(id="review", type="llm", title="Review", tokens=100, price="0.0002"),
    NodeSpec(id="end", type="end", title="End", tokens=0),
)
#: The same, but the run stays in a third LLM node until the test lets it go: a budget crossed at
#: ``review`` must stop it there.
HELD = (*SPENDING[:3], NodeSpec(id="polish", type="llm", title="Polish", tokens=100, hold=True), SPENDING[3])


def op_dag(dag_id: str, **kwargs: Any) -> DAG:
    kwargs.setdefault("inputs", {"text": "hello"})
    kwargs.setdefault("poll_interval", 0.05)
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        DifyRunWorkflowOperator(task_id="run", **kwargs)
    return dag


def starts(emu: DifyEmulator) -> int:
    return len(emu.requests_to("POST", "/workflows/run"))


def stops(emu: DifyEmulator) -> int:
    return len(emu.requests_to("POST", re.compile(r"/stop$")))


def test_streamed_run_reports_every_spending_node(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(nodes=SPENDING))
    result = run_dag(op_dag(dag_id))
    assert result.state == "success", result.log("run")
    usage = result.xcom("run", key="usage")
    assert {k: usage[k] for k in ("total_tokens", "prompt_tokens", "completion_tokens", "currency", "source")} == {
        "total_tokens": 200, "prompt_tokens": 150, "completion_tokens": 50, "currency": "USD", "source": "stream"}
    assert usage["total_price"] == "0.0004"  # a decimal string: summed as Decimal, no float cents lost
    nodes = [(n["node_id"], n["title"], n["node_type"], n["total_tokens"], n["total_price"]) for n in usage["nodes"]]
    assert nodes == [("draft", "Draft", "llm", 100, "0.0002"), ("review", "Review", "llm", 100, "0.0002")]
    assert all(n["elapsed_time"] >= 0 for n in usage["nodes"])
    assert (usage["try_number"], result.xcom("run", key="total_tokens")) == (1, 200)
    assert "used 200 tokens (150 prompt + 50 completion), 0.0004 USD, in 2 nodes" in result.log("run")
    assert "Dify run link" not in usage  # the link is its own XCom
    assert result.xcom("run", key="dify_run_url")


def test_deferred_run_reports_only_what_its_record_says(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(nodes=SPENDING))
    result = run_dag(op_dag(dag_id, deferrable=True))
    assert result.state == "success", result.log("run")
    usage = result.xcom("run", key="usage")
    assert (usage["total_tokens"], usage["source"], usage["nodes"]) == (200, "run record", [])
    assert not {"total_price", "currency", "prompt_tokens", "completion_tokens"} & usage.keys()  # never made up
    assert "only its total_tokens is known" in result.log("run")


def test_broken_stream_keeps_the_nodes_it_saw(dify_emulator: DifyEmulator, dag_id: str) -> None:
    # workflow_started, then start, draft: cut before review finishes; the wait goes on by polling.
    dify_emulator.script("echo", Scenario(nodes=SPENDING))
    dify_emulator.inject(Fault.cut_stream(after_events=5, endpoint="POST /workflows/run"))
    result = run_dag(op_dag(dag_id))
    assert result.state == "success", result.log("run")
    usage = result.xcom("run", key="usage")
    assert usage["total_tokens"] == 200  # the run record's
    assert [n["node_id"] for n in usage["nodes"]] == ["draft"]
    assert (usage["total_price"], usage["source"]) == ("0.0002", "stream, then run record")
    assert "prompt_tokens" not in usage  # the split covers 100 of 200 tokens: left out
    assert "count only the nodes that finished before" in result.log("run")
    assert starts(dify_emulator) == 1


@pytest.mark.parametrize(("budget", "says"), [
    ({"max_total_tokens": 150}, "200 tokens spent, over the budget of 150 (max_total_tokens)"),
    ({"max_total_price": "0.0003 USD"}, "0.0004 USD spent, over the budget of 0.0003 USD (max_total_price)"),
], ids=["tokens", "price"])
def test_budget_stops_a_streaming_run_and_fails_without_retries(dify_emulator: DifyEmulator, dag_id: str,
                                                                budget: dict[str, Any], says: str) -> None:
    dify_emulator.script("echo", Scenario(nodes=HELD))
    result = run_dag(op_dag(dag_id, retries=2, retry_delay=timedelta(0), **budget))
    assert result.state == "failed"
    assert result.ti("run").try_number == 1  # no retry: it would spend more
    (run,) = dify_emulator.runs.values()
    log = result.log("run")
    assert says in log
    assert f"Dify run {run.id} stopped" in log
    assert (starts(dify_emulator), stops(dify_emulator)) == (1, 1)
    dify_emulator.wait_for(run.id, status="stopped")  # in the held node, before it could spend more
    assert result.xcom("run", key="usage")["total_tokens"] == 200


def test_budget_stops_a_polled_run(dify_emulator: DifyEmulator, dag_id: str) -> None:
    """A server that updates a running run's total_tokens (1.13.2 does not): each poll checks it."""
    dify_emulator.configure(live_run_totals=True)
    dify_emulator.script("echo", Scenario(nodes=HELD))
    dify_emulator.inject(Fault.cut_stream(after_events=2, endpoint="POST /workflows/run"))  # before any spend
    result = run_dag(op_dag(dag_id, max_total_tokens=150))
    assert result.state == "failed"
    (run,) = dify_emulator.runs.values()
    assert "200 tokens spent, over the budget of 150" in result.log("run")
    assert (starts(dify_emulator), stops(dify_emulator)) == (1, 1)
    dify_emulator.wait_for(run.id, status="stopped")  # the stop's effect, which the emulator applies on its loop
    assert result.xcom("run", key="usage")["source"] == "stream, then run record"


def test_a_budget_keeps_a_deferrable_task_on_the_stream(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(nodes=HELD))
    result = run_dag(op_dag(dag_id, deferrable=True, max_total_tokens=150))
    assert result.state == "failed"
    log = result.log("run")
    assert "waiting here, on the stream, not in the triggerer" in log
    assert "DEFERRED" not in log
    assert stops(dify_emulator) == 1


def test_retry_is_refused_when_earlier_tries_spent_the_budget(dify_emulator: DifyEmulator, dag_id: str) -> None:
    # Try 1's run fails after spending 200 tokens (retryable); try 2 must not start another.
    dify_emulator.script("echo", Scenario(nodes=SPENDING, status="failed"))
    result = run_dag(op_dag(dag_id, retries=3, retry_delay=timedelta(0), max_total_tokens=200))
    assert result.state == "failed"
    assert result.ti("run").try_number == 2
    assert starts(dify_emulator) == 1
    assert ("budget spent by earlier tries of this task: they spent 200 tokens, 0.0004 USD, the budget is 200 tokens; "
            "nothing was started") in result.log("run", try_number=2)


def test_a_retry_within_the_budget_counts_what_earlier_tries_spent(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(nodes=SPENDING, status="failed"), Scenario(nodes=SPENDING))
    result = run_dag(op_dag(dag_id, retries=1, retry_delay=timedelta(0), max_total_tokens=500))
    assert result.state == "success", result.log("run", try_number=2)
    usage = result.xcom("run", key="usage")
    assert (usage["try_number"], usage["total_tokens"]) == (2, 200)
    assert usage["all_tries"] == {"total_tokens": 400, "total_price": "0.0008", "currency": "USD"}
    assert starts(dify_emulator) == 2


def test_chat_budget_fails_the_task_at_message_end(dify_emulator: DifyEmulator, dag_id: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A chat app reports usage only in ``message_end``: the budget fails the task then (nothing is
    left to stop) and refuses the retries."""
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_BASIC_CHAT", dify_emulator.airflow_connection_json("basic-chat"))
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        DifyChatOperator(task_id="ask", query="hello there", dify_conn_id="dify_basic_chat", max_total_tokens=5,
                         retries=1, retry_delay=timedelta(0))
    result = run_dag(dag)
    assert result.state == "failed"
    assert result.ti("ask").try_number == 1
    assert "over the budget of 5 (max_total_tokens)" in result.log("ask")
    assert result.xcom("ask", key="usage")["total_tokens"] > 5


@pytest.mark.parametrize(("kwargs", "field", "says"), [
    ({"max_total_tokens": 0}, "max_total_tokens", "positive whole number"),
    ({"max_total_tokens": 1.5}, "max_total_tokens", "positive whole number"),
    ({"max_total_price": 0.5}, "max_total_price", "a float would lose cents"),
    ({"max_total_price": "0.50"}, "max_total_price", "e.g. '0.50 USD'"),
    ({"max_total_price": "-1 USD"}, "max_total_price", "e.g. '0.50 USD'"),
    ({"max_total_price": "0 USD"}, "max_total_price", "more than zero"),
])
def test_bad_budgets_are_refused_when_the_dag_is_parsed(kwargs: dict[str, Any], field: str, says: str) -> None:
    for cls in (DifyRunWorkflowOperator, DifyChatOperator):
        with pytest.raises(ValueError, match=field) as raised:
            cls(task_id="t", **kwargs)
        assert says in str(raised.value)


def test_every_request_carries_the_trace_id_in_xcom(dify_emulator: DifyEmulator, dag_id: str) -> None:
    result = run_dag(op_dag(dag_id))
    assert result.state == "success"
    trace_id = result.xcom("run", key="trace_id")
    assert len(trace_id) == 32
    int(trace_id, 16)  # W3C trace-id form: what every tracing backend accepts
    sent = dify_emulator.requests
    assert len(sent) >= 2
    assert {r.headers.get("x-trace-id") for r in sent} == {trace_id}
    assert f"Dify trace id {trace_id}" in result.log("run")


def test_retries_get_their_own_trace_id(dify_emulator: DifyEmulator, dag_id: str) -> None:
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        FailAfterSuccess(task_id="run", inputs={"text": "x"}, retries=1, retry_delay=timedelta(0))
    result = run_dag(dag)
    assert result.state == "success"
    first, second = (r.headers["x-trace-id"] for r in dify_emulator.requests_to("POST", "/workflows/run"))
    assert first != second
    assert Decimal(0) <= Decimal(result.xcom("run", key="usage")["total_price"])


def test_inside_an_opentelemetry_span_dify_gets_its_trace(dify_emulator: DifyEmulator, dag_id: str) -> None:
    """Airflow's task spans (or a DAG author's own): Dify's trace id is the span's, and
    ``traceparent`` goes along, so both traces share one id."""
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("dify-test")  # a local provider: the global one is untouched
    seen: dict[str, str] = {}

    class InSpan(DifyRunWorkflowOperator):
        def execute(self, context: Any) -> Any:
            with tracer.start_as_current_span("pipeline-step") as span:
                seen["trace_id"] = f"{span.get_span_context().trace_id:032x}"
                seen["span_id"] = f"{span.get_span_context().span_id:016x}"
                seen["flags"] = f"{int(span.get_span_context().trace_flags):02x}"
                return super().execute(context)

    with DAG(dag_id, schedule=None, start_date=START) as dag:
        InSpan(task_id="run", inputs={"text": "x"})
    result = run_dag(dag)
    assert result.state == "success"
    (start,) = dify_emulator.requests_to("POST", "/workflows/run")
    assert start.headers["x-trace-id"] == seen["trace_id"] == result.xcom("run", key="trace_id")
    assert start.headers["traceparent"] == f"00-{seen['trace_id']}-{seen['span_id']}-{seen['flags']}"


def test_a_crashed_try_s_spend_counts_and_its_run_is_stopped_by_the_refusal(dify_emulator: DifyEmulator,
                                                                            dag_id: str) -> None:
    """Try 1 dies mid-stream (not from the budget) once its run spent the whole budget (200
    tokens, not over it); the spend is saved however the try ended (the throttled save had only the
    first 100), so try 2 refuses to go on, and stops the run try 1 left going."""

    dify_emulator.script("echo", Scenario(nodes=HELD))

    class Dies(DifyRunWorkflowOperator):
        def _on_stream_event(self, t: Any, stream: Any) -> None:
            if t.context["ti"].try_number == 1 and t.account.meter.total_tokens >= 200:
                raise AirflowException("the worker lost something, not the budget")

    with DAG(dag_id, schedule=None, start_date=START) as dag:
        Dies(task_id="run", inputs={"text": "x"}, max_total_tokens=200, retries=1, retry_delay=timedelta(0))
    result = run_dag(dag)
    assert result.state == "failed"
    assert result.ti("run").try_number == 2
    log = result.log("run", try_number=2)
    assert "they spent 200 tokens" in log
    (run,) = dify_emulator.runs.values()
    assert (starts(dify_emulator), stops(dify_emulator)) == (1, 1)
    dify_emulator.wait_for(run.id, status="stopped")  # the stop's effect, which the emulator applies on its loop
