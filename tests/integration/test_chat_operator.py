"""DifyChatOperator through real Airflow (dag.test) against the emulator over loopback: every app
mode, multi-turn, failures, broken streams, retries, stop on kill and timeout, wrong-mode keys."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import DAG, AirflowException
from airflow_harness import run_dag

from dify_provider.operators.chat import DifyChatOperator
from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.sensors.workflow_run import WorkflowRunSensor
from dify_provider.testing import DifyEmulator, Fault, Scenario

pytestmark = pytest.mark.airflow
START = datetime(2024, 1, 1)
CHAT_ENDPOINT = "POST /chat-messages"
#: Connection id per emulated app (the fixture below points each at its app's key).
CONNS = {"chat": "dify_chatflow", "basic-chat": "dify_basic_chat", "agent": "dify_agent",
         "completion": "dify_completion", "echo": "dify_echo"}


@pytest.fixture
def emu(dify_emulator: DifyEmulator, monkeypatch: pytest.MonkeyPatch) -> DifyEmulator:
    for app, conn_id in CONNS.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", dify_emulator.airflow_connection_json(app))
    return dify_emulator


def chat_dag(dag_id: str, app: str = "chat", *, cls: type = DifyChatOperator, **kwargs: Any) -> DAG:
    kwargs.setdefault("query", "hello")
    kwargs.setdefault("poll_interval", 0.05)
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        cls(task_id="ask", dify_conn_id=CONNS[app], **kwargs)
    return dag


def sent(emu: DifyEmulator, endpoint: str = "/chat-messages") -> int:
    return len(emu.requests_to("POST", endpoint))


@pytest.mark.parametrize("deferrable", [False, True])
def test_chatflow_answer_ids_usage_and_citations(emu: DifyEmulator, dag_id: str, deferrable: bool) -> None:
    result = run_dag(chat_dag(dag_id, deferrable=deferrable))
    assert result.state == "success", result.log("ask")
    assert result.xcom("ask") == "Echo: hello (turn 1)"
    (message,) = emu.messages.values()
    assert message.mode == "advanced-chat"
    assert message.user == f"airflow:{dag_id}:{result.run_id}"  # one end user per DAG run
    assert result.xcom("ask", key="message_id") == message.id
    assert result.xcom("ask", key="conversation_id") == message.conversation_id
    assert result.xcom("ask", key="task_id") == message.task_id
    assert result.xcom("ask", key="workflow_run_id") == message.workflow_run_id
    assert result.xcom("ask", key="status") == "succeeded"
    run = emu.runs[message.workflow_run_id]
    assert result.xcom("ask", key="total_steps") == run.total_steps
    citations = result.xcom("ask", key="retriever_resources")
    assert citations
    assert citations[0]["content"]
    usage = result.xcom("ask", key="usage")
    if deferrable:  # polled in the triggerer: the run record has total_tokens only, nothing made up
        assert usage["total_tokens"] == run.total_tokens == result.xcom("ask", key="total_tokens")
        assert not {"total_price", "prompt_tokens"} & usage.keys()
        assert (usage["source"], usage["nodes"]) == ("run record", [])
        assert "DEFERRED" in result.log("ask")
        assert "only its total_tokens is known" in result.log("ask")
    else:
        assert usage == {**usage, **{k: message.usage[k] for k in ("prompt_tokens", "completion_tokens",
                                                                    "total_tokens", "currency")}}
        assert Decimal(usage["total_price"]) == Decimal(message.usage["total_price"]) > 0  # a decimal string
        (node,) = usage["nodes"]  # the LLM node: the only one that spent anything
        assert (node["node_id"], node["total_tokens"], Decimal(node["total_price"])) == (
            "llm", message.usage["total_tokens"], Decimal(message.usage["total_price"]))
        assert usage["source"] == "stream"
        line = (f"used {usage['total_tokens']} tokens ({usage['prompt_tokens']} prompt + "
                f"{usage['completion_tokens']} completion), {usage['total_price']} USD, in 1 node")
        assert line in result.log("ask")
    assert usage["try_number"] == 1
    assert usage["elapsed_time"] >= 0
    assert sent(emu) == 1


@pytest.mark.parametrize(("app", "answer"), [("basic-chat", "Echo: hi (turn 1)"), ("agent", "Agent: hi (turn 1)")])
def test_chat_and_agent_apps(emu: DifyEmulator, dag_id: str, app: str, answer: str) -> None:
    result = run_dag(chat_dag(dag_id, app, query="hi", deferrable=True))
    assert result.state == "success", result.log("ask")
    assert result.xcom("ask") == answer
    (message,) = emu.messages.values()
    assert result.xcom("ask", key="message_id") == message.id
    with pytest.raises(KeyError):  # no workflow run
        result.xcom("ask", key="workflow_run_id")
    assert result.xcom("ask", key="usage")["total_tokens"] == message.usage["total_tokens"] > 0
    assert "DEFERRED" not in result.log("ask")  # no run to wait on in the triggerer
    assert sent(emu) == 1


def test_completion_app_goes_through_completion_messages(emu: DifyEmulator, dag_id: str) -> None:
    result = run_dag(chat_dag(dag_id, "completion", query=None, inputs={"text": "a poem"}))
    assert result.state == "success", result.log("ask")
    assert result.xcom("ask") == "Completion: a poem"
    assert sent(emu, "/completion-messages") == 1
    assert sent(emu) == 0


def test_multi_turn_over_two_tasks(emu: DifyEmulator, dag_id: str) -> None:
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        first = DifyChatOperator(task_id="first", query="one", dify_conn_id=CONNS["basic-chat"])
        second = DifyChatOperator(task_id="second", query="two", dify_conn_id=CONNS["basic-chat"],
                                  conversation_id="{{ ti.xcom_pull(task_ids='first', key='conversation_id') }}")
        first >> second
    result = run_dag(dag)
    assert result.state == "success", result.log("second")
    assert (result.xcom("first"), result.xcom("second")) == ("Echo: one (turn 1)", "Echo: two (turn 2)")
    assert result.xcom("first", key="conversation_id") == result.xcom("second", key="conversation_id")


def test_a_failing_chatflow_fails_the_task_with_dify_words(emu: DifyEmulator, dag_id: str) -> None:
    emu.script("chat", Scenario(status="failed", error="LLM node exploded"))
    result = run_dag(chat_dag(dag_id, retries=0))
    assert result.state == "failed"
    assert "LLM node exploded" in result.log("ask")
    assert sent(emu) == 1


def test_cut_chatflow_stream_is_awaited_without_resending(emu: DifyEmulator, dag_id: str) -> None:
    emu.inject(Fault.cut_stream(after_events=3, endpoint=CHAT_ENDPOINT))
    result = run_dag(chat_dag(dag_id, query="cut", retries=2, retry_delay=timedelta(0)))
    assert result.state == "success", result.log("ask")
    assert result.ti("ask").try_number == 1
    assert result.xcom("ask") == "Echo: cut (turn 1)"  # read back from GET /messages
    assert sent(emu) == 1
    assert "polling the run instead (not re-sending the message)" in result.log("ask")


def test_cut_chat_stream_loses_the_answer_and_says_a_retry_asks_again(emu: DifyEmulator, dag_id: str) -> None:
    # A chat app saves its answer only when the stream it is sent on ends: the cut one is lost.
    emu.inject(Fault.cut_stream(after_events=2, endpoint=CHAT_ENDPOINT))
    result = run_dag(chat_dag(dag_id, "basic-chat", query="cut", retries=1, retry_delay=timedelta(0)))
    assert result.state == "success", result.log("ask", try_number=2)
    assert result.ti("ask").try_number == 2
    assert "saves its answer only at the end of its stream, so this one is lost" in result.log("ask", try_number=1)
    assert "has no answer in Dify" in result.log("ask", try_number=2)
    assert sent(emu) == 2
    assert result.xcom("ask") == "Echo: cut (turn 1)"


def test_in_stream_error_fails_with_dify_words(emu: DifyEmulator, dag_id: str) -> None:
    emu.inject(Fault.stream_error("provider_quota_exceeded", "Your quota has been exhausted.", status=400,
                                  endpoint=CHAT_ENDPOINT))
    result = run_dag(chat_dag(dag_id, "basic-chat", retries=2, retry_delay=timedelta(0)))
    assert result.state == "failed"
    assert "Your quota has been exhausted." in result.log("ask")
    assert result.ti("ask").try_number == 1  # a quota error fails without retries
    assert sent(emu) == 1


def test_429_at_start_is_retried_with_backoff(emu: DifyEmulator, dag_id: str) -> None:
    emu.inject(Fault.http_error(429, code="too_many_requests", times=1, endpoint=CHAT_ENDPOINT))
    result = run_dag(chat_dag(dag_id, "basic-chat"))
    assert result.state == "success", result.log("ask")
    assert sent(emu) == 2  # refused, then accepted: one message
    assert len(emu.messages) == 1


class CrashAfterSend(DifyChatOperator):
    """A worker that dies after the message was sent (ids stored), before its answer."""

    def _finish_message(self, t: Any, message: Any) -> Any:
        if t.context["ti"].try_number == 1:
            raise AirflowException("simulated worker crash")
        return super()._finish_message(t, message)

    def _wait(self, t: Any, run_id: str, *args: Any, **kwargs: Any) -> Any:
        if t.context["ti"].try_number == 1:
            raise AirflowException("simulated worker crash")
        return super()._wait(t, run_id, *args, **kwargs)


@pytest.mark.parametrize("app", ["chat", "basic-chat"])
def test_retry_takes_over_the_message_and_sends_nothing_twice(emu: DifyEmulator, dag_id: str, app: str) -> None:
    result = run_dag(chat_dag(dag_id, app, query="once", cls=CrashAfterSend, retries=1, retry_delay=timedelta(0)))
    assert result.state == "success", result.log("ask", try_number=2)
    assert result.ti("ask").try_number == 2
    assert sent(emu) == 1
    assert len(emu.messages) == 1
    assert result.xcom("ask") == "Echo: once (turn 1)"
    log = result.log("ask", try_number=2)
    if app == "chat":  # the chatflow's run decides: still going (re-attach) or done (reuse)
        assert "re-attaching" in log or "using its outputs" in log
    else:
        assert "taking over message" in log


@pytest.mark.parametrize("app", ["chat", "basic-chat"])
def test_timeout_stops_the_message(emu: DifyEmulator, dag_id: str, app: str) -> None:
    emu.script(app, Scenario(hold=True))
    result = run_dag(chat_dag(dag_id, app, timeout=2.0))  # room to send on a busy machine
    assert result.state == "failed"
    (message,) = emu.messages.values()
    (stop,) = emu.requests_to("POST", f"/chat-messages/{message.task_id}/stop")
    assert stop.body["user"] == message.user  # Dify stops a chat message only for its own end user
    if app == "chat":
        assert emu.runs[message.workflow_run_id].status == "stopped"
    assert "Stopped Dify run" in result.log("ask")


def test_on_kill_stops_the_message(emu: DifyEmulator) -> None:
    emu.script("basic-chat", Scenario(hold=True))
    op = DifyChatOperator(task_id="ask", query="x", dify_conn_id=CONNS["basic-chat"])
    # Send a held message as another process would, then kill "the task" that knows its task id.
    from dify_provider.client import ClientConfig, DifyClient

    with DifyClient(ClientConfig(api_key=emu.api_key("basic-chat"), base_url=emu.base_url)) as client:
        stream = client.chat_message("x", {}, "killer", response_mode="streaming")
        for _ in stream:
            if stream.task_id:
                break
        op._dify_task_id, op._mode, op.user = stream.task_id, "chat", "killer"
        op.on_kill()
        stream.close()
    (message,) = emu.messages.values()
    assert emu.requests_to("POST", f"/chat-messages/{message.task_id}/stop")


def test_sensor_waits_on_a_chatflow_run_with_the_chat_key(emu: DifyEmulator, dag_id: str) -> None:
    from dify_provider.client import ClientConfig, DifyClient

    with DifyClient(ClientConfig(api_key=emu.api_key("chat"), base_url=emu.base_url)) as client:
        stream = client.chat_message("sense me", {}, "outside", response_mode="streaming")
        for _ in stream:
            if stream.workflow_run_id:
                break
        stream.close()
    run_id = stream.workflow_run_id
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        WorkflowRunSensor(task_id="wait", workflow_run_id=run_id, dify_conn_id=CONNS["chat"], poke_interval=0.05,
                          timeout=60)
    result = run_dag(dag)
    assert result.state == "success", result.log("wait")
    assert result.xcom("wait")["status"] == "succeeded"


def test_wrong_mode_keys_name_the_mode_and_the_operator(emu: DifyEmulator, dag_id: str) -> None:
    result = run_dag(chat_dag(dag_id, "echo", retries=2, retry_delay=timedelta(0)))
    assert result.state == "failed"
    assert result.ti("ask").try_number == 1
    log = result.log("ask")
    assert "a workflow app (mode 'workflow')" in log
    assert "use DifyRunWorkflowOperator" in log
    assert sent(emu) == 0  # told before any message was sent
    with DAG(f"{dag_id}_wf", schedule=None, start_date=START) as dag:
        DifyRunWorkflowOperator(task_id="run", inputs={"name": "x"}, dify_conn_id=CONNS["chat"],
                                check_required_inputs=False, retries=2, retry_delay=timedelta(0))
    result = run_dag(dag)
    assert result.state == "failed"
    assert result.ti("run").try_number == 1
    assert "a chatflow app (mode 'advanced-chat')" in result.log("run")
    assert "use DifyChatOperator" in result.log("run")


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"query": ""}, "query: is empty"),
    ({"conversation_id": "not-a-uuid"}, "conversation_id"),
    ({"workflow_id": "v2"}, "workflow_id"),
    ({"query": ["not", "text"]}, "query: must be a string, not list"),
    ({"inputs": ["not", "a", "dict"]}, "inputs"),
])
def test_bad_input_fails_before_any_message(emu: DifyEmulator, dag_id: str, kwargs: dict[str, Any],
                                            text: str) -> None:
    result = run_dag(chat_dag(dag_id, "basic-chat", retries=2, retry_delay=timedelta(0), **kwargs))
    assert result.state == "failed"
    assert result.ti("ask").try_number == 1
    assert text in result.log("ask")
    assert sent(emu) == 0


def test_unknown_conversation_fails_without_retries(emu: DifyEmulator, dag_id: str) -> None:
    result = run_dag(chat_dag(dag_id, "basic-chat", conversation_id="5f0c2c7e-1111-4222-8333-444455556666",
                              retries=2, retry_delay=timedelta(0)))
    assert result.state == "failed"
    assert result.ti("ask").try_number == 1
    assert "Conversation Not Exists" in result.log("ask")


def test_the_api_key_is_nowhere(emu: DifyEmulator, dag_id: str) -> None:
    result = run_dag(chat_dag(dag_id, deferrable=True))
    assert result.state == "success"
    key = emu.api_key("chat")
    assert key not in result.log("ask")
    for name in ("message_id", "conversation_id", "task_id", "workflow_run_id", "status", "retriever_resources"):
        assert key not in repr(result.xcom("ask", key=name))


def test_a_silent_chat_stream_is_waited_out_longer_than_a_runs(emu: DifyEmulator) -> None:
    """Hanging up loses a chat app's answer, polling a chatflow's run loses nothing: only the
    former gets the long inactivity limit."""
    from dify_provider.client import ClientConfig, DifyClient
    from dify_provider.operators.chat import MESSAGE_IDLE_LIMIT

    with DifyClient(ClientConfig(api_key=emu.api_key("chat"), base_url=emu.base_url)) as client:
        with DifyChatOperator._sender(client, "advanced-chat") as sender:
            assert sender is client
        for mode in ("chat", "agent-chat", "completion"):
            with DifyChatOperator._sender(client, mode) as sender:
                assert sender.config.stream_idle_timeout == MESSAGE_IDLE_LIMIT > client.config.stream_idle_timeout
                assert sender.config.api_key == client.config.api_key
