"""The chat family's request/response calls (``dify_provider.client.chat``), sync and async:
what is sent, how the answers parse (real 1.13.2 recordings where there are some), argument
checks before any request, error codes, and the start rule (never re-sent once it may have
reached Dify). Streams are in ``test_chat_stream.py``; every endpoint's retry class and
404/429 mapping also run in ``test_retries.py`` / ``test_errors.py`` (``_endpoints.py``)."""

from __future__ import annotations

import json
import traceback
from typing import Any

import httpx
import pytest
import respx

from dify_provider.client import (
    AppMeta,
    ChatResponse,
    CompletionResponse,
    ConversationPage,
    DifyAPIError,
    DifyConfigError,
    DifyConversationCompletedError,
    DifyError,
    DifyInvalidInputError,
    DifyModelProviderError,
    DifyNotChatAppError,
    DifyNotFoundError,
    DifyProviderQuotaExceededError,
    DifyQuotaExceededError,
    DifyRateLimitError,
    DifyTimeoutError,
    MessagePage,
    SiteInfo,
)

from . import _bodies as b
from . import _chat_bodies as cb
from ._harness import API_KEY, FILE_ID, TASK_ID, WORKFLOW_UUID, Harness, sse_response, url

CHAT_URL = url("/chat-messages")
COMPLETION_URL = url("/completion-messages")
IMAGE = {"type": "image", "transfer_method": "local_file", "upload_file_id": FILE_ID}


def sent(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


# --- POST /chat-messages --------------------------------------------------------------------------


def test_blocking_chat_parses_the_recorded_answer(harness: Harness, router: respx.MockRouter) -> None:
    rec = cb.recording("71-chat-app-chat-messages-blocking")
    route = router.post(CHAT_URL).respond(200, json=rec["response"]["body"], headers={"X-Version": "1.13.2"})
    answer = harness.with_config(user="airflow-test").call("chat_message", "ping")
    # The recorded request, plus auto_generate_name said out loud (Dify's default, True).
    assert sent(route) == {**json.loads(rec["request"]["body"]), "auto_generate_name": True}
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert isinstance(answer, ChatResponse)
    assert (answer.task_id, answer.message_id, answer.id) == ("9956476d-ec07-4410-ac4a-fb65e55ed1c5",
                                                             "81c1b447-1992-42a9-9c7c-bc5b0fbce1c8",
                                                             "81c1b447-1992-42a9-9c7c-bc5b0fbce1c8")
    assert answer.conversation_id == "88b5804d-19b2-4e97-9fea-5648678b38bb"
    assert (answer.mode, answer.answer, answer.created_at) == ("advanced-chat", "echo: ping", 1795378664)
    assert answer.retriever_resources == []
    usage = answer.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (0, 0, 0)
    assert (usage.total_price, usage.prompt_unit_price, usage.currency) == ("0.0", "0.0", "USD")
    assert (usage.latency, usage.time_to_first_token) == (0.0, 0.029)
    as_dict = usage.as_dict()
    assert {"prompt_tokens", "completion_tokens", "total_tokens", "total_price", "currency", "latency"} <= set(as_dict)
    json.dumps(as_dict)
    summary = answer.summary()
    assert summary["answer"] == "echo: ping"
    assert summary["conversation_id"] == answer.conversation_id
    assert summary["created_at"].startswith("2026-11-22T")
    json.dumps(summary)


def test_chat_sends_every_option(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(CHAT_URL).respond(200, json=cb.BLOCKING_71)
    harness.call("chat_message", "and the 14?", {"name": "dify"}, "alice", conversation_id=cb.CONVERSATION_ID.upper(),
                 files=[IMAGE], auto_generate_name=False, workflow_id=WORKFLOW_UUID)
    assert sent(route) == {
        "query": "and the 14?", "inputs": {"name": "dify"}, "user": "alice", "response_mode": "blocking",
        "auto_generate_name": False, "conversation_id": cb.CONVERSATION_ID, "files": [IMAGE],
        "workflow_id": WORKFLOW_UUID,
    }


@pytest.mark.parametrize("conversation_id", [None, "", "  "])
def test_no_conversation_id_starts_a_new_conversation(harness: Harness, router: respx.MockRouter,
                                                      conversation_id: str | None) -> None:
    # Dify reads a blank conversation_id as "none" (UUIDStrOrEmpty): so does the client.
    route = router.post(CHAT_URL).respond(200, json=cb.BLOCKING_71)
    harness.call("chat_message", "hi", conversation_id=conversation_id, workflow_id="")
    body = sent(route)
    assert "conversation_id" not in body
    assert "workflow_id" not in body
    assert body["user"] == "airflow"  # the config's default user
    assert body["inputs"] == {}


def test_blocking_chat_with_an_unreadable_body_is_a_response_error(harness: Harness,
                                                                    router: respx.MockRouter) -> None:
    router.post(CHAT_URL).respond(200, json={"event": "message", "answer": "no ids"})
    with pytest.raises(DifyError, match="unexpected ChatResponse body from /v1/chat-messages"):
        harness.call("chat_message", "hi")


# --- POST /completion-messages --------------------------------------------------------------------


def test_completion_sends_query_as_the_query_input(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(COMPLETION_URL).respond(200, json=cb.COMPLETION_BLOCKING)
    answer = harness.call("completion_message", {"lang": "fr"}, "alice", query="Translate: hello", files=[IMAGE])
    # What a completion app's prompt reads is the input variable, not a top-level query.
    assert sent(route) == {"inputs": {"lang": "fr", "query": "Translate: hello"}, "user": "alice",
                           "response_mode": "blocking", "files": [IMAGE]}
    assert isinstance(answer, CompletionResponse)
    assert (answer.answer, answer.mode, answer.conversation_id) == ("Bonjour", "completion", None)
    assert answer.usage is not None
    assert answer.usage.total_tokens == 1168
    assert answer.usage.total_price == "0.0013030"


@pytest.mark.parametrize(("inputs", "query", "expected"), [
    pytest.param({"query": "hi"}, None, {"query": "hi"}, id="in-inputs-only"),
    pytest.param({"query": "hi"}, "hi", {"query": "hi"}, id="both-the-same"),
    pytest.param(None, None, {}, id="neither"),
])
def test_completion_query_given_once(harness: Harness, router: respx.MockRouter, inputs: Any, query: Any,
                                     expected: dict[str, Any]) -> None:
    route = router.post(COMPLETION_URL).respond(200, json=cb.COMPLETION_BLOCKING)
    harness.call("completion_message", inputs, query=query)
    assert sent(route)["inputs"] == expected
    assert "query" not in sent(route)


# --- stop, listing, site, meta ---------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("stop_chat_message", f"/chat-messages/{TASK_ID}/stop"),
    ("stop_completion_message", f"/completion-messages/{TASK_ID}/stop"),
])
def test_stop_endpoints(harness: Harness, router: respx.MockRouter, method: str, path: str) -> None:
    route = router.post(url(path)).respond(200, json=b.STOP_OK)
    assert harness.call(method, TASK_ID.upper(), "alice").result == "success"
    assert sent(route) == {"user": "alice"}
    assert harness.call(method, TASK_ID).result == "success"
    assert sent(route) == {"user": "airflow"}


def test_list_messages_paging(harness: Harness, router: respx.MockRouter) -> None:
    route = router.get(url("/messages")).respond(200, json=cb.MESSAGES_PAGE)
    page = harness.call("list_messages", cb.CONVERSATION_ID, "alice", first_id=cb.MESSAGE_ID, limit=2)
    assert dict(route.calls.last.request.url.params) == {
        "conversation_id": cb.CONVERSATION_ID, "user": "alice", "limit": "2", "first_id": cb.MESSAGE_ID}
    assert isinstance(page, MessagePage)
    assert (page.limit, page.has_more, len(page.data)) == (2, True, 2)
    older, newer = page.data
    assert (older.query, older.feedback and older.feedback.rating) == ("iphone 13 pro", "like")
    assert older.retriever_resources[0].document_name == "iPhone List"
    assert newer.parent_message_id == older.id
    assert (newer.agent_thoughts[0].tool, newer.agent_thoughts[0].observation) == ("search", "found")
    assert newer.message_files[0].belongs_to == "assistant"
    assert page.next_first_id == older.id  # Dify pages back in time from the oldest one shown

    harness.call("list_messages", cb.CONVERSATION_ID)
    assert dict(route.calls.last.request.url.params) == {
        "conversation_id": cb.CONVERSATION_ID, "user": "airflow", "limit": "20"}


def test_list_conversations_paging(harness: Harness, router: respx.MockRouter) -> None:
    route = router.get(url("/conversations")).respond(200, json=cb.CONVERSATIONS_PAGE)
    page = harness.call("list_conversations", "alice", last_id=cb.CONVERSATION_ID, limit=1, sort_by="created_at")
    assert dict(route.calls.last.request.url.params) == {
        "user": "alice", "limit": "1", "sort_by": "created_at", "last_id": cb.CONVERSATION_ID}
    assert isinstance(page, ConversationPage)
    assert page.data[0].inputs == {"book": "book", "myName": "Lucy"}
    assert page.next_last_id == cb.CONVERSATION_ID

    router.get(url("/conversations")).respond(200, json={**cb.CONVERSATIONS_PAGE, "has_more": False})
    last = harness.call("list_conversations")
    assert last.next_last_id is None
    assert dict(router.calls.last.request.url.params) == {"user": "airflow", "limit": "20",
                                                           "sort_by": "-updated_at"}


def test_get_site_and_meta_parse_the_recordings(harness: Harness, router: respx.MockRouter) -> None:
    router.get(url("/site")).respond(200, json=cb.SITE_04)
    router.get(url("/meta")).respond(200, json=cb.META_04B)
    site = harness.call("get_site")
    assert isinstance(site, SiteInfo)
    assert (site.title, site.icon, site.default_language, site.show_workflow_steps) == ("airflow-echo", "🤖",
                                                                                        "en-US", True)
    meta = harness.call("get_meta")
    assert isinstance(meta, AppMeta)
    assert meta.tool_icons == {}


# --- checks before any request ---------------------------------------------------------------------


def chat(*args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    return ("chat_message", args, kwargs)


def chat_stream(*args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    return ("chat_message", args, {**kwargs, "response_mode": "streaming"})


def completion(*args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    return ("completion_message", args, kwargs)


BAD_CALLS: list[Any] = [
    pytest.param(chat(""), "query", id="query-empty"),
    pytest.param(chat("  \n"), "query", id="query-blank"),
    pytest.param(chat(None), "query", id="query-none"),
    pytest.param(chat(42), "query", id="query-int"),
    pytest.param(chat_stream(" "), "query", id="stream-query-blank"),
    pytest.param(chat("hi", "text"), "inputs", id="inputs-str"),
    pytest.param(chat("hi", [("a", 1)]), "inputs", id="inputs-list"),
    pytest.param(chat_stream("hi", {1: "x"}), "inputs", id="stream-inputs-int-key"),
    pytest.param(chat("hi", None, ""), "user", id="user-empty"),
    pytest.param(chat("hi", None, "  "), "user", id="user-blank"),
    pytest.param(chat("hi", conversation_id="conv-1"), "conversation_id", id="conversation_id-word"),
    pytest.param(chat_stream("hi", conversation_id=cb.CONVERSATION_ID + "x"), "conversation_id",
                 id="stream-conversation_id-suffix"),
    pytest.param(chat("hi", workflow_id="draft"), "workflow_id", id="workflow_id-word"),
    pytest.param(chat("hi", files=[{"type": "image", "transfer_method": "remote_url"}]), "files[0].url",
                 id="files-no-url"),
    pytest.param(chat("hi", files={"type": "image"}), "files", id="files-dict"),
    pytest.param(chat("hi", response_mode="sse"), "response_mode", id="response_mode"),
    pytest.param(chat("hi", auto_generate_name="yes"), "auto_generate_name", id="auto_generate_name-str"),
    pytest.param(completion({"query": "a"}, query="b"), "query", id="completion-query-conflict"),
    pytest.param(completion(query=" "), "query", id="completion-query-blank"),
    pytest.param(completion("text"), "inputs", id="completion-inputs-str"),
    pytest.param(completion(None, ""), "user", id="completion-user-empty"),
    pytest.param(completion(files=[{"transfer_method": "local_file"}]), "files[0].upload_file_id",
                 id="completion-files-no-id"),
    pytest.param(("stop_chat_message", ("task-1",), {}), "task_id", id="stop-task_id"),
    pytest.param(("stop_completion_message", (TASK_ID, ""), {}), "user", id="stop-completion-user"),
    pytest.param(("list_messages", ("",), {}), "conversation_id", id="messages-no-conversation"),
    pytest.param(("list_messages", ("c1",), {}), "conversation_id", id="messages-conversation-word"),
    pytest.param(("list_messages", (cb.CONVERSATION_ID,), {"first_id": "m1"}), "first_id", id="messages-first_id"),
    pytest.param(("list_messages", (cb.CONVERSATION_ID,), {"limit": 0}), "limit", id="messages-limit-0"),
    pytest.param(("list_messages", (cb.CONVERSATION_ID,), {"limit": 101}), "limit", id="messages-limit-101"),
    pytest.param(("list_messages", (cb.CONVERSATION_ID,), {"limit": "20"}), "limit", id="messages-limit-str"),
    pytest.param(("list_messages", (cb.CONVERSATION_ID, " "), {}), "user", id="messages-user-blank"),
    pytest.param(("list_conversations", (), {"last_id": "c9"}), "last_id", id="conversations-last_id"),
    pytest.param(("list_conversations", (), {"sort_by": "name"}), "sort_by", id="conversations-sort_by"),
    pytest.param(("list_conversations", (), {"limit": True}), "limit", id="conversations-limit-bool"),
]


@pytest.mark.parametrize(("call", "field"), BAD_CALLS)
def test_bad_arguments_fail_before_any_request(harness: Harness, router: respx.MockRouter,
                                               call: tuple[str, tuple[Any, ...], dict[str, Any]],
                                               field: str) -> None:
    catch_all = router.route().respond(500)
    method, args, kwargs = call
    with pytest.raises(DifyConfigError) as info:
        harness.call(method, *args, **kwargs)  # a stream is checked when asked for, not when read
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert not catch_all.called
    assert not router.calls


# --- errors -----------------------------------------------------------------------------------------

ERRORS: list[Any] = [
    pytest.param(400, cb.NOT_CHAT_APP_74, DifyNotChatAppError, "'advanced-chat' mode", id="not_chat_app-recorded"),
    pytest.param(400, b.envelope(400, "conversation_completed",
                                 "The conversation has ended. Please start a new conversation."),
                 DifyConversationCompletedError, "new conversation", id="conversation_completed"),
    pytest.param(404, b.envelope(404, "not_found", "Conversation Not Exists."), DifyNotFoundError,
                 "belong to the user", id="404-conversation"),
    pytest.param(400, b.envelope(400, "provider_quota_exceeded", "Your quota for Dify Hosted OpenAI has been "
                                 "exhausted."), DifyProviderQuotaExceededError, "will not help",
                 id="provider_quota_exceeded"),
    pytest.param(400, b.envelope(400, "provider_not_initialize", "No valid model provider credentials found."),
                 DifyModelProviderError, "credentials", id="provider_not_initialize"),
    pytest.param(400, b.envelope(400, "model_currently_not_support", "Dify Hosted OpenAI trial currently not "
                                 "support the GPT-4 model."), DifyModelProviderError, "not available",
                 id="model_currently_not_support"),
    pytest.param(400, b.envelope(400, "invalid_param", "Agent Chat App does not support blocking mode"),
                 DifyInvalidInputError, "response_mode='streaming'", id="agent-blocking"),
    pytest.param(400, b.envelope(400, "app_unavailable", "App unavailable, please check your app configurations."),
                 DifyInvalidInputError, "model configuration", id="app_unavailable"),
]


@pytest.mark.parametrize(("status", "body", "cls", "hint"), ERRORS)
def test_chat_error_codes_are_typed_and_never_retried(harness: Harness, router: respx.MockRouter, status: int,
                                                      body: dict[str, Any], cls: type[DifyAPIError], hint: str) -> None:
    route = router.post(CHAT_URL).respond(status, json=body)
    with pytest.raises(cls) as info:
        harness.call("chat_message", "hi")
    exc = info.value
    assert type(exc) is cls
    assert (exc.status, exc.code, exc.message, exc.path) == (status, body["code"], body["message"], "/chat-messages")
    assert hint in exc.hint
    assert route.call_count == 1
    assert harness.sleeps == []


def test_not_chat_app_keeps_dify_s_words_and_names_no_operator(harness: Harness, router: respx.MockRouter) -> None:
    router.post(CHAT_URL).respond(400, json=cb.NOT_CHAT_APP_74)
    with pytest.raises(DifyNotChatAppError) as info:
        harness.call("chat_message", "ping")
    assert isinstance(info.value, DifyInvalidInputError)
    assert "Please check if your app mode matches the right API route." in str(info.value)
    assert "Operator" not in str(info.value)


def test_provider_quota_is_a_quota_error_and_still_a_400(harness: Harness, router: respx.MockRouter) -> None:
    router.post(COMPLETION_URL).respond(400, json=b.envelope(400, "provider_quota_exceeded", "exhausted"))
    with pytest.raises(DifyQuotaExceededError) as info:
        harness.call("completion_message", {"query": "x"})
    assert isinstance(info.value, DifyInvalidInputError)


def test_completion_route_with_another_app_s_key(harness: Harness, router: respx.MockRouter) -> None:
    # Dify's CompletionApi: any non-completion app is app_unavailable, not a mode code.
    router.post(COMPLETION_URL).respond(400, json=b.APP_UNAVAILABLE)
    with pytest.raises(DifyInvalidInputError) as info:
        harness.call("completion_message", {"query": "x"})
    assert "not a completion app" in info.value.hint


def test_too_many_requests_is_retried_like_a_run_start(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(CHAT_URL).mock(side_effect=[httpx.Response(429, json=b.TOO_MANY),
                                                    httpx.Response(200, json=cb.BLOCKING_71)])
    assert harness.call("chat_message", "ping").answer == "echo: ping"
    assert route.call_count == 2
    assert len(harness.sleeps) == 1


def test_too_many_requests_gives_up_as_rate_limit_error(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(CHAT_URL).respond(429, json=b.TOO_MANY)
    with pytest.raises(DifyRateLimitError):
        harness.call("chat_message", "ping")
    assert route.call_count == 3  # FAST_RETRY's max_attempts


@pytest.mark.parametrize("response_mode", ["blocking", "streaming"])
def test_chat_start_not_resent_after_a_read_timeout(harness: Harness, router: respx.MockRouter,
                                                    response_mode: str) -> None:
    route = router.post(CHAT_URL).mock(side_effect=[httpx.ReadTimeout("timed out"),
                                                    httpx.Response(200, json=cb.BLOCKING_71)])
    if response_mode == "blocking":
        with pytest.raises(DifyTimeoutError) as info:
            harness.call("chat_message", "ping")
        error: DifyError = info.value
    else:
        out = harness.drain("chat_message", "ping")
        assert out.error is not None
        error = out.error
    assert isinstance(error, DifyTimeoutError)
    assert error.sent is True
    assert route.call_count == 1  # a second request would be a second paid answer
    assert harness.sleeps == []


# --- the key stays secret --------------------------------------------------------------------------

SECRET_FRAGMENT = "Zq8vS3cr3tK3y"


def test_the_key_is_in_no_error_or_repr(harness: Harness, router: respx.MockRouter) -> None:
    assert SECRET_FRAGMENT in API_KEY
    errors: list[DifyError] = []
    for answer in (httpx.Response(401, json=b.envelope(401, "unauthorized", "Access token is invalid")),
                   httpx.Response(400, json=cb.NOT_CHAT_APP_74), httpx.ReadTimeout("timed out"),
                   httpx.Response(200, text="<html>oops</html>")):
        router.post(CHAT_URL).mock(side_effect=[answer])
        with pytest.raises(DifyError) as info:
            harness.call("chat_message", "ping")
        errors.append(info.value)
    router.post(CHAT_URL).mock(return_value=sse_response(cb.message("a"), cb.PROVIDER_QUOTA_ERROR))
    out = harness.drain("chat_message", "ping")
    assert isinstance(out.error, DifyProviderQuotaExceededError)
    errors.append(out.error)
    with pytest.raises(DifyError) as info:
        harness.call("chat_message", "")
    errors.append(info.value)
    for exc in errors:
        text = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc.__dict__)
        assert SECRET_FRAGMENT not in text, type(exc).__name__
    for obj in (out.stream, *out.events):
        assert SECRET_FRAGMENT not in repr(obj)
