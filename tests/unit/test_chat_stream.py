"""Chat-family streams (``ChatStream`` / ``AsyncChatStream``): typed events, the assembled answer,
when the stream ends, and the stream contract shared with run streams (inactivity timeout, cut
streams, error events; hanging up is in ``test_chat_hangup.py``). The recorded stream is the byte-exact
body of a real Dify 1.13.2 chatflow (``75-...sse.txt``), cut where its chunks were cut."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import respx

from dify_provider.client import (
    AgentMessageEvent,
    AgentThoughtEvent,
    AsyncChatStream,
    AsyncDifyClient,
    ChatStream,
    DifyClient,
    DifyNotChatAppError,
    DifyProviderQuotaExceededError,
    DifyStreamEndedError,
    DifyStreamError,
    DifyStreamTimeoutError,
    MessageEndEvent,
    MessageEvent,
    MessageFileEvent,
    MessageReplaceEvent,
    StreamEvent,
    TtsMessageEndEvent,
    TtsMessageEvent,
    WorkflowFinishedEvent,
    WorkflowRunStatus,
    WorkflowStartedEvent,
    parse_chat_event,
)
from dify_provider.client.models import ErrorEvent, NodeFinishedEvent, NodeStartedEvent

from . import _chat_bodies as cb
from ._harness import PING, TASK_ID, Harness, frame, make_config, sse_response, url

CHAT_URL = url("/chat-messages")
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8"}
RECORDED_TYPES: list[type] = [WorkflowStartedEvent, NodeStartedEvent, MessageEvent, MessageEvent, NodeFinishedEvent,
                              NodeStartedEvent, NodeFinishedEvent, MessageEndEvent, WorkflowFinishedEvent]


# --- the recorded chatflow stream ----------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 333], ids=["as-recorded", "1", "7", "333"])
def test_recorded_chatflow_stream(harness: Harness, router: respx.MockRouter, chunk_size: int | None) -> None:
    rec = cb.recording(cb.STREAM_75)
    route = router.post(CHAT_URL).mock(return_value=cb.recorded_response(chunk_size=chunk_size))
    out = harness.with_config(user="airflow-test").drain("chat_message", "ping")
    assert out.error is None
    request = route.calls.last.request
    assert json.loads(request.content) == {**json.loads(rec["request"]["body"]), "auto_generate_name": True}
    assert request.headers["Accept"] == "text/event-stream"
    assert [type(event) for event in out.events] == RECORDED_TYPES
    assert [event.event for event in out.events] == rec["response"]["event_order"][1:]  # minus the ping
    stream = out.stream
    assert isinstance(stream, ChatStream if harness.kind == "sync" else AsyncChatStream)
    assert (stream.task_id, stream.message_id, stream.conversation_id, stream.workflow_run_id) == (
        cb.REC_TASK_ID, cb.REC_MESSAGE_ID, cb.REC_CONVERSATION_ID, cb.REC_RUN_ID)
    assert stream.answer == "echo: ping"
    assert (stream.finished, stream.is_chatflow) == (True, True)
    assert stream.usage is not None
    assert (stream.usage.total_tokens, stream.usage.currency, stream.usage.time_to_first_token) == (0, "USD", 0.022)
    assert stream.retriever_resources == []
    assert stream.message_end is out.events[-2]
    finished = stream.workflow_finished
    assert finished is out.events[-1]
    result = finished.result
    assert (result.status, result.error, result.total_steps, result.elapsed_time) == (
        WorkflowRunStatus.SUCCEEDED, None, 2, 0.029588)
    assert result.outputs == {"answer": "echo: ping", "files": []}
    # The chatflow's node events name the message too.
    assert {(event.message_id, event.conversation_id) for event in out.events} == {
        (cb.REC_MESSAGE_ID, cb.REC_CONVERSATION_ID)}
    summary = stream.summary()
    assert (summary["answer"], summary["workflow_status"], summary["workflow_run_id"]) == ("echo: ping",
                                                                                          "succeeded", cb.REC_RUN_ID)
    json.dumps(summary)


def test_ids_are_known_after_the_first_event_sync(router: respx.MockRouter) -> None:
    route = router.post(CHAT_URL).mock(return_value=cb.recorded_response())
    with DifyClient(make_config()) as client:
        stream = client.chat_message("ping", response_mode="streaming")
        assert route.call_count == 0  # nothing sent before it is read
        with stream:
            first = next(iter(stream))
            assert isinstance(first, WorkflowStartedEvent)
            assert (stream.task_id, stream.message_id, stream.conversation_id, stream.workflow_run_id) == (
                cb.REC_TASK_ID, cb.REC_MESSAGE_ID, cb.REC_CONVERSATION_ID, cb.REC_RUN_ID)
            assert (stream.answer, stream.finished) == ("", False)
        assert stream._response is not None
        assert stream._response.is_closed


def test_ids_are_known_after_the_first_event_async(router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=cb.recorded_response())

    async def scenario() -> None:
        async with AsyncDifyClient(make_config()) as client:
            stream = await client.chat_message("ping", response_mode="streaming")
            async with stream:
                async for first in stream:
                    assert isinstance(first, WorkflowStartedEvent)
                    break
            assert (stream.task_id, stream.message_id, stream.workflow_run_id) == (
                cb.REC_TASK_ID, cb.REC_MESSAGE_ID, cb.REC_RUN_ID)
            assert stream._response is not None
            assert stream._response.is_closed

    asyncio.run(scenario())


def test_chatflow_ends_at_workflow_finished_not_before(harness: Harness, router: respx.MockRouter) -> None:
    # Dify 1.13 sends the failed run's error event after workflow_finished: never read, like anything after it.
    router.post(CHAT_URL).mock(return_value=cb.recorded_response(
        extra=frame({"event": "error", "status": 400, "code": "invalid_param", "message": "Run failed"}),
        then=httpx.ReadTimeout("must not be reached")))
    out = harness.drain("chat_message", "ping")
    assert out.error is None
    assert isinstance(out.events[-1], WorkflowFinishedEvent)
    assert out.stream.finished


def test_chatflow_stream_ending_after_message_end(harness: Harness, router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=cb.recorded_response(cut_after="message_end"))
    out = harness.drain("chat_message", "ping")
    assert type(out.error) is DifyStreamEndedError
    assert "the message was complete" in str(out.error)
    assert cb.REC_RUN_ID in str(out.error)
    stream = out.stream
    assert (stream.answer, stream.finished, stream.workflow_finished) == ("echo: ping", False, None)
    assert stream.usage is not None


# --- chat, agent-chat and completion apps ---------------------------------------------------------


def test_chat_app_stream_ends_at_message_end(harness: Harness, router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=sse_response(
        PING, cb.message("Hel"), PING, cb.message("lo ☃"), cb.message_end(), cb.TTS, cb.TTS_END,
        b"data: {garbage\n\n", then=httpx.ReadTimeout("must not be reached")))
    out = harness.drain("chat_message", "hi")
    assert out.error is None
    assert [type(event) for event in out.events] == [MessageEvent, MessageEvent, MessageEndEvent]
    stream = out.stream
    assert (stream.answer, stream.finished, stream.is_chatflow) == ("Hello ☃", True, False)
    assert (stream.task_id, stream.message_id, stream.conversation_id) == (TASK_ID, cb.MESSAGE_ID,
                                                                           cb.CONVERSATION_ID)
    assert (stream.workflow_run_id, stream.workflow_finished) == (None, None)
    assert stream.usage is not None
    assert stream.usage.as_dict()["total_price"] == "0.0013030"
    assert stream.retriever_resources[0].score == 0.98457545
    assert isinstance(out.events[-1], MessageEndEvent)
    assert out.events[-1].created_at == cb.CREATED_AT


def test_agent_stream_assembles_answer_and_thoughts(harness: Harness, router: respx.MockRouter) -> None:
    other = "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"
    router.post(CHAT_URL).mock(return_value=sse_response(
        cb.agent_thought(1, thought="I should search"), cb.agent_message("The "),
        cb.agent_thought(1, thought="I should search", tool="search", tool_input='{"q": "x"}', observation="found"),
        cb.agent_thought(2, id=other, thought="done"), cb.agent_message("answer"), cb.message_end()))
    out = harness.drain("chat_message", "hi")
    assert out.error is None
    assert [type(event) for event in out.events] == [AgentThoughtEvent, AgentMessageEvent, AgentThoughtEvent,
                                                     AgentThoughtEvent, AgentMessageEvent, MessageEndEvent]
    stream = out.stream
    assert stream.answer == "The answer"
    thoughts = stream.agent_thoughts
    assert [t.id for t in thoughts] == [cb.THOUGHT_ID, other]  # one per step, in the order they began
    assert (thoughts[0].tool, thoughts[0].observation) == ("search", "found")  # its last state
    assert stream.finished


def test_message_replace_replaces_the_whole_answer(harness: Harness, router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=sse_response(
        cb.message("some "), cb.message("bad words"), cb.MESSAGE_REPLACE, cb.message_end()))
    out = harness.drain("chat_message", "hi")
    assert out.error is None
    stream = out.stream
    assert stream.answer == "I cannot answer that."
    assert isinstance(stream.replaced, MessageReplaceEvent)
    assert stream.replaced.reason == "output_moderation"


def test_message_files_and_file_shaped_text_chunks(harness: Harness, router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=sse_response(
        cb.message("A chart."), cb.MESSAGE_FILE, cb.MESSAGE_FILE_TEXT, cb.message_end()))
    out = harness.drain("chat_message", "draw")
    assert out.error is None
    stream = out.stream
    assert stream.answer == "A chart. Here it is."
    [made] = stream.files
    assert isinstance(made, MessageFileEvent)
    assert (made.id, made.type, made.belongs_to, made.is_text_chunk) == (cb.FILE_MSG_ID, "image", "assistant", False)
    assert made.url is not None
    assert made.url.startswith("https://files.example/")


def test_completion_stream(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(url("/completion-messages")).mock(return_value=sse_response(
        PING, cb.COMPLETION_MESSAGE, cb.COMPLETION_END, then=httpx.ReadTimeout("must not be reached")))
    out = harness.drain("completion_message", {"lang": "fr"}, query="hello")
    assert out.error is None
    assert json.loads(route.calls.last.request.content)["inputs"] == {"lang": "fr", "query": "hello"}
    stream = out.stream
    assert (stream.answer, stream.conversation_id, stream.message_id, stream.finished) == (
        "Bonjour", None, cb.MESSAGE_ID, True)


@pytest.mark.parametrize("ping", [
    pytest.param(b"event: ping\n\n", id="bare"),
    pytest.param(b"event: ping\ndata: ping\n\n", id="with-text-data"),
    pytest.param(b"data:\n\n", id="empty-data"),
    pytest.param(b": keep-alive comment\n\n", id="comment"),
])
def test_keepalive_frames_are_skipped(harness: Harness, router: respx.MockRouter, ping: bytes) -> None:
    router.post(CHAT_URL).mock(return_value=sse_response(ping, cb.message("a"), ping, ping, cb.message_end()))
    out = harness.drain("chat_message", "hi")
    assert out.error is None
    assert [event.event for event in out.events] == ["message", "message_end"]


def test_every_chat_event_is_typed() -> None:
    payloads = [cb.message("a"), cb.agent_message("a"), cb.agent_thought(1), cb.MESSAGE_FILE, cb.message_end(),
                cb.MESSAGE_REPLACE, cb.TTS, cb.TTS_END, cb.PROVIDER_QUOTA_ERROR,
                frame({"event": "reasoning_chunk", "task_id": TASK_ID, "data": {"reasoning": "hm"}})]
    parsed = [parse_chat_event(json.loads(p.removeprefix(b"data: "))) for p in payloads]
    assert [type(event) for event in parsed] == [MessageEvent, AgentMessageEvent, AgentThoughtEvent, MessageFileEvent,
                                                 MessageEndEvent, MessageReplaceEvent, TtsMessageEvent,
                                                 TtsMessageEndEvent, ErrorEvent, StreamEvent]
    assert parsed[-1].data == {"reasoning": "hm"}  # an event type not modelled is kept, not dropped
    assert not any(event.is_terminal for event in parsed[:8])  # the stream decides, by app kind


# --- errors and broken streams ---------------------------------------------------------------------


def test_error_event_raises_the_typed_error(harness: Harness, router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=sse_response(cb.message("a"), cb.PROVIDER_QUOTA_ERROR, cb.message("b")))
    out = harness.drain("chat_message", "hi")
    assert isinstance(out.error, DifyProviderQuotaExceededError)
    assert (out.error.status, out.error.code, out.error.path) == (400, "provider_quota_exceeded", "/chat-messages")
    assert [event.event for event in out.events] == ["message"]
    assert (out.stream.answer, out.stream.finished) == ("a", False)


def test_cut_stream(harness: Harness, router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=sse_response(
        cb.message("a"), then=httpx.RemoteProtocolError("peer closed connection")))
    out = harness.drain("chat_message", "hi")
    assert type(out.error) is DifyStreamError
    assert "cut" in str(out.error)
    assert "RemoteProtocolError" in str(out.error)
    assert (out.stream.message_id, out.stream.task_id) == (cb.MESSAGE_ID, TASK_ID)  # enough to stop it


def test_stream_ended_before_message_end(harness: Harness, router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=sse_response(cb.message("a"), PING))
    out = harness.drain("chat_message", "hi")
    assert type(out.error) is DifyStreamEndedError
    assert f"message {cb.MESSAGE_ID} may be incomplete" in str(out.error)


def test_inactivity_timeout(harness: Harness, router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=sse_response(
        cb.message("a"), PING, then=httpx.ReadTimeout("The read operation timed out")))
    out = harness.with_config(stream_idle_timeout=33.0).drain("chat_message", "hi")
    assert isinstance(out.error, DifyStreamTimeoutError)
    assert "33 s" in str(out.error)
    assert out.error.sent is True
    assert out.stream.task_id == TASK_ID
    assert harness.sleeps == []  # a broken stream is never re-started


def test_stream_start_refused_is_raised_once(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(CHAT_URL).respond(400, json=cb.NOT_CHAT_APP_74)
    out = harness.drain("chat_message", "ping")
    assert type(out.error) is DifyNotChatAppError
    assert (out.events, route.call_count) == ([], 1)


@pytest.mark.parametrize("frames", [
    pytest.param((cb.message("a"), cb.message_end(cb.OTHER_MESSAGE_ID)), id="message_end-of-another"),
    pytest.param((cb.message("a"), frame({"event": "message", "message_id": cb.OTHER_MESSAGE_ID, "task_id": TASK_ID,
                                          "answer": "b"})), id="chunk-of-another"),
])
def test_a_stream_mixing_messages_is_refused(harness: Harness, router: respx.MockRouter,
                                             frames: tuple[bytes, ...]) -> None:
    router.post(CHAT_URL).mock(return_value=sse_response(*frames))
    out = harness.drain("chat_message", "hi")
    assert type(out.error) is DifyStreamError
    assert cb.OTHER_MESSAGE_ID in str(out.error)
    assert out.stream.usage is None
