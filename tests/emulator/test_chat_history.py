"""``GET /messages`` and ``GET /conversations``: Dify 1.13.2's items, paging (newest first, by
``first_id``; by ``last_id`` in ``sort_by`` order), ``has_more``, visibility and errors."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from dify_provider.testing import DifyEmulator, Scenario
from dify_provider.testing.chat_payloads import CITATION

from .conftest import chat_body, make_client

MESSAGE_KEYS = ["id", "conversation_id", "parent_message_id", "inputs", "query", "answer", "feedback",
                "retriever_resources", "created_at", "agent_thoughts", "message_files", "status", "error",
                "extra_contents"]  # fmt: skip


def say(c: httpx.Client, query: str, conversation_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    body: dict[str, Any] = c.post("/chat-messages", json=chat_body(query, mode="blocking",
                                                                   conversation_id=conversation_id, **kwargs)).json()
    return body


@pytest.fixture
def basic(emu: DifyEmulator) -> Any:
    with make_client(emu, "basic-chat") as c:
        yield c


def page(c: httpx.Client, path: str, **params: Any) -> httpx.Response:
    return c.get(path, params={"user": "tester", **params})


def test_message_items_are_what_dify_saved(basic: httpx.Client) -> None:
    first = say(basic, "hello")
    second = say(basic, "again", first["conversation_id"])
    body = page(basic, "/messages", conversation_id=first["conversation_id"]).json()
    assert (body["limit"], body["has_more"]) == (20, False)
    one, two = body["data"]  # oldest first
    assert list(one) == MESSAGE_KEYS
    assert (one["id"], two["id"]) == (first["id"], second["id"])
    assert (one["answer"], two["answer"], two["query"]) == ("Echo: hello (turn 1)", "Echo: again (turn 2)", "again")
    assert (one["parent_message_id"], one["feedback"], one["status"], one["error"]) == (
        "00000000-0000-0000-0000-000000000000", None, "normal", None)  # fmt: skip
    assert (one["inputs"], one["agent_thoughts"], one["message_files"], one["extra_contents"]) == ({}, [], [], [])
    assert one["created_at"] == first["created_at"]
    (resource,) = one["retriever_resources"]
    assert set(resource) == {"id", "message_id", "position", "dataset_id", "dataset_name", "document_id",
                             "document_name", "data_source_type", "segment_id", "score", "hit_count", "word_count",
                             "segment_position", "index_node_hash", "content", "summary", "created_at"}
    assert {k: resource[k] for k in ("dataset_id", "document_id", "segment_id", "position", "score", "content")} == {
        k: CITATION[k] for k in ("dataset_id", "document_id", "segment_id", "position", "score", "content")}


def test_agent_messages_list_their_thought(emu: DifyEmulator) -> None:
    with make_client(emu, "agent") as c:
        with c.stream("POST", "/chat-messages", json=chat_body("go", mode="streaming")) as response:
            response.read()
        conversation = emu.wait_for_message(status="succeeded").conversation_id
        (item,) = page(c, "/messages", conversation_id=conversation).json()["data"]
    (thought,) = item["agent_thoughts"]
    assert (thought["thought"], thought["position"], thought["message_id"], thought["files"]) == (
        "Agent: go (turn 1)", 1, item["id"], [])  # fmt: skip
    assert item["answer"] == "Agent: go (turn 1)"


def test_messages_page_backwards_from_first_id(basic: httpx.Client) -> None:
    conversation = say(basic, "m1")["conversation_id"]
    for i in range(2, 6):
        say(basic, f"m{i}", conversation)
    newest = page(basic, "/messages", conversation_id=conversation, limit=2).json()
    assert ([m["query"] for m in newest["data"]], newest["has_more"]) == (["m4", "m5"], True)
    older = page(basic, "/messages", conversation_id=conversation, limit=2, first_id=newest["data"][0]["id"]).json()
    assert ([m["query"] for m in older["data"]], older["has_more"]) == (["m2", "m3"], True)
    oldest = page(basic, "/messages", conversation_id=conversation, limit=2, first_id=older["data"][0]["id"]).json()
    assert ([m["query"] for m in oldest["data"]], oldest["has_more"]) == (["m1"], False)
    exact = page(basic, "/messages", conversation_id=conversation, limit=5).json()
    assert (len(exact["data"]), exact["has_more"]) == (5, False)


def test_messages_errors_and_visibility(basic: httpx.Client, emu: DifyEmulator) -> None:
    conversation = say(basic, "hi")["conversation_id"]

    def status_and_message(**params: Any) -> tuple[int, str]:
        response = basic.get("/messages", params=params)
        return response.status_code, response.json().get("message", "")

    assert status_and_message(user="tester", conversation_id=str(uuid.uuid4())) == (404, "Conversation Not Exists.")
    assert status_and_message(user="other", conversation_id=conversation) == (404, "Conversation Not Exists.")
    assert status_and_message(conversation_id=conversation) == (404, "Conversation Not Exists.")  # DEFAULT-USER's
    assert status_and_message(user="tester", conversation_id=conversation, first_id=str(uuid.uuid4())) == (
        404, "First Message Not Exists.")  # fmt: skip
    status, message = status_and_message(user="tester")
    assert (status, message.splitlines()[:2]) == (400, ["1 validation error for MessageListQuery", "conversation_id"])
    status, message = status_and_message(user="tester", conversation_id="nope")
    assert (status, "Value error, must be a valid UUID" in message) == (400, True)
    status, message = status_and_message(user="tester", conversation_id=conversation, limit=101)
    assert (status, "Input should be less than or equal to 100" in message) == (400, True)
    assert basic.get("/messages", params={"user": "tester", "conversation_id": ""}).json() == {
        "limit": 20, "has_more": False, "data": []}  # fmt: skip
    with make_client(emu, "chat") as other_app:
        assert page(other_app, "/messages", conversation_id=conversation).status_code == 404
    for app in ("echo", "completion"):
        with make_client(emu, app) as wrong:
            assert page(wrong, "/messages", conversation_id=conversation).json()["code"] == "not_chat_app"
            assert page(wrong, "/conversations").json()["code"] == "not_chat_app"


def test_conversation_items(basic: httpx.Client) -> None:
    answer = say(basic, "a question that is rather long")
    (item,) = page(basic, "/conversations").json()["data"]
    assert item == {"id": answer["conversation_id"], "name": "a question that is r…", "inputs": {}, "status": "normal",
                    "introduction": "", "created_at": answer["created_at"], "updated_at": answer["created_at"]}


def test_conversations_page_by_last_id_in_sort_order(basic: httpx.Client) -> None:
    ids = [say(basic, f"c{i}")["conversation_id"] for i in range(4)]
    say(basic, "touch", ids[0])  # c0 is now the most recently updated
    by_update = page(basic, "/conversations", limit=2).json()
    assert ([c["id"] for c in by_update["data"]], by_update["has_more"]) == ([ids[0], ids[3]], True)
    rest = page(basic, "/conversations", limit=2, last_id=ids[3]).json()
    assert ([c["id"] for c in rest["data"]], rest["has_more"]) == ([ids[2], ids[1]], False)
    by_creation = page(basic, "/conversations", sort_by="created_at").json()
    assert [c["id"] for c in by_creation["data"]] == ids
    after = page(basic, "/conversations", sort_by="-created_at", last_id=ids[2]).json()
    assert [c["id"] for c in after["data"]] == [ids[1], ids[0]]
    assert page(basic, "/conversations", user="other").json() == {"limit": 20, "has_more": False, "data": []}


def test_conversations_errors(basic: httpx.Client) -> None:
    missing = page(basic, "/conversations", last_id=str(uuid.uuid4()))
    assert (missing.status_code, missing.json()["message"]) == (404, "Last Conversation Not Exists.")
    bad_sort = page(basic, "/conversations", sort_by="name").json()
    assert bad_sort["message"].startswith("1 validation error for ConversationListQuery\nsort_by\n")
    assert page(basic, "/conversations", limit=0).status_code == 400


def test_chatflow_history_and_a_running_message(emu: DifyEmulator) -> None:
    with make_client(emu, "chat") as c:
        first = say(c, "one", name="Ada")
        emu.script("chat", Scenario(hold=True))
        with c.stream("POST", "/chat-messages", json=chat_body("two", mode="streaming",
                                                                conversation_id=first["conversation_id"])):
            emu.wait_for(lambda r: r.held)
            items = page(c, "/messages", conversation_id=first["conversation_id"]).json()["data"]
            assert [(m["answer"], m["status"]) for m in items] == [("Echo: one (turn 1)", "normal"), ("", "normal")]
            assert items[0]["inputs"] == {"name": "Ada"}
            assert items[0]["retriever_resources"][0]["dataset_id"] == CITATION["dataset_id"]
        (conversation,) = page(c, "/conversations").json()["data"]
    assert conversation["inputs"] == {"name": "Ada"}
