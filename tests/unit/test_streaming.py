"""``run_workflow(..., response_mode="streaming")``: SSE framing, typed events, stream contract."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import respx

from dify_provider.client import (
    AsyncDifyClient,
    DifyAuthError,
    DifyClient,
    DifyInvalidInputError,
    DifyNotWorkflowAppError,
    DifyQuotaExceededError,
    DifyServerError,
    DifyStreamEndedError,
    DifyStreamError,
    DifyStreamTimeoutError,
    DifyTimeoutError,
    StreamEvent,
    WorkflowFinishedEvent,
    WorkflowPausedEvent,
    WorkflowRunStatus,
    WorkflowStartedEvent,
)
from dify_provider.client.models import HumanInputRequiredEvent, NodeFinishedEvent, NodeStartedEvent, TextChunkEvent

from . import _bodies as b
from ._harness import PING, RUN_ID, TASK_ID, WORKFLOW_UUID, ChunkStream, Harness, frame, make_config, sse_response, url

RUN_URL = url("/workflows/run")

HAPPY = (
    frame(b.WORKFLOW_STARTED),
    PING,
    frame(b.NODE_STARTED),
    b": a comment line, ignored by SSE\n\n",
    frame(b.REASONING_CHUNK),
    frame(b.TEXT_CHUNK),
    PING,
    frame(b.NODE_FINISHED),
    frame(b.WORKFLOW_FINISHED),
)
HAPPY_TYPES: list[type] = [WorkflowStartedEvent, NodeStartedEvent, StreamEvent, TextChunkEvent, NodeFinishedEvent,
               WorkflowFinishedEvent]


def test_happy_stream_yields_typed_events_and_skips_pings(harness: Harness, router: respx.MockRouter) -> None:
    router.post(RUN_URL).mock(return_value=sse_response(*HAPPY))
    out = harness.stream()
    assert out.error is None
    assert [type(e) for e in out.events] == HAPPY_TYPES
    assert [e.event for e in out.events] == ["workflow_started", "node_started", "reasoning_chunk", "text_chunk",
                                             "node_finished", "workflow_finished"]
    assert (out.workflow_run_id, out.task_id, out.finished) == (RUN_ID, TASK_ID, True)

    started = out.events[0]
    assert isinstance(started, WorkflowStartedEvent)
    assert started.inputs == {"query": "hello"}
    unknown = out.events[2]
    assert type(unknown) is StreamEvent  # kept, not dropped
    assert unknown.data == b.REASONING_CHUNK["data"]
    assert not unknown.is_terminal
    assert out.events[3].data["text"] == "Héllo ☃ there!"

    finished = out.events[-1]
    assert isinstance(finished, WorkflowFinishedEvent)
    result = finished.result
    assert result.status is WorkflowRunStatus.SUCCEEDED
    assert result.outputs == {"text": "Héllo ☃ there!"}
    assert (result.id, result.workflow_id, result.total_tokens, result.exceptions_count) == (RUN_ID, WORKFLOW_UUID,
                                                                                             150, 0)


@pytest.mark.parametrize("ping", [
    pytest.param(b"event: ping\n\n", id="bare"),
    pytest.param(b"event: ping\ndata: ping\n\n", id="with-text-data"),
    pytest.param(b'event: ping\ndata: {"event": "ping"}\n\n', id="with-json-data"),
    pytest.param(b"data:\n\n", id="empty-data"),
])
def test_keepalive_frames_are_skipped(harness: Harness, router: respx.MockRouter, ping: bytes) -> None:
    router.post(RUN_URL).mock(return_value=sse_response(ping, frame(b.WORKFLOW_STARTED), ping, ping,
                                                        frame(b.WORKFLOW_FINISHED)))
    out = harness.stream()
    assert out.error is None
    assert [e.event for e in out.events] == ["workflow_started", "workflow_finished"]


@pytest.mark.parametrize("size", [1, 3, 7, 61])
def test_events_split_across_arbitrary_chunk_boundaries(harness: Harness, router: respx.MockRouter,
                                                        size: int) -> None:
    # Chunks cut mid-line, mid-"data:" prefix, mid-JSON and inside multi-byte UTF-8 characters.
    router.post(RUN_URL).mock(return_value=sse_response(*HAPPY, chunk_size=size))
    out = harness.stream()
    assert out.error is None
    assert [type(e) for e in out.events] == HAPPY_TYPES
    assert out.events[3].data["text"] == "Héllo ☃ there!"
    assert out.events[-1].data == b.WORKFLOW_FINISHED["data"]


def test_crlf_framing_is_accepted(harness: Harness, router: respx.MockRouter) -> None:
    body = b"".join(HAPPY).replace(b"\n", b"\r\n")
    router.post(RUN_URL).mock(return_value=sse_response(body, chunk_size=9))
    out = harness.stream()
    assert [type(e) for e in out.events] == HAPPY_TYPES


def test_stream_ends_at_workflow_finished(harness: Harness, router: respx.MockRouter) -> None:
    # Anything after the terminal event is never read, even an error or garbage.
    router.post(RUN_URL).mock(return_value=sse_response(
        frame(b.WORKFLOW_STARTED), frame(b.WORKFLOW_FINISHED), frame(b.TEXT_CHUNK), b"data: {garbage\n\n",
        then=httpx.ReadTimeout("must not be reached")))
    out = harness.stream()
    assert out.error is None
    assert [e.event for e in out.events] == ["workflow_started", "workflow_finished"]
    assert out.finished


def test_stream_ends_at_workflow_paused(harness: Harness, router: respx.MockRouter) -> None:
    router.post(RUN_URL).mock(return_value=sse_response(
        frame(b.WORKFLOW_STARTED), frame(b.NODE_STARTED), frame(b.HUMAN_INPUT_REQUIRED), frame(b.WORKFLOW_PAUSED),
        frame(b.TEXT_CHUNK), then=httpx.ReadTimeout("must not be reached")))
    out = harness.stream()
    assert out.error is None
    expected: list[type] = [WorkflowStartedEvent, NodeStartedEvent, HumanInputRequiredEvent, WorkflowPausedEvent]
    assert [type(e) for e in out.events] == expected
    assert out.events[-1].is_terminal
    assert out.events[2].data["form_token"] == "tok-1"
    assert (out.workflow_run_id, out.finished) == (RUN_ID, True)


def test_error_event_raises_the_typed_error(harness: Harness, router: respx.MockRouter) -> None:
    router.post(RUN_URL).mock(return_value=sse_response(
        frame(b.WORKFLOW_STARTED), frame(b.ERROR_INVALID_PARAM), frame(b.WORKFLOW_FINISHED)))
    out = harness.stream()
    assert isinstance(out.error, DifyInvalidInputError)
    assert (out.error.status, out.error.code) == (400, "invalid_param")
    assert out.error.message == "query is required in input form"
    assert out.error.path == "/workflows/run"
    assert [e.event for e in out.events] == ["workflow_started"]
    assert not out.finished


def test_error_event_as_first_event(harness: Harness, router: respx.MockRouter) -> None:
    # dify-api.md 3.1: in 1.13+ input validation can surface as an in-stream error event.
    router.post(RUN_URL).mock(return_value=sse_response(PING, frame(b.ERROR_INTERNAL)))
    out = harness.stream()
    assert isinstance(out.error, DifyServerError)
    assert out.error.status == 500
    assert out.events == []


def test_error_event_without_message_still_explains(harness: Harness, router: respx.MockRouter) -> None:
    router.post(RUN_URL).mock(return_value=sse_response(frame({"event": "error", "status": 400,
                                                               "code": "provider_quota_exceeded"})))
    out = harness.stream()
    assert isinstance(out.error, DifyInvalidInputError)
    assert "provider_quota_exceeded" in str(out.error)
    assert "error event in stream" in str(out.error)


def test_stream_without_terminal_event_names_the_run(harness: Harness, router: respx.MockRouter) -> None:
    router.post(RUN_URL).mock(return_value=sse_response(frame(b.WORKFLOW_STARTED), PING, frame(b.NODE_STARTED)))
    out = harness.stream()
    assert type(out.error) is DifyStreamEndedError
    assert RUN_ID in str(out.error)
    assert "poll" in str(out.error)
    assert len(out.events) == 2
    assert not out.finished


def test_empty_stream_raises_stream_error(harness: Harness, router: respx.MockRouter) -> None:
    router.post(RUN_URL).mock(return_value=sse_response(PING))
    out = harness.stream()
    assert type(out.error) is DifyStreamEndedError
    assert "ended before a terminal event" in str(out.error)
    assert "may still be going" not in str(out.error)


def test_silent_stream_raises_stream_timeout(harness: Harness, router: respx.MockRouter) -> None:
    router.post(RUN_URL).mock(return_value=sse_response(
        frame(b.WORKFLOW_STARTED), PING, then=httpx.ReadTimeout("The read operation timed out")))
    out = harness.with_config(stream_idle_timeout=33.0).stream()
    assert isinstance(out.error, DifyStreamTimeoutError)
    assert isinstance(out.error, DifyTimeoutError)  # callers catching timeouts see it too
    assert isinstance(out.error, DifyStreamError)
    assert "33 s" in str(out.error)
    assert out.error.sent is True
    assert (out.workflow_run_id, out.task_id) == (RUN_ID, TASK_ID)  # so the caller can poll it
    assert harness.sleeps == []  # a broken stream is never re-started


def test_cut_stream_raises_stream_error(harness: Harness, router: respx.MockRouter) -> None:
    router.post(RUN_URL).mock(return_value=sse_response(
        frame(b.WORKFLOW_STARTED), then=httpx.RemoteProtocolError("peer closed connection")))
    out = harness.stream()
    assert type(out.error) is DifyStreamError
    assert "RemoteProtocolError" in str(out.error)
    assert out.workflow_run_id == RUN_ID


@pytest.mark.parametrize(("data", "fragment"), [
    pytest.param(b'data: {"event": "node_started", "task_id": \n\n', "malformed", id="truncated-json"),
    pytest.param(b"data: not json at all\n\n", "malformed", id="not-json"),
    pytest.param(b"data: [1, 2, 3]\n\n", "non-object", id="json-array"),
    pytest.param(b'data: "workflow_finished"\n\n', "non-object", id="json-string"),
    pytest.param(frame({"event": "workflow_started", "data": {}}), "workflow_started", id="missing-ids"),
    pytest.param(frame({"event": "node_started", "task_id": TASK_ID, "data": None}), "node_started",
                 id="null-data"),
])
def test_garbage_in_the_stream_raises_stream_error(harness: Harness, router: respx.MockRouter, data: bytes,
                                                   fragment: str) -> None:
    router.post(RUN_URL).mock(return_value=sse_response(frame(b.WORKFLOW_STARTED), data, frame(b.WORKFLOW_FINISHED)))
    out = harness.stream()
    assert type(out.error) is DifyStreamError
    assert fragment in str(out.error)
    assert "/workflows/run" in str(out.error)
    assert [e.event for e in out.events] == ["workflow_started"]


def test_wrong_content_type_is_a_stream_error(harness: Harness, router: respx.MockRouter) -> None:
    # A proxy or an old server answering the streaming request with a JSON body.
    router.post(RUN_URL).respond(200, json=b.BLOCKING_SUCCEEDED)
    out = harness.stream()
    assert type(out.error) is DifyStreamError
    assert "text/event-stream" in str(out.error)


@pytest.mark.parametrize(("status", "body", "cls"), [
    pytest.param(400, b.NOT_WORKFLOW_APP, DifyNotWorkflowAppError, id="400-not_workflow_app"),
    pytest.param(400, b.INVALID_USER, DifyInvalidInputError, id="400-invalid_param"),
    pytest.param(401, b.envelope(401, "unauthorized", "Access token is invalid"), DifyAuthError, id="401"),
    pytest.param(403, b.FORBIDDEN, DifyAuthError, id="403"),
    pytest.param(429, b.QUOTA, DifyQuotaExceededError, id="429-quota"),
    pytest.param(500, b.INTERNAL, DifyServerError, id="500"),
    pytest.param(502, b.NGINX_502, DifyServerError, id="502-html"),
])
def test_non_2xx_stream_start_raises_mapped_error_once(harness: Harness, router: respx.MockRouter, status: int,
                                                       body: Any, cls: type[Exception]) -> None:
    kwargs = {"text": body} if isinstance(body, str) else {"json": body}
    route = router.post(RUN_URL).respond(status, **kwargs)
    out = harness.stream()
    assert type(out.error) is cls
    assert out.events == []
    assert route.call_count == 1
    assert out.workflow_run_id is None


@pytest.mark.parametrize("first", [
    pytest.param(httpx.ConnectError("refused"), id="ConnectError"),
    pytest.param(httpx.Response(503, text="busy"), id="503"),
    pytest.param(httpx.Response(429, json=b.TOO_MANY, headers={"Retry-After": "2"}), id="429-too_many"),
])
def test_stream_start_retried_when_no_run_started(harness: Harness, router: respx.MockRouter, first: Any) -> None:
    route = router.post(RUN_URL).mock(side_effect=[first, sse_response(*HAPPY)])
    out = harness.stream()
    assert out.error is None
    assert out.finished
    assert route.call_count == 2
    assert len(harness.sleeps) == 1


@pytest.mark.parametrize("first", [
    pytest.param(httpx.ReadTimeout("timed out"), id="ReadTimeout"),
    pytest.param(httpx.ConnectTimeout("timed out"), id="ConnectTimeout"),
    pytest.param(httpx.RemoteProtocolError("Server disconnected"), id="RemoteProtocolError"),
    pytest.param(httpx.Response(504, text="Gateway Timeout"), id="504"),
])
def test_stream_start_not_retried_when_a_run_may_have_started(harness: Harness, router: respx.MockRouter,
                                                              first: Any) -> None:
    route = router.post(RUN_URL).mock(side_effect=[first, sse_response(*HAPPY)])
    out = harness.stream()
    assert out.error is not None
    assert route.call_count == 1
    assert harness.sleeps == []


def test_stream_request_shape(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(url(f"/workflows/{WORKFLOW_UUID}/run")).mock(return_value=sse_response(*HAPPY))
    harness.with_config(stream_idle_timeout=42.0, timeout=7.0).stream(
        {"query": "hello", "n": 3}, user="alice", workflow_id=WORKFLOW_UUID,
        files=[{"type": "image", "transfer_method": "remote_url", "url": "https://example.com/a.png"}])
    request = route.calls.last.request
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["Authorization"].startswith("Bearer app-")
    assert json.loads(request.content) == {
        "inputs": {"query": "hello", "n": 3}, "user": "alice", "response_mode": "streaming",
        "files": [{"type": "image", "transfer_method": "remote_url", "url": "https://example.com/a.png"}]}
    # The idle timeout is the read timeout of the streamed body: an inactivity bound, not a total.
    assert request.extensions["timeout"]["read"] == 42.0
    assert request.extensions["timeout"]["connect"] == 10.0


def test_sync_stream_is_lazy_and_closes_on_break(router: respx.MockRouter) -> None:
    route = router.post(RUN_URL).mock(return_value=sse_response(*HAPPY))
    with DifyClient(make_config()) as client:
        stream = client.run_workflow({"query": "hello"}, response_mode="streaming")
        assert route.call_count == 0  # nothing sent until iterated
        with stream:
            for event in stream:
                assert isinstance(event, WorkflowStartedEvent)
                break
        assert stream._response is not None
        assert stream._response.is_closed
        assert stream.workflow_run_id == RUN_ID
        assert not stream.finished
    assert route.call_count == 1


def test_async_stream_is_lazy_and_closes_on_break(router: respx.MockRouter) -> None:
    route = router.post(RUN_URL).mock(return_value=sse_response(*HAPPY))

    async def scenario() -> None:
        async with AsyncDifyClient(make_config()) as client:
            stream = await client.run_workflow({"query": "hello"}, response_mode="streaming")
            assert route.call_count == 0
            async with stream:
                async for event in stream:
                    assert isinstance(event, WorkflowStartedEvent)
                    break
            assert stream._response is not None
            assert stream._response.is_closed
            assert stream.task_id == TASK_ID

    asyncio.run(scenario())
    assert route.call_count == 1


def test_response_closed_after_terminal_event(router: respx.MockRouter) -> None:
    router.post(RUN_URL).mock(return_value=sse_response(*HAPPY))
    with DifyClient(make_config()) as client:
        stream = client.run_workflow({"query": "hello"}, response_mode="streaming")
        events = list(stream)
        assert events[-1].is_terminal
        assert stream._response is not None
        assert stream._response.is_closed


def test_chunk_stream_helper_really_splits() -> None:
    # Guard for the test helper itself: a split test that did not split would prove nothing.
    response = sse_response(*HAPPY, chunk_size=3)
    assert isinstance(response.stream, ChunkStream)
    assert all(len(chunk) <= 3 for chunk in response.stream.chunks)
    assert b"".join(response.stream.chunks) == b"".join(HAPPY)
