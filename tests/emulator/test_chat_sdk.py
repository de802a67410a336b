"""A third-party SDK unchanged against the emulator: PyPI's ``dify-client`` 0.1.10 (``requests``;
its ``ChatClient`` and ``CompletionClient``). It has no stop method: the stop goes through its own
``_send_request``, as a user of it would have to."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dify_provider.testing import DifyEmulator, Scenario

dify_client = pytest.importorskip("dify_client")


def chat_client(emu: DifyEmulator, app: str) -> Any:
    client = dify_client.ChatClient(emu.api_key(app))
    client.base_url = emu.base_url
    return client


def sse_events(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line[len(b"data: "):]) for line in response.iter_lines() if line.startswith(b"data: ")]


@pytest.mark.parametrize("app", ["chat", "basic-chat"])
def test_chat_blocking_then_streaming_in_the_same_conversation(emu: DifyEmulator, app: str) -> None:
    client = chat_client(emu, app)
    blocking = client.create_chat_message({}, "hello", "sdk-user")
    blocking.raise_for_status()
    first = blocking.json()
    assert (first["answer"], first["metadata"]["usage"]["total_tokens"]) == ("Echo: hello (turn 1)", 25)
    streamed = client.create_chat_message({}, "again", "sdk-user", response_mode="streaming",
                                          conversation_id=first["conversation_id"])
    assert streamed.headers["content-type"] == "text/event-stream; charset=utf-8"
    events = sse_events(streamed)
    answer = "".join(e["answer"] for e in events if e["event"] == "message")
    assert answer == "Echo: again (turn 2)"
    assert {e["conversation_id"] for e in events} == {first["conversation_id"]}
    assert "message_end" in [e["event"] for e in events]

    history = client.get_conversation_messages("sdk-user", conversation_id=first["conversation_id"], limit=1)
    assert ([m["query"] for m in history.json()["data"]], history.json()["has_more"]) == (["again"], True)
    older = client.get_conversation_messages("sdk-user", conversation_id=first["conversation_id"],
                                             first_id=history.json()["data"][0]["id"])
    assert [m["answer"] for m in older.json()["data"]] == ["Echo: hello (turn 1)"]
    (conversation,) = client.get_conversations("sdk-user").json()["data"]
    assert conversation["id"] == first["conversation_id"]
    assert client.get_conversations("sdk-user", last_id=conversation["id"], limit=5).json()["data"] == []


def test_agent_streaming_and_its_blocking_refusal(emu: DifyEmulator) -> None:
    client = chat_client(emu, "agent")
    refused = client.create_chat_message({}, "plan", "sdk-user")
    assert (refused.status_code, refused.json()["message"]) == (400, "Agent Chat App does not support blocking mode")
    events = sse_events(client.create_chat_message({}, "plan", "sdk-user", response_mode="streaming"))
    assert [e["event"] for e in events] == ["agent_thought", "agent_message", "agent_message", "agent_message",
                                             "agent_thought", "message_end"]


def test_completion_blocking_and_streaming(emu: DifyEmulator) -> None:
    client = dify_client.CompletionClient(emu.api_key("completion"))
    client.base_url = emu.base_url
    blocking = client.create_completion_message({"text": "sky"}, "blocking", "sdk-user")
    assert blocking.json()["answer"] == "Completion: sky"
    events = sse_events(client.create_completion_message({"text": "sea"}, "streaming", "sdk-user"))
    assert ("".join(e.get("answer", "") for e in events), events[-1]["event"]) == ("Completion: sea", "message_end")
    assert client.create_completion_message({}, "blocking", "sdk-user").json()["message"] == (
        "text is required in input form")


def test_stop_through_the_sdk_transport(emu: DifyEmulator) -> None:
    emu.script("basic-chat", Scenario(hold=True))
    client = chat_client(emu, "basic-chat")
    streamed = client.create_chat_message({}, "hello", "sdk-user", response_mode="streaming")
    held = emu.wait_for_message(lambda m: m.held)
    other = client._send_request("POST", f"/chat-messages/{held.task_id}/stop", {"user": "not-me"})
    assert (other.json(), emu.messages[held.id].status) == ({"result": "success"}, "running")
    mine = client._send_request("POST", f"/chat-messages/{held.task_id}/stop", {"user": "sdk-user"})
    assert mine.json() == {"result": "success"}
    assert sse_events(streamed)[-1]["event"] == "message_end"
    assert emu.messages[held.id].status == "stopped"
    completion = dify_client.CompletionClient(emu.api_key("completion"))
    completion.base_url = emu.base_url
    assert completion._send_request("POST", "/completion-messages/x/stop", {"user": "u"}).json() == {
        "result": "success"}
