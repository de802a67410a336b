"""A Dify workflow with an approval step, answered in Airflow (Airflow 3.1+).

The ``draft`` task runs a workflow whose Human Input node ("Review the draft", delivered to the
web app) pauses the run. With ``human_input="airflow"`` the form becomes this task's required
action: open **Browse > Required Actions** (or the task instance's "Required Actions" tab), fill
its fields and press one of its buttons. The answer is posted to Dify, the run goes on along the
branch of that button, and ``publish`` receives the run's outputs. Who answered, what and when:
XCom ``human_input``.

Without an answer before the form expires, Dify takes the node's timeout branch and the task
goes on waiting for the run.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import dag, task

from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.version_compat import REQUIRED_ACTIONS


@dag(
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["dify", "example"],
)
def example_dify_human_input() -> None:
    draft = DifyRunWorkflowOperator(
        task_id="draft",
        inputs={"text": "the quarterly report"},
        # Airflow < 3.1 has no required actions: there, someone answers the form in Dify.
        human_input="airflow" if REQUIRED_ACTIONS else "wait",
    )

    @task
    def publish(outputs: dict[str, Any], ti: Any = None) -> str:
        answers = ti.xcom_pull(task_ids="draft", key="human_input") or []
        for answer in answers:
            who = (answer.get("responded_by") or {}).get("name", "nobody")
            print(f"{answer['node']}: {answer['outcome']} {answer.get('action_title', '')} by {who}")
        return str(outputs.get("branch", ""))

    publish(draft.output)


example_dify_human_input()
