"""Retry rules (``_core.retryable``): reads retry broadly, starting a run almost never.

Dify has no idempotency key on ``POST /workflows/run``: re-sending a request that may have
reached the server can start a second paid run, so those cases must send exactly one request.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from dify_provider.client import (
    AppInfo,
    BlockingRunResponse,
    DifyConnectionError,
    DifyError,
    DifyQuotaExceededError,
    DifyRateLimitError,
    DifyServerError,
    DifyTimeoutError,
    DifyTransportError,
)
from dify_provider.client._core import Retry, RetryPolicy, retryable, transport_error

from . import _bodies as b
from . import _chat_bodies as cb
from ._endpoints import ONCE_ENDPOINTS, SAFE_ENDPOINTS, START_ENDPOINTS, Endpoint, endpoint_params
from ._harness import RUN_ID, TASK_ID, WORKFLOW_UUID, FakeClock, Harness, url

OK_BODY: dict[str, dict[str, Any]] = {
    "get_info": b.APP_INFO,
    "get_parameters": b.APP_PARAMETERS,
    "get_workflow_run": b.RUN_DETAIL,
    "list_workflow_logs": b.LOGS_PAGE,
    "get_server_version": b.SERVER_INFO,
    "stop_workflow_task": b.STOP_OK,
    "run_workflow": b.BLOCKING_SUCCEEDED,
    "upload_file": b.UPLOADED,
    "chat_message": cb.BLOCKING_71,
    "completion_message": cb.COMPLETION_BLOCKING,
    "stop_chat_message": b.STOP_OK,
    "stop_completion_message": b.STOP_OK,
    "list_messages": cb.MESSAGES_PAGE,
    "list_conversations": cb.CONVERSATIONS_PAGE,
    "get_site": cb.SITE_04,
    "get_meta": cb.META_04B,
}


def ok(endpoint: Endpoint) -> httpx.Response:
    return httpx.Response(201 if endpoint.method == "upload_file" else 200, json=OK_BODY[endpoint.method])


def connect_error() -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused")


# Failures of the first attempt, by name, as respx side effects (an exception or a response).
FAILURES: dict[str, Any] = {
    "ConnectError": connect_error,
    "ConnectTimeout": lambda: httpx.ConnectTimeout("timed out"),
    "ReadTimeout": lambda: httpx.ReadTimeout("timed out"),
    "WriteTimeout": lambda: httpx.WriteTimeout("timed out"),
    "RemoteProtocolError": lambda: httpx.RemoteProtocolError("Server disconnected without sending a response."),
    "ReadError": lambda: httpx.ReadError("Connection reset by peer"),
    "429-too_many_requests": lambda: httpx.Response(429, json=b.TOO_MANY),
    "429-rate_limit_error": lambda: httpx.Response(429, json=b.QUOTA),
    "500": lambda: httpx.Response(500, json=b.INTERNAL),
    "502": lambda: httpx.Response(502, text=b.NGINX_502),
    "503": lambda: httpx.Response(503, text="Service Unavailable"),
    "504": lambda: httpx.Response(504, text="Gateway Timeout"),
    "400": lambda: httpx.Response(400, json=b.INVALID_USER),
    "401": lambda: httpx.Response(401, json=b.envelope(401, "unauthorized", "Access token is invalid")),
    "403": lambda: httpx.Response(403, json=b.FORBIDDEN),
    "404": lambda: httpx.Response(404, json=b.NOT_FOUND),
}
SAFE_RETRIED = ["ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "RemoteProtocolError", "ReadError",
                "429-too_many_requests", "502", "503", "504"]
START_RETRIED = ["ConnectError", "429-too_many_requests", "503"]
NEVER_RETRIED = ["429-rate_limit_error", "500", "400", "401", "403", "404"]


def failure(name: str) -> Any:
    return FAILURES[name]()


# --- reads and the stop call (Retry.SAFE) --------------------------------------------------------


@pytest.mark.parametrize("name", SAFE_RETRIED)
def test_safe_calls_retry_transient_failures(harness: Harness, router: respx.MockRouter, name: str) -> None:
    route = router.get(url(f"/workflows/run/{RUN_ID}")).mock(
        side_effect=[failure(name), httpx.Response(200, json=b.RUN_DETAIL)])
    assert harness.call("get_workflow_run", RUN_ID).id == RUN_ID
    assert route.call_count == 2
    assert len(harness.sleeps) == 1


def test_each_retry_is_logged_without_the_key(harness: Harness, router: respx.MockRouter,
                                              caplog: pytest.LogCaptureFixture) -> None:
    router.get(url(f"/workflows/run/{RUN_ID}")).mock(
        side_effect=[httpx.ReadTimeout("timed out"), httpx.Response(200, json=b.RUN_DETAIL)])
    with caplog.at_level("WARNING", logger="dify_provider.client"):
        harness.call("get_workflow_run", RUN_ID)
    (record,) = [r for r in caplog.records if r.name == "dify_provider.client"]
    assert "Dify call failed (DifyTimeoutError" in record.getMessage()
    assert "retrying in" in record.getMessage()
    assert "app-" not in record.getMessage()


@pytest.mark.parametrize("endpoint", endpoint_params(SAFE_ENDPOINTS))
def test_every_safe_endpoint_retries(harness: Harness, router: respx.MockRouter, endpoint: Endpoint) -> None:
    route = router.request(endpoint.http, endpoint.url).mock(side_effect=[failure("ReadTimeout"), ok(endpoint)])
    assert harness.call(endpoint.method, *endpoint.args, **endpoint.kwargs) is not None
    assert route.call_count == 2
    assert len(harness.sleeps) == 1


@pytest.mark.parametrize("endpoint", endpoint_params(ONCE_ENDPOINTS))
@pytest.mark.parametrize("name", SAFE_RETRIED)
def test_a_probe_is_sent_once(harness: Harness, router: respx.MockRouter, endpoint: Endpoint, name: str) -> None:
    # GET / tells the version where a server answers it; one that does not (1.13.2: a 404 page)
    # will not start to after a backoff.
    route = router.request(endpoint.http, endpoint.url).mock(side_effect=[failure(name), ok(endpoint)])
    with pytest.raises(DifyError):
        harness.call(endpoint.method, *endpoint.args, **endpoint.kwargs)
    assert route.call_count == 1
    assert harness.sleeps == []


@pytest.mark.parametrize("name", NEVER_RETRIED)
def test_safe_calls_do_not_retry_permanent_failures(harness: Harness, router: respx.MockRouter, name: str) -> None:
    # (every endpoint is also checked for 401/404/quota in test_errors)
    route = router.get(url(f"/workflows/run/{RUN_ID}")).mock(
        side_effect=[failure(name), httpx.Response(200, json=b.RUN_DETAIL)])
    with pytest.raises(DifyError):
        harness.call("get_workflow_run", RUN_ID)
    assert route.call_count == 1
    assert harness.sleeps == []


def test_500_on_a_get_is_not_retried(harness: Harness, router: respx.MockRouter) -> None:
    # Dify's 500s are bugs that repeat (dify-api.md 6); only gateway errors are transient.
    route = router.get(url(f"/workflows/run/{RUN_ID}")).respond(500, json=b.INTERNAL)
    with pytest.raises(DifyServerError) as info:
        harness.call("get_workflow_run", RUN_ID)
    assert info.value.status == 500
    assert route.call_count == 1


@pytest.mark.parametrize("status", [502, 503, 504])
def test_get_gives_up_after_max_attempts_with_the_typed_error(harness: Harness, router: respx.MockRouter,
                                                              status: int) -> None:
    route = router.get(url("/info")).respond(status, text="busy")
    harness = harness.with_retry(max_attempts=4)
    with pytest.raises(DifyServerError) as info:
        harness.call("get_info")
    assert info.value.status == status  # the last answer's error, not tenacity.RetryError
    assert route.call_count == 4
    assert len(harness.sleeps) == 3


def test_get_gives_up_on_transport_errors_with_connection_error(harness: Harness,
                                                                router: respx.MockRouter) -> None:
    route = router.get(url("/info")).mock(side_effect=connect_error())
    with pytest.raises(DifyConnectionError) as info:
        harness.call("get_info")
    assert route.call_count == 3
    assert info.value.sent is False
    assert "/info" in str(info.value)
    assert "Connection refused" in str(info.value)


def test_rate_limit_without_retry_after_backs_off_exponentially(harness: Harness,
                                                                router: respx.MockRouter) -> None:
    route = router.get(url("/info")).respond(429, json=b.TOO_MANY)
    harness = harness.with_retry(max_attempts=5, initial_backoff=1.0, max_backoff=3.0)
    with pytest.raises(DifyRateLimitError) as info:
        harness.call("get_info")
    assert info.value.retry_after is None
    assert route.call_count == 5
    # full jitter within [ceiling/2, ceiling], ceilings 1, 2, 3 (capped), 3
    ceilings = [1.0, 2.0, 3.0, 3.0]
    assert len(harness.sleeps) == 4
    for slept, ceiling in zip(harness.sleeps, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling


@pytest.mark.parametrize(("header", "expected"), [
    pytest.param("7", 7.0, id="seconds"),
    pytest.param("2.5", 2.5, id="fractional"),
    pytest.param("0", 0.0, id="zero"),
    pytest.param("-3", 0.0, id="negative-clamped"),
    pytest.param("3600", 20.0, id="capped-at-max_retry_after"),
    pytest.param("Mon, 01 Jan 2001 00:00:00 GMT", 0.0, id="http-date-in-the-past"),
])
def test_retry_after_is_honoured(harness: Harness, router: respx.MockRouter, header: str,
                                 expected: float) -> None:
    route = router.get(url("/info")).mock(side_effect=[
        httpx.Response(429, json=b.TOO_MANY, headers={"Retry-After": header}),
        httpx.Response(200, json=b.APP_INFO),
    ])
    harness = harness.with_retry(max_retry_after=20.0, initial_backoff=100.0, max_backoff=100.0)
    assert isinstance(harness.call("get_info"), AppInfo)
    assert route.call_count == 2
    assert harness.sleeps == [expected]


def test_retry_after_http_date_in_the_future(harness: Harness, router: respx.MockRouter) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    router.get(url("/info")).mock(side_effect=[
        httpx.Response(503, text="maintenance", headers={"Retry-After": when}),
        httpx.Response(200, json=b.APP_INFO),
    ])
    harness.call("get_info")
    [slept] = harness.sleeps
    assert 25.0 <= slept <= 30.0


def test_garbage_retry_after_falls_back_to_backoff(harness: Harness, router: respx.MockRouter) -> None:
    router.get(url("/info")).mock(side_effect=[
        httpx.Response(429, json=b.TOO_MANY, headers={"Retry-After": "soon"}),
        httpx.Response(200, json=b.APP_INFO),
    ])
    harness = harness.with_retry(initial_backoff=2.0, max_backoff=2.0)
    harness.call("get_info")
    [slept] = harness.sleeps
    assert 1.0 <= slept <= 2.0


def test_final_rate_limit_error_carries_retry_after(harness: Harness, router: respx.MockRouter) -> None:
    router.get(url("/info")).respond(429, json=b.TOO_MANY, headers={"Retry-After": "3"})
    with pytest.raises(DifyRateLimitError) as info:
        harness.call("get_info")
    assert info.value.retry_after == 3.0
    assert harness.sleeps == [3.0, 3.0]


def test_quota_exceeded_is_never_retried(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(url("/workflows/run")).respond(429, json=b.QUOTA, headers={"Retry-After": "1"})
    with pytest.raises(DifyQuotaExceededError):
        harness.call("run_workflow", {"query": "hello"})
    assert route.call_count == 1
    assert harness.sleeps == []


def test_max_elapsed_bounds_total_time(harness: Harness, router: respx.MockRouter, fake_clock: FakeClock) -> None:
    route = router.get(url("/info")).respond(503, text="busy", headers={"Retry-After": "4"})
    # Recorded sleeps advance tenacity's clock: after 4 + 4 s, the next 4 s would cross 10 s.
    harness = harness.with_retry(max_attempts=50, max_elapsed=10.0).with_clock(fake_clock)
    with pytest.raises(DifyServerError):
        harness.call("get_info")
    assert harness.sleeps == [4.0, 4.0]
    assert route.call_count == 3
    assert fake_clock.offset == 8.0


def test_a_wait_longer_than_max_elapsed_is_not_started(harness: Harness, router: respx.MockRouter) -> None:
    route = router.get(url("/info")).respond(429, json=b.TOO_MANY, headers={"Retry-After": "30"})
    harness = harness.with_retry(max_attempts=10, max_elapsed=10.0)
    with pytest.raises(DifyRateLimitError):
        harness.call("get_info")
    assert route.call_count == 1
    assert harness.sleeps == []


# --- starting a run (Retry.START) ----------------------------------------------------------------


@pytest.mark.parametrize("endpoint", endpoint_params(START_ENDPOINTS))
@pytest.mark.parametrize("name", START_RETRIED)
def test_start_is_retried_only_when_no_run_can_have_started(harness: Harness, router: respx.MockRouter,
                                                            endpoint: Endpoint, name: str) -> None:
    route = router.request(endpoint.http, endpoint.url).mock(side_effect=[failure(name), ok(endpoint)])
    result = harness.call(endpoint.method, *endpoint.args, **endpoint.kwargs)
    assert result is not None
    assert route.call_count == 2


MAY_HAVE_STARTED = [n for n in FAILURES if n not in START_RETRIED]
NO_SECOND_RUN: list[Any] = [
    pytest.param(endpoint, name, id=f"{name}-{endpoint.url.rsplit('/v1', 1)[1]}")
    for endpoint in START_ENDPOINTS
    # the full table for the plain run; the dangerous cases for run-by-id and upload
    for name in (MAY_HAVE_STARTED if endpoint is START_ENDPOINTS[0] else
                 ["ConnectTimeout", "ReadTimeout", "RemoteProtocolError", "500", "502", "504"])
]


@pytest.mark.parametrize(("endpoint", "name"), NO_SECOND_RUN)
def test_start_is_never_resent_when_a_run_may_have_started(harness: Harness, router: respx.MockRouter,
                                                           endpoint: Endpoint, name: str) -> None:
    route = router.request(endpoint.http, endpoint.url).mock(side_effect=[failure(name), ok(endpoint)])
    with pytest.raises(DifyError):
        harness.call(endpoint.method, *endpoint.args, **endpoint.kwargs)
    assert route.call_count == 1  # no second paid run
    assert harness.sleeps == []


@pytest.mark.parametrize(("name", "cls"), [
    ("ReadTimeout", DifyTimeoutError),
    ("ConnectTimeout", DifyTimeoutError),
    ("RemoteProtocolError", DifyConnectionError),
])
def test_start_transport_failures_are_marked_as_possibly_sent(harness: Harness, router: respx.MockRouter,
                                                               name: str, cls: type[DifyTransportError]) -> None:
    router.post(url("/workflows/run")).mock(side_effect=failure(name))
    with pytest.raises(cls) as info:
        harness.call("run_workflow", {"query": "hello"})
    assert info.value.sent is True
    assert "/workflows/run" in str(info.value)


def test_start_gives_up_after_max_attempts_of_503(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(url("/workflows/run")).respond(503, text="Service Unavailable")
    with pytest.raises(DifyServerError):
        harness.call("run_workflow", {"query": "hello"})
    assert route.call_count == 3


def test_blocking_run_after_a_refused_connection_sends_the_same_body(harness: Harness,
                                                                     router: respx.MockRouter) -> None:
    route = router.post(url("/workflows/run")).mock(side_effect=[connect_error(), httpx.Response(
        200, json=b.BLOCKING_SUCCEEDED)])
    result = harness.call("run_workflow", {"query": "hello"}, "alice")
    assert isinstance(result, BlockingRunResponse)
    first, second = (call.request for call in route.calls)
    assert first.content == second.content
    assert first.headers["Authorization"] == second.headers["Authorization"]


def test_retried_upload_resends_the_whole_file_object(harness: Harness, router: respx.MockRouter) -> None:
    payload = b"%PDF-1.4 twelve"
    route = router.post(url("/files/upload")).mock(side_effect=[
        httpx.Response(503, text="busy"), httpx.Response(201, json=b.UPLOADED)])
    harness.call("upload_file", io.BytesIO(payload), filename="report.pdf")
    assert route.call_count == 2
    for call in route.calls:
        assert payload in call.request.content


def test_stop_is_retried_like_a_get(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(url(f"/workflows/tasks/{TASK_ID}/stop")).mock(side_effect=[
        httpx.ReadTimeout("timed out"), httpx.Response(502, text=b.NGINX_502), httpx.Response(200, json=b.STOP_OK)])
    assert harness.with_retry(max_attempts=5).call("stop_workflow_task", TASK_ID).result == "success"
    assert route.call_count == 3


def test_run_by_workflow_id_follows_start_rules(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(url(f"/workflows/{WORKFLOW_UUID}/run")).respond(504, text="Gateway Timeout")
    with pytest.raises(DifyServerError):
        harness.call("run_workflow", {"query": "hello"}, workflow_id=WORKFLOW_UUID)
    assert route.call_count == 1


# --- the rules themselves -------------------------------------------------------------------------


def test_transport_error_marks_only_connect_errors_as_not_sent() -> None:
    assert transport_error(httpx.ConnectError("refused"), "/p").sent is False
    for exc in (httpx.ConnectTimeout("t"), httpx.ReadTimeout("t"), httpx.WriteTimeout("t"),
                httpx.PoolTimeout("t"), httpx.RemoteProtocolError("r"), httpx.ReadError("r")):
        assert transport_error(exc, "/p").sent is True, type(exc).__name__


@pytest.mark.parametrize(("exc", "safe", "start"), [
    (DifyConnectionError("x", sent=False), True, True),
    (DifyConnectionError("x", sent=True), True, False),
    (DifyConnectionError("x", sent=None), True, False),
    (DifyTimeoutError("x", sent=True), True, False),
    (DifyRateLimitError(429, "too_many_requests", "m"), True, True),
    (DifyQuotaExceededError(429, "rate_limit_error", "m"), False, False),
    (DifyServerError(500, "internal_server_error", "m"), False, False),
    (DifyServerError(502, "unknown", "m"), True, False),
    (DifyServerError(503, "unknown", "m"), True, True),
    (DifyServerError(504, "unknown", "m"), True, False),
    (ValueError("not ours"), False, False),
])
def test_retryable_table(exc: BaseException, safe: bool, start: bool) -> None:
    assert retryable(exc, Retry.SAFE) is safe
    assert retryable(exc, Retry.START) is start
    assert retryable(exc, Retry.ONCE) is False


def test_backoff_honours_retry_after_and_caps_it() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=8.0, max_retry_after=30.0)
    assert policy.backoff(1, 12.0) == 12.0
    assert policy.backoff(1, 999.0) == 30.0
    assert policy.backoff(1, -1.0) == 0.0
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        for _ in range(20):
            assert ceiling / 2 <= policy.backoff(attempt, None) <= ceiling
