"""Scripted faults on the chat endpoints (errors before and after the message exists, delays, cut,
silent and erroring streams, broken bodies on the history endpoints) and the request log."""

from __future__ import annotations

import json

import httpx
import pytest

from dify_provider.testing import DifyEmulator, Fault, Scenario

from .conftest import SSL, chat_body, make_client, open_stream

CHAT = "POST /chat-messages"
COMPLETION = "POST /completion-messages"


def test_429_rejects_a_chat_message_before_it_exists(emu: DifyEmulator) -> None:
    emu.inject(Fault.too_many_requests(endpoint=CHAT, app="basic-chat"))
    with make_client(emu, "basic-chat") as c:
        rejected = c.post("/chat-messages", json=chat_body(mode="blocking"))
        assert (rejected.status_code, rejected.json()["code"]) == (429, "too_many_requests")
        assert emu.messages == {}
        assert c.post("/chat-messages", json=chat_body(mode="blocking")).status_code == 200
    assert len(emu.messages) == 1


@pytest.mark.parametrize("app", ["chat", "basic-chat", "completion"])
def test_error_after_the_message_exists_is_the_ambiguous_start(emu: DifyEmulator, app: str) -> None:
    endpoint, path = (COMPLETION, "/completion-messages") if app == "completion" else (CHAT, "/chat-messages")
    emu.inject(Fault.http_error(503, endpoint=endpoint, after_run_created=True))
    body = {**chat_body(mode="blocking"), "inputs": {"text": "x"} if app == "completion" else {}}
    with make_client(emu, app) as c:
        assert c.post(path, json=body).status_code == 503
    message = emu.wait_for_message(status="succeeded")  # generated anyway (a blocking client's message is saved)
    assert message.app == app
    assert (message.workflow_run_id is not None) == (app == "chat")


def test_drop_and_malformed_chat_answers(emu: DifyEmulator) -> None:
    emu.inject(Fault.drop(endpoint=CHAT), Fault.malformed_json(endpoint=CHAT, after_run_created=True))
    with make_client(emu, "basic-chat") as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.post("/chat-messages", json=chat_body(mode="blocking"))
        assert emu.messages == {}
        broken = c.post("/chat-messages", json=chat_body(mode="blocking"))
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        broken.json()
    assert broken.text.startswith('{"event":"message","task_id":')
    assert len(emu.messages) == 1


def test_delay_before_a_chat_message_past_the_client_timeout(emu: DifyEmulator) -> None:
    emu.inject(Fault.delay(0.3, endpoint=CHAT))
    with make_client(emu, "basic-chat", timeout=0.1) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/chat-messages", json=chat_body(mode="blocking"))
    emu.wait_for_requests("POST", "/chat-messages", where=lambda r: r.status is not None)
    assert emu.messages == {}


def test_cut_chatflow_stream_the_run_goes_on(emu: DifyEmulator) -> None:
    emu.inject(Fault.cut_stream(after_events=1, endpoint=CHAT, app="chat"))
    with (
        make_client(emu, "chat") as c,
        open_stream(c, "POST", "/chat-messages", json=chat_body(mode="streaming")) as reader,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        reader.read_all()
    assert reader.names == ["workflow_started"]
    assert reader.raw.split(b"\n\n")[-1].startswith(b'data: {"event":"node_started","conversation_id":')
    run = emu.wait_for(reader.events[0]["workflow_run_id"], status="succeeded")
    assert emu.messages[run.message_id or ""].answer == "Echo: hello (turn 1)"


def test_cut_basic_chat_stream_orphans_the_message(emu: DifyEmulator) -> None:
    emu.inject(Fault.cut_stream(after_events=2, endpoint=CHAT))
    with (
        make_client(emu, "basic-chat") as c,
        open_stream(c, "POST", "/chat-messages", json=chat_body(mode="streaming")) as reader,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        reader.read_all()
    assert reader.names == ["message", "message"]
    message = emu.wait_for_message(lambda m: m.orphaned)
    assert message.status == "running"


@pytest.mark.parametrize("app", ["chat", "basic-chat"])
def test_stream_error_event(emu: DifyEmulator, app: str) -> None:
    emu.inject(Fault.stream_error("provider_quota_exceeded", "quota", status=400, after_events=2, endpoint=CHAT))
    with make_client(emu, app) as c, open_stream(c, "POST", "/chat-messages",
                                                 json=chat_body(mode="streaming")) as reader:
        reader.read_all()
    *before, error = reader.events
    assert len(before) == 2
    assert error == {"event": "error", "conversation_id": before[0]["conversation_id"],
                     "message_id": before[0]["message_id"], "created_at": before[0]["created_at"],
                     "code": "provider_quota_exceeded", "status": 400, "message": "quota"}  # fmt: skip
    message = emu.wait_for_message(status="failed")
    assert message.error == "quota"
    if app == "chat":
        assert emu.wait_for(message.workflow_run_id, status="failed").error == "quota"


def test_internal_stream_error_and_before_the_first_event(emu: DifyEmulator) -> None:
    emu.inject(Fault.stream_error(after_events=0, endpoint=COMPLETION))
    body = {"inputs": {"text": "x"}, "user": "u", "response_mode": "streaming"}
    with make_client(emu, "completion") as c, open_stream(c, "POST", "/completion-messages", json=body) as reader:
        reader.read_all()
    (error,) = reader.events
    assert list(error) == ["event", "message_id", "created_at", "code", "message", "status"]  # no conversation_id
    assert (error["code"], error["status"]) == ("internal_server_error", 500)


def test_silent_chat_stream(emu: DifyEmulator) -> None:
    emu.configure(ping_interval=0.02)
    emu.inject(Fault.silent_stream(after_events=1, endpoint=CHAT))
    with (
        make_client(emu, "agent", timeout=httpx.Timeout(5.0, read=0.25)) as c,
        open_stream(c, "POST", "/chat-messages", json=chat_body(mode="streaming")) as reader,
        pytest.raises(httpx.ReadTimeout),
    ):
        reader.read_all()
    assert (reader.names, reader.pings) == (["agent_thought"], 0)
    orphan = emu.wait_for_message(lambda m: m.orphaned)  # the client gave up before message_end: never saved
    assert (orphan.status, orphan.answer) == ("running", "Agent: hello (turn 1)")  # generated all the same


def test_faults_on_the_history_endpoints(emu: DifyEmulator) -> None:
    emu.inject(
        Fault.http_error(503, endpoint="GET /conversations"),
        Fault.malformed_json(endpoint="GET /messages"),
        Fault.reset(endpoint="POST /chat-messages/{task_id}/stop"),
    )
    with make_client(emu, "basic-chat") as c:
        conversation = c.post("/chat-messages", json=chat_body(mode="blocking")).json()["conversation_id"]
        assert c.get("/conversations", params={"user": "tester"}).status_code == 503
        broken = c.get("/messages", params={"user": "tester", "conversation_id": conversation})
        with pytest.raises(json.JSONDecodeError):
            broken.json()
        with pytest.raises(httpx.ReadError):
            c.post("/chat-messages/x/stop", json={"user": "tester"})
        assert c.get("/conversations", params={"user": "tester"}).status_code == 200


def test_request_log_covers_the_chat_endpoints(emu: DifyEmulator) -> None:
    emu.script("basic-chat", Scenario(hold=True))
    emu.inject(Fault.too_many_requests(endpoint=CHAT, app="chat"))
    with make_client(emu, "chat") as c:
        c.post("/chat-messages", json=chat_body(mode="blocking"))
    with make_client(emu, "basic-chat") as c, open_stream(c, "POST", "/chat-messages",
                                                          json=chat_body(mode="streaming")):
        held = emu.wait_for_message(lambda m: m.held)
        c.post(f"/chat-messages/{held.task_id}/stop", json={"user": "tester"})
        c.get("/messages", params={"user": "tester", "conversation_id": held.conversation_id})
    rejected, streamed = emu.wait_for_requests("POST", "/chat-messages", count=2)
    assert (rejected.app, rejected.status, rejected.fault) == ("chat", 429, "http_error")
    assert (streamed.app, streamed.status, streamed.body["response_mode"]) == ("basic-chat", 200, "streaming")
    assert streamed.headers["authorization"] == "Bearer ***"
    (stopped,) = emu.requests_to("POST", f"/chat-messages/{held.task_id}/stop")
    assert stopped.body == {"user": "tester"}
    (listed,) = emu.requests_to("GET", "/messages")
    assert listed.query == {"user": "tester", "conversation_id": held.conversation_id}
    with httpx.Client(base_url=emu.admin_url, verify=SSL) as admin:
        logged = admin.get("/requests", params={"path": "/chat-messages"}).json()
    assert [r["app"] for r in logged] == ["chat", "basic-chat"]
