"""The chat API of every chat mode over HTTP: blocking and streaming answers in Dify 1.13.2's event
order and shapes, the deterministic answers and usage, multi-turn conversations, a chatflow's
workflow run, and the request checks with Dify's words."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from dify_provider.testing import DifyEmulator
from dify_provider.testing.chat_payloads import CITATION

from .conftest import chat_body, chat_path, make_client, open_stream, run_body, split_frames

#: "Echo: hello (turn 1)": 5 prompt characters, 20 answer characters.
HELLO_USAGE = {
    "prompt_tokens": 5,
    "prompt_unit_price": "0.5",
    "prompt_price_unit": "0.001",
    "prompt_price": "0.0025000",
    "completion_tokens": 20,
    "completion_unit_price": "1.5",
    "completion_price_unit": "0.001",
    "completion_price": "0.0300000",
    "total_tokens": 25,
    "total_price": "0.0325000",
    "currency": "USD",
    "latency": 0.5,
    "time_to_first_token": None,
    "time_to_generate": None,
}
CHATFLOW_USAGE = {**HELLO_USAGE, "time_to_first_token": 0.05, "time_to_generate": 0.1}
CHATFLOW_CITATION = {**CITATION, "retriever_from": "workflow"}
CHAT_KEYS = ["event", "conversation_id", "message_id", "created_at", "task_id"]


def send(emu: DifyEmulator, app: str, body: dict[str, Any]) -> httpx.Response:
    with make_client(emu, app) as c:
        return c.post(chat_path(emu, app), json=body)


def stream(emu: DifyEmulator, app: str, body: dict[str, Any]) -> tuple[bytes, list[dict[str, Any]]]:
    with make_client(emu, app) as c, open_stream(c, "POST", chat_path(emu, app), json=body) as reader:
        assert reader.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        reader.read_all()
    return reader.raw, reader.events


def order(raw: bytes) -> list[str]:
    return ["ping" if f == b"event: ping" else json.loads(f[6:])["event"] for f in split_frames(raw)]


# -- chatflow (advanced-chat) ----------------------------------------------------------------------


def test_chatflow_blocking(emu: DifyEmulator) -> None:
    response = send(emu, "chat", chat_body(mode="blocking"))
    assert (response.status_code, response.headers["content-type"]) == (200, "application/json; charset=utf-8")
    body = response.json()
    assert list(body) == ["event", "task_id", "id", "message_id", "conversation_id", "mode", "answer", "metadata",
                          "created_at"]  # fmt: skip
    assert (body["event"], body["mode"], body["answer"]) == ("message", "advanced-chat", "Echo: hello (turn 1)")
    assert body["id"] == body["message_id"]
    assert body["metadata"] == {"annotation_reply": None, "retriever_resources": [CHATFLOW_CITATION],
                                "usage": CHATFLOW_USAGE}  # fmt: skip
    (message,) = emu.messages.values()
    assert (message.id, message.conversation_id, message.task_id) == (body["id"], body["conversation_id"],
                                                                      body["task_id"])  # fmt: skip
    assert (message.status, message.turn, message.app, message.mode) == ("succeeded", 1, "chat", "advanced-chat")
    run = emu.runs[message.workflow_run_id or ""]
    assert (run.status, run.message_id, run.conversation_id) == ("succeeded", message.id, message.conversation_id)
    assert (run.total_tokens, run.total_steps) == (25, 4)  # start, knowledge retrieval, LLM, answer


def test_chatflow_streaming_event_order_and_frames(emu: DifyEmulator) -> None:
    raw, events = stream(emu, "chat", chat_body(mode="streaming"))
    assert raw.startswith(b"event: ping\n\ndata: {\"event\":\"workflow_started\",\"conversation_id\":")
    assert order(raw) == [
        "ping", "workflow_started",
        "node_started", "node_finished",  # start
        "node_started", "node_finished",  # knowledge retrieval
        "node_started", "message", "message", "message", "node_finished",  # the LLM streams the answer
        "node_started", "node_finished",  # answer
        "message_end", "workflow_finished",
    ]  # fmt: skip
    started, finished = events[0], events[-1]
    ids = {k: started[k] for k in ("conversation_id", "message_id", "created_at", "task_id")}
    for event in events:
        assert {k: event[k] for k in ids} == ids, event["event"]
        assert list(event)[:5] == CHAT_KEYS
        if event["event"].startswith(("workflow_", "node_")):
            assert list(event)[5:] == ["workflow_run_id", "data"]
            assert event["workflow_run_id"] == started["data"]["id"]
    chunks = [e for e in events if e["event"] == "message"]
    assert [c["answer"] for c in chunks] == ["Echo: ", "hello", " (turn 1)"]
    assert {tuple(c["from_variable_selector"]) for c in chunks} == {("llm", "text")}
    assert chunks[0] == {**ids, "event": "message", "id": ids["message_id"], "answer": "Echo: ",
                         "from_variable_selector": ["llm", "text"]}  # fmt: skip
    assert started["data"]["inputs"] == {
        "name": None, "sys.files": [], "sys.user_id": "tester", "sys.app_id": emu.app_id("chat"),
        "sys.workflow_id": emu.apps["chat"].workflow_id, "sys.workflow_run_id": started["data"]["id"],
        "sys.query": "hello", "sys.dialogue_count": 1,
    }  # fmt: skip
    start_done = events[2]["data"]
    assert start_done["outputs"]["sys.conversation_id"] == ids["conversation_id"]
    llm_done = next(e["data"] for e in events if e["event"] == "node_finished" and e["data"]["node_id"] == "llm")
    assert llm_done["execution_metadata"] == {"total_tokens": 25, "total_price": "0.0325000", "currency": "USD"}
    end = events[-2]
    assert end == {**ids, "event": "message_end", "id": ids["message_id"], "files": [],
                   "metadata": {"annotation_reply": None, "retriever_resources": [CHATFLOW_CITATION],
                                "usage": CHATFLOW_USAGE}}  # fmt: skip
    assert (finished["data"]["status"], finished["data"]["outputs"]) == (
        "succeeded", {"answer": "Echo: hello (turn 1)", "files": []})  # fmt: skip
    assert (finished["data"]["total_tokens"], finished["data"]["total_steps"]) == (25, 4)


def test_chatflow_run_is_read_with_the_chat_key_only(emu: DifyEmulator) -> None:
    """Recordings 76/77: GET /workflows/run/{id} with the chatflow's key, 404 with a workflow app's."""
    _, events = stream(emu, "chat", chat_body("ping", mode="streaming"))
    run_id = events[0]["workflow_run_id"]
    with make_client(emu, "chat") as c:
        detail = c.get(f"/workflows/run/{run_id}").json()
        assert c.post("/workflows/run", json=run_body()).json()["code"] == "not_workflow_app"
    assert (detail["id"], detail["status"], detail["outputs"]) == (
        run_id, "succeeded", {"answer": "Echo: ping (turn 1)", "files": []})  # fmt: skip
    assert list(json.loads(detail["inputs"])) == [
        "name", "sys.files", "sys.user_id", "sys.app_id", "sys.workflow_id", "sys.workflow_run_id", "sys.query",
        "sys.dialogue_count",
    ]  # fmt: skip
    assert (detail["total_steps"], detail["total_tokens"]) == (4, 23)
    with make_client(emu, "echo") as c:
        assert c.get(f"/workflows/run/{run_id}").json()["message"] == "Workflow run not found."
    with make_client(emu, "basic-chat") as c:
        assert c.get(f"/workflows/run/{run_id}").json()["code"] == "not_workflow_app"


def test_chatflow_logs_stay_empty(emu: DifyEmulator) -> None:
    """Recording 73: the workflow-app log rows are not written for a chatflow's runs."""
    send(emu, "chat", chat_body(mode="blocking"))
    with make_client(emu, "chat") as c:
        assert c.get("/workflows/logs").json() == {"page": 1, "limit": 20, "total": 0, "has_more": False, "data": []}


# -- chat, agent-chat, completion ------------------------------------------------------------------


def test_basic_chat_blocking_and_streaming(emu: DifyEmulator) -> None:
    blocking = send(emu, "basic-chat", chat_body(mode="blocking")).json()
    assert (blocking["mode"], blocking["answer"]) == ("chat", "Echo: hello (turn 1)")
    assert blocking["metadata"] == {"annotation_reply": None, "retriever_resources": [CITATION], "usage": HELLO_USAGE}
    raw, events = stream(emu, "basic-chat", chat_body("hi", mode="streaming"))
    assert order(raw) == ["message", "message", "message", "message_end"]  # no ping: the API process streams
    assert [e["answer"] for e in events[:3]] == ["Echo: ", "hi", " (turn 1)"]
    assert all(e["from_variable_selector"] is None and list(e)[:5] == CHAT_KEYS for e in events[:3])
    assert list(events[-1])[:5] == CHAT_KEYS
    end = events[-1]
    assert (end["files"], end["metadata"]["usage"]["total_tokens"], end["metadata"]["usage"]["total_price"]) == (
        None, 19, "0.0265000")  # 2 x 0.0005 + 17 x 0.0015  # fmt: skip
    assert [m.status for m in emu.messages.values()] == ["succeeded", "succeeded"]
    assert emu.runs == {}  # no workflow behind a basic chat


def test_agent_streams_thoughts_and_messages(emu: DifyEmulator) -> None:
    raw, events = stream(emu, "agent", chat_body("plan", mode="streaming"))
    assert order(raw) == ["agent_thought", "agent_message", "agent_message", "agent_message", "agent_thought",
                          "message_end"]  # fmt: skip
    first, *chunks, second, end = events
    assert [c["answer"] for c in chunks] == ["Agent: ", "plan", " (turn 1)"]
    assert first["id"] == second["id"] != first["message_id"]
    assert {k: first[k] for k in ("position", "thought", "observation", "tool", "tool_labels", "tool_input",
                                  "message_files")} == {"position": 1, "thought": "", "observation": "", "tool": "",
                                                        "tool_labels": {}, "tool_input": "", "message_files": []}
    assert second["thought"] == "Agent: plan (turn 1)"
    assert end["metadata"]["retriever_resources"] == []
    assert end["metadata"]["usage"]["completion_tokens"] == len("Agent: plan (turn 1)")


@pytest.mark.parametrize("mode", ["blocking", None])
def test_agent_refuses_blocking_mode(emu: DifyEmulator, mode: str | None) -> None:
    response = send(emu, "agent", chat_body(mode=mode))  # no response_mode: blocking
    assert (response.status_code, response.json()) == (
        400, {"code": "invalid_param", "message": "Agent Chat App does not support blocking mode", "status": 400})
    assert emu.messages == {}


def test_completion_blocking_and_streaming(emu: DifyEmulator) -> None:
    body = {"inputs": {"text": "sky"}, "user": "tester", "response_mode": "blocking"}
    blocking = send(emu, "completion", body).json()
    assert list(blocking) == ["event", "task_id", "id", "message_id", "mode", "answer", "metadata", "created_at"]
    assert (blocking["mode"], blocking["answer"]) == ("completion", "Completion: sky")
    assert blocking["metadata"]["usage"]["prompt_tokens"] == 3  # no query: the input's characters
    raw, events = stream(emu, "completion", {**body, "query": "why", "response_mode": "streaming"})
    assert order(raw) == ["message", "message", "message_end"]
    assert all("conversation_id" not in e for e in events)
    assert list(events[0]) == ["event", "message_id", "created_at", "task_id", "id", "answer", "from_variable_selector"]
    assert events[-1]["metadata"]["usage"]["prompt_tokens"] == 6  # query + input


def test_inputs_count_towards_the_prompt(emu: DifyEmulator) -> None:
    usage = send(emu, "chat", chat_body(mode="blocking", name="Ada")).json()["metadata"]["usage"]
    assert (usage["prompt_tokens"], usage["prompt_price"], usage["total_price"]) == (8, "0.0040000", "0.0340000")


# -- conversations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("app", ["chat", "basic-chat", "agent"])
def test_conversation_id_continues_a_conversation(emu: DifyEmulator, app: str) -> None:
    mode = "streaming"

    def answer(body: dict[str, Any]) -> tuple[str, str]:
        _, events = stream(emu, app, body)
        text = "".join(e.get("answer", "") for e in events if e["event"] in ("message", "agent_message"))
        return events[0]["conversation_id"], text

    conversation, first = answer(chat_body("one", mode=mode))
    again, second = answer(chat_body("two", mode=mode, conversation_id=conversation))
    fresh, third = answer(chat_body("three", mode=mode))
    assert again == conversation != fresh
    assert (first[-9:], second[-9:], third[-9:]) == (" (turn 1)", " (turn 2)", " (turn 1)")
    assert [m.turn for m in emu.messages.values()] == [1, 2, 1]


def test_chatflow_turn_is_sys_dialogue_count(emu: DifyEmulator) -> None:
    conversation = send(emu, "chat", chat_body(mode="blocking")).json()["conversation_id"]
    _, events = stream(emu, "chat", chat_body("more", mode="streaming", conversation_id=conversation))
    assert events[0]["data"]["inputs"]["sys.dialogue_count"] == 2
    assert events[0]["conversation_id"] == conversation


# -- request checks --------------------------------------------------------------------------------


def test_workflow_key_is_not_a_chat_app(emu: DifyEmulator) -> None:
    """Recording 74; and the completion endpoints answer other modes ``app_unavailable``."""
    for app in ("echo", "completion"):
        with make_client(emu, app) as c:
            response = c.post("/chat-messages", json=chat_body())
        assert (response.status_code, response.json()) == (400, {
            "code": "not_chat_app", "message": "Please check if your app mode matches the right API route.",
            "status": 400})  # fmt: skip
    with make_client(emu, "basic-chat") as c:
        wrong = c.post("/completion-messages", json={"inputs": {}, "user": "u"})
    assert (wrong.status_code, wrong.json()) == (400, {
        "code": "app_unavailable", "message": "App unavailable, please check your app configurations.",
        "status": 400})  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"inputs": {}, "query": "q"}, 400, "Arg user must be provided."),
        ({"inputs": {}, "query": "", "user": "u"}, 400, "query is required"),
        ({"inputs": {}, "query": "q", "user": "u", "conversation_id": str(uuid.uuid4())}, 404,
         "Conversation Not Exists."),
        ({"inputs": {"name": 7}, "query": "q", "user": "u"}, 400,
         "(type 'text-input') name in input form must be a string"),
        ({"inputs": {"name": "x" * 49}, "query": "q", "user": "u"}, 400,
         "name in input form must be less than 48 characters"),
    ],
)  # fmt: skip
def test_request_errors(emu: DifyEmulator, body: dict[str, Any], status: int, message: str) -> None:
    response = send(emu, "chat", body)
    assert (response.status_code, response.json()["message"]) == (status, message)
    assert response.json()["code"] == ("invalid_param" if status == 400 else "not_found")
    assert emu.messages == {}


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("conversation_id", "not-a-uuid", "Value error, conversation_id must be a valid UUID"),
        ("query", None, "query\n  Input should be a valid string"),
        ("inputs", "x", "inputs\n  Input should be a valid dictionary"),
        ("response_mode", "fast", "response_mode\n  Input should be 'blocking' or 'streaming'"),
    ],
)
def test_payload_errors_are_pydantics(emu: DifyEmulator, field: str, value: Any, expected: str) -> None:
    response = send(emu, "basic-chat", {**chat_body(), field: value})
    body = response.json()
    assert (response.status_code, body["code"]) == (400, "invalid_param")
    assert body["message"].startswith("1 validation error for ChatRequestPayload\n")
    assert expected in body["message"]


def test_blank_conversation_id_starts_a_conversation(emu: DifyEmulator) -> None:
    assert send(emu, "basic-chat", {**chat_body(mode="blocking"), "conversation_id": "  "}).status_code == 200


def test_conversations_are_the_users_and_the_apps(emu: DifyEmulator) -> None:
    conversation = send(emu, "basic-chat", chat_body(mode="blocking")).json()["conversation_id"]
    other_user = send(emu, "basic-chat", chat_body(mode="blocking", user="else", conversation_id=conversation))
    other_app = send(emu, "chat", chat_body(mode="blocking", conversation_id=conversation))
    assert [r.status_code for r in (other_user, other_app)] == [404, 404]


def test_chatflow_streaming_generator_errors_are_silent(emu: DifyEmulator) -> None:
    """1.13.2 generates a streaming chatflow in the Celery worker: its errors never reach the
    client (a ping, then nothing until the idle timeout); the agent's stay HTTP errors."""
    emu.configure(stream_idle_timeout=0.2)
    for body in (chat_body("", mode="streaming"), chat_body(mode="streaming", conversation_id=str(uuid.uuid4()))):
        raw, _ = stream(emu, "chat", body)
        assert split_frames(raw) == [b"event: ping"]
    assert (emu.messages, emu.runs) == ({}, {})
    assert send(emu, "agent", chat_body("", mode="streaming")).json()["message"] == "query is required"
    emu.configure(streaming_input_errors="http")
    assert send(emu, "chat", chat_body("", mode="streaming")).status_code == 400


def test_chatflow_pinned_workflow_id(emu: DifyEmulator) -> None:
    pinned = send(emu, "chat", {**chat_body(mode="blocking"), "workflow_id": emu.apps["chat"].workflow_id})
    unknown = send(emu, "chat", {**chat_body(mode="blocking"), "workflow_id": str(uuid.uuid4())})
    bad = send(emu, "chat", {**chat_body(mode="blocking"), "workflow_id": "v1"})
    assert [pinned.status_code, unknown.status_code, bad.status_code] == [200, 404, 400]
    assert bad.json()["message"] == "Invalid workflow_id format: 'v1'. "


def test_completion_requires_its_inputs(emu: DifyEmulator) -> None:
    response = send(emu, "completion", {"inputs": {}, "user": "u"})
    assert (response.status_code, response.json()["message"]) == (400, "text is required in input form")


# -- app metadata ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("app", "mode"), [("chat", "advanced-chat"), ("basic-chat", "chat"),
                                           ("agent", "agent-chat"), ("completion", "completion")])
def test_app_metadata(emu: DifyEmulator, app: str, mode: str) -> None:
    """/info, /parameters, /site and /meta answer as for a workflow app (recordings 02-04b)."""
    with make_client(emu, app) as c:
        info, parameters, site, meta = (c.get(path).json() for path in ("/info", "/parameters", "/site", "/meta"))
    assert (info["name"], info["mode"]) == (app, mode)
    assert parameters["retriever_resource"] == {"enabled": app in ("chat", "basic-chat")}
    assert [next(iter(entry.values()))["variable"] for entry in parameters["user_input_form"]] == (
        ["name"] if app == "chat" else ["text"] if app == "completion" else [])
    assert (site["title"], site["icon_type"], site["default_language"]) == (app, "emoji", "en-US")
    assert meta == {"tool_icons": {}}


def test_every_chat_route_needs_a_key(anon: httpx.Client, emu: DifyEmulator) -> None:
    for method, path in [("POST", "/chat-messages"), ("POST", "/completion-messages"), ("GET", "/messages"),
                         ("GET", "/conversations"), ("POST", "/chat-messages/t/stop")]:
        response = anon.request(method, path, json={})
        assert (response.status_code, response.json()["code"]) == (401, "unauthorized"), path
