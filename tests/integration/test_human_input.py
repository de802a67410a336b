"""human_input="airflow" through real Airflow: a Dify run paused on a form becomes the task's
required action; a person answers it through Airflow's REST API (what the Required Actions view
calls) while ``dag.test()`` runs; the answer reaches the emulator over loopback."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import DAG
from airflow_harness import run_dag
from hitl_helpers import FORM_READS, person, respond

from dify_provider.operators.chat import DifyChatOperator
from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.testing import DifyEmulator, Scenario
from dify_provider.testing.forms import FormActionSpec, FormInputSpec, FormSpec
from dify_provider.version_compat import AIRFLOW_V_3_3_PLUS, REQUIRED_ACTIONS

pytestmark = [pytest.mark.airflow, pytest.mark.skipif(not REQUIRED_ACTIONS, reason="required actions: Airflow 3.1+")]
START = datetime(2024, 1, 1)

REVIEW = FormSpec(
    node_id="review", title="Review the draft",
    content="Check the summary.\n\n{{#$output.comment#}}",
    inputs=(FormInputSpec(type="text_input", name="headline", default="Draft"),
            FormInputSpec(type="paragraph", name="comment"),
            FormInputSpec(type="select", name="tone", options=("plain", "formal"))),
    actions=(FormActionSpec(id="approve", title="Approve", button_style="primary"),
             FormActionSpec(id="reject", title="Reject")),
    end_on=("reject",),
)
FINAL = FormSpec(node_id="final", title="Final check", inputs=(),
                 actions=(FormActionSpec(id="publish", title="Publish", button_style="primary"),))
ANSWER = {"headline": "Q3 numbers", "comment": "ship it", "tone": "formal"}


@pytest.fixture
def emu(dify_emulator: DifyEmulator) -> DifyEmulator:
    dify_emulator.configure(server_version="1.14.0")  # the service form route and the events API
    return dify_emulator


def hitl_dag(dag_id: str, cls: type = DifyRunWorkflowOperator, **kwargs: Any) -> DAG:
    kwargs.setdefault("poll_interval", 0.05)
    if issubclass(cls, DifyRunWorkflowOperator):
        kwargs.setdefault("inputs", {"text": "hello"})
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        cls(task_id="run", human_input="airflow", **kwargs)
    return dag


def answer(option: str, params: dict[str, Any] | None = None) -> Any:
    return lambda detail: respond(detail["dag_id"], detail["run_id"], "run", option, params)


def form_posts(emu: DifyEmulator) -> list[Any]:
    """Answers that reached a form (not the 404 of a route a 1.13 server lacks)."""
    return [r for r in emu.requests_to("POST", "") if "/form/human_input/" in r.path and r.status != 404]


def body(request: Any) -> dict[str, Any]:
    return request.body if isinstance(request.body, dict) else json.loads(request.body)


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferrable"])
def test_approve_in_airflow_reaches_dify(emu: DifyEmulator, dag_id: str, deferrable: bool) -> None:
    emu.script("echo", Scenario(status="paused", forms=(REVIEW,), after_resume="succeeded"))
    with person(emu, dag_id, "run", [answer("Approve", ANSWER)]) as seen:
        result = run_dag(hitl_dag(dag_id, deferrable=deferrable))
    assert result.state == "success", result.log("run")
    (detail,) = seen
    assert detail["subject"] == "Review the draft"
    assert detail["options"] == ["Approve", "Reject"]
    assert detail["body"] == "Check the summary.\n\n**[comment]**"
    params = detail["params"]
    assert set(params) == {"headline", "comment", "tone"}
    assert params["headline"]["value"] == "Draft"
    assert params["tone"]["schema"]["enum"] == ["plain", "formal"]
    assert params["tone"]["value"] == "plain"  # a choice is never empty
    assert params["comment"]["schema"]["format"] == "multiline"
    (run,) = emu.runs.values()
    outputs = result.xcom("run")
    assert outputs["human_input"]["review"] == {"action": "approve", "action_text": "Approve", "inputs": ANSWER}
    assert outputs["branch"] == "approve"
    (post,) = form_posts(emu)
    sent = body(post)
    assert (sent["action"], sent["inputs"], sent["user"]) == ("approve", ANSWER, run.user)
    (entry,) = result.xcom("run", key="human_input")
    assert entry["outcome"] == "answered"
    assert entry["action"] == "approve"
    assert entry["inputs"] == ANSWER
    assert entry["node"] == "Review the draft"
    assert entry["responded_by"]["name"]
    log = result.log("run")
    assert "asked in Airflow's Required Actions" in log
    assert "Answered Dify form 'Review the draft'" in log
    # The token is a capability (1.13's web route takes it without a key): it is nowhere to see.
    token = post.path.rsplit("/", 1)[-1]
    assert token not in log
    assert token not in json.dumps(result.xcom("run", key="human_input"))
    assert token not in json.dumps(detail)
    assert emu.api_key("echo") not in json.dumps(detail)
    assert len(emu.requests_to("POST", "/workflows/run")) == 1


def test_reject_takes_the_reject_branch(emu: DifyEmulator, dag_id: str) -> None:
    emu.script("echo", Scenario(status="paused", forms=(REVIEW, FINAL), after_resume="succeeded"))
    with person(emu, dag_id, "run", [answer("Reject", {**ANSWER, "comment": None})]):
        result = run_dag(hitl_dag(dag_id))
    assert result.state == "success", result.log("run")
    outputs = result.xcom("run")
    assert outputs["branch"] == "reject"
    assert "final" not in outputs["human_input"]
    (post,) = form_posts(emu)
    assert body(post)["inputs"]["comment"] == ""  # a field left empty is sent as ""


def test_a_second_form_alike_is_a_second_required_action(emu: DifyEmulator, dag_id: str) -> None:
    again = REVIEW.model_copy(update={"node_id": "review_again", "end_on": ()})  # a loop asking the same
    emu.script("echo", Scenario(status="paused", forms=(REVIEW.model_copy(update={"end_on": ()}), again),
                                after_resume="succeeded"))
    with person(emu, dag_id, "run", [answer("Approve", ANSWER), answer("Reject", {**ANSWER, "tone": "plain"})]) as seen:
        result = run_dag(hitl_dag(dag_id))
    assert result.state == "success", result.log("run")
    assert [d["subject"] for d in seen] == ["Review the draft", "Review the draft"]
    outputs = result.xcom("run")
    assert outputs["human_input"]["review"]["action"] == "approve"
    assert outputs["human_input"]["review_again"]["inputs"]["tone"] == "plain"
    assert [e["action"] for e in result.xcom("run", key="human_input")] == ["approve", "reject"]
    assert len(form_posts(emu)) == 2
    assert len(emu.requests_to("POST", "/workflows/run")) == 1


def test_a_second_different_form_is_left_to_dify(emu: DifyEmulator, dag_id: str) -> None:
    """Airflow keeps one required action per task instance: the second form would show with the
    first one's title and buttons, so it is answered in Dify (here: the emulator's web app)."""
    emu.script("echo", Scenario(status="paused", forms=(REVIEW, FINAL), after_resume="succeeded"))

    def first(detail: dict[str, Any]) -> None:
        respond(detail["dag_id"], detail["run_id"], "run", "Approve", ANSWER)
        run = emu.wait_for(lambda r: r.form_node_id == "final", timeout=60)
        emu.wait_for_requests("GET", FORM_READS, count=2, timeout=60)  # the task read it, and left it
        emu.resume(run.id, "publish", {})

    with person(emu, dag_id, "run", [first]):
        result = run_dag(hitl_dag(dag_id))
    assert result.state == "success", result.log("run")
    outputs = result.xcom("run")
    assert set(outputs["human_input"]) == {"review", "final"}
    assert outputs["branch"] == "publish"
    assert [e["outcome"] for e in result.xcom("run", key="human_input")] == ["answered", "left_to_dify"]
    assert "paused again, on 'Final check'" in result.log("run")
    assert len(form_posts(emu)) == 1


def test_a_form_answered_in_dify_first_is_not_an_error(emu: DifyEmulator, dag_id: str) -> None:
    emu.script("echo", Scenario(status="paused", forms=(REVIEW,), after_resume="succeeded"))

    def race(detail: dict[str, Any]) -> None:
        (run,) = emu.runs.values()
        emu.resume(run.id, "approve", ANSWER)  # someone answers in Dify's web app first
        respond(detail["dag_id"], detail["run_id"], "run", "Reject", ANSWER)

    with person(emu, dag_id, "run", [race]):
        result = run_dag(hitl_dag(dag_id))
    assert result.state == "success", result.log("run")
    assert result.xcom("run")["branch"] == "approve"
    (entry,) = result.xcom("run", key="human_input")
    assert entry["outcome"] == "answered_in_dify"
    assert entry["action"] == "reject"
    assert "the form was answered in Dify first" in result.log("run")


def test_an_expired_form_lets_the_run_take_its_timeout_branch(emu: DifyEmulator, dag_id: str) -> None:
    emu.script("echo", Scenario(status="paused", forms=(REVIEW,), after_resume="succeeded"))

    def too_late(detail: dict[str, Any]) -> None:
        (run,) = emu.runs.values()
        emu.expire_form(run.id)
        respond(detail["dag_id"], detail["run_id"], "run", "Approve", ANSWER)

    with person(emu, dag_id, "run", [too_late]):
        result = run_dag(hitl_dag(dag_id))
    assert result.state == "success", result.log("run")
    assert result.xcom("run")["branch"] == "timeout"
    (entry,) = result.xcom("run", key="human_input")
    assert entry["outcome"] == "expired"


def test_a_retry_after_the_answer_was_posted_posts_nothing_twice(emu: DifyEmulator, dag_id: str) -> None:
    emu.script("echo", Scenario(status="paused", forms=(REVIEW,), after_resume="succeeded"))
    with person(emu, dag_id, "run", [answer("Approve", ANSWER)]):
        result = run_dag(hitl_dag(dag_id, cls=CrashAfterAnswer, retries=1, retry_delay=timedelta(0)))
    assert result.state == "success", result.log("run")
    assert len(form_posts(emu)) == 1
    assert len(emu.requests_to("POST", "/workflows/run")) == 1
    assert [e["outcome"] for e in result.xcom("run", key="human_input")] == ["answered"]


def test_an_answer_dify_refuses_is_asked_again_in_the_next_try(emu: DifyEmulator, dag_id: str) -> None:
    emu.script("echo", Scenario(status="paused", forms=(REVIEW,), after_resume="succeeded"))
    refused = {**ANSWER, "tone": "loud"}  # not among the select's options: Dify answers 400 invalid_form_data
    with person(emu, dag_id, "run", [answer("Approve", refused), answer("Approve", ANSWER)]) as seen:
        result = run_dag(hitl_dag(dag_id, retries=1, retry_delay=timedelta(0)))
    assert result.state == "success", result.log("run")
    assert [d["subject"] for d in seen] == ["Review the draft", "Review the draft"]
    # 3.3 posts it and Dify refuses it; 3.1-3.2's HITLTrigger already refuses it against the select's enum.
    refusal = "Dify refused the answer to" if AIRFLOW_V_3_3_PLUS else "was refused by Airflow"
    assert refusal in result.log("run", try_number=1)
    assert "the next try of this task asks it again" in result.log("run", try_number=1)
    assert result.xcom("run")["human_input"]["review"]["inputs"]["tone"] == "formal"
    assert [e["outcome"] for e in result.xcom("run", key="human_input")] == ["answered"]
    assert len(emu.requests_to("POST", "/workflows/run")) == 1


class CrashAfterAnswer(DifyRunWorkflowOperator):
    """The worker dies right after the answer reached Dify (try 1 only)."""

    def _until_resumed(self, t: Any, run_id: str, tries: int = 10) -> None:
        if t.context["ti"].try_number == 1:
            raise RuntimeError("worker lost after posting the answer")
        super()._until_resumed(t, run_id, tries)


def test_an_email_form_is_waited_on_like_wait(emu: DifyEmulator, dag_id: str) -> None:
    emu.script("echo", Scenario(status="paused", forms=(REVIEW.model_copy(update={"delivery": "email"}),),
                                after_resume="succeeded"))

    def answer_in_dify() -> None:
        emu.wait_for_requests("GET", "/events", count=1, timeout=60)
        (run,) = emu.runs.values()
        emu.resume(run.id, "approve", ANSWER)

    thread = threading.Thread(target=answer_in_dify, daemon=True)
    thread.start()
    result = run_dag(hitl_dag(dag_id))
    thread.join(timeout=60)
    assert result.state == "success", result.log("run")
    assert "is not delivered to the web app" in result.log("run")
    assert not form_posts(emu)


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferrable"])
def test_dify_113_is_answered_through_its_web_route(dify_emulator: DifyEmulator, dag_id: str,
                                                    deferrable: bool) -> None:
    dify_emulator.script("echo", Scenario(status="paused", forms=(REVIEW,), after_resume="succeeded"))
    with person(dify_emulator, dag_id, "run", [answer("Approve", ANSWER)]):
        result = run_dag(hitl_dag(dag_id, deferrable=deferrable))
    assert result.state == "success", result.log("run")
    (post,) = form_posts(dify_emulator)
    assert post.path.startswith("/api/form/human_input/")
    assert "user" not in body(post)
    if deferrable:
        assert "waiting on the run's stream, not in the triggerer, until the run pauses" in result.log("run")


def test_a_chatflow_pause_is_answered_in_airflow(emu: DifyEmulator, dag_id: str) -> None:
    emu.script("chat", Scenario(status="paused", forms=(REVIEW,), after_resume="succeeded"))
    with person(emu, dag_id, "run", [answer("Approve", ANSWER)]):
        result = run_dag(hitl_dag(dag_id, cls=DifyChatOperator, query="summarise", dify_conn_id="dify_chat"))
    assert result.state == "success", result.log("run")
    (entry,) = result.xcom("run", key="human_input")
    assert entry["outcome"] == "answered"
    assert isinstance(result.xcom("run"), str)


def test_the_example_dag_is_answered_and_publishes(emu: DifyEmulator) -> None:
    from test_examples import load_example

    emu.script("echo", Scenario(status="paused", forms=(REVIEW,), after_resume="succeeded"))
    with person(emu, "example_dify_human_input", "draft", [
        lambda d: respond(d["dag_id"], d["run_id"], "draft", "Approve", ANSWER),
    ]):
        result = run_dag(load_example("example_dify_human_input"))
    assert result.states == {"draft": "success", "publish": "success"}, result.log("draft")
    assert result.xcom("publish") == "approve"
