"""A Dify chatflow answers a list of questions: one mapped task per question, in parallel.

Each ``ask`` task sends one message with ``DifyChatOperator`` (connection ``dify_chat``: the
chatflow app's API key) and returns the answer; its XComs hold the message and conversation ids,
the chatflow's run id, the usage Dify reported (tokens, price, currency, per node) and the
citations (``retriever_resources``) when the app retrieves from a knowledge base. ``report``
prints each answer with its citations and totals the usage of the batch.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import dag, task

from dify_provider.operators.chat import DifyChatOperator

QUESTIONS = [
    "What is our refund policy?",
    "How do I reset my password?",
    "Which plans include single sign-on?",
]


@dag(
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["dify", "example"],
)
def example_dify_chat() -> None:
    ask = DifyChatOperator.partial(task_id="ask", dify_conn_id="dify_chat", retries=2).expand(query=QUESTIONS)

    @task
    def report(answers: list[str], ti: Any = None) -> dict[str, Any]:
        total_tokens, total_price, currency = 0, Decimal("0"), ""
        for index, answer in enumerate(answers):
            usage = ti.xcom_pull(task_ids="ask", key="usage", map_indexes=index) or {}
            citations = ti.xcom_pull(task_ids="ask", key="retriever_resources", map_indexes=index) or []
            print(f"Q{index + 1}: {QUESTIONS[index]}\nA{index + 1}: {answer}")
            for cite in citations:
                print(f"    [{cite.get('position')}] {cite.get('document_name')}: {cite.get('content', '')[:80]}")
            total_tokens += int(usage.get("total_tokens") or 0)
            total_price += Decimal(str(usage.get("total_price") or "0"))
            currency = usage.get("currency") or currency
        print(f"{len(answers)} answers, {total_tokens} tokens, {total_price} {currency}")
        return {"answers": len(answers), "total_tokens": total_tokens, "total_price": str(total_price),
                "currency": currency}

    report(ask.output)


example_dify_chat()
