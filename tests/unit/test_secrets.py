"""The API key never shows up in a repr, an error message, a traceback or a log line."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable

import httpx
import pytest
import respx

from dify_provider.client import AsyncDifyClient, ClientConfig, DifyClient, DifyError

from . import _bodies as b
from ._harness import API_KEY, PING, RUN_ID, Harness, frame, make_config, sse_response, url

SECRET_FRAGMENT = "Zq8vS3cr3tK3y"  # the distinctive middle of API_KEY
RUN_URL = url("/workflows/run")
Scenario = Callable[[Harness, respx.MockRouter], None]


def _raises(harness: Harness, method: str, *args: object, **kwargs: object) -> DifyError:
    with pytest.raises(DifyError) as info:
        harness.call(method, *args, **kwargs)
    return info.value


def _stream_error(harness: Harness) -> DifyError:
    out = harness.stream()
    assert out.error is not None
    return out.error


def failing_calls(harness: Harness, router: respx.MockRouter) -> list[DifyError]:
    """Drive every kind of failure once and return the errors raised."""
    errors: list[DifyError] = []
    for message in b.AUTH_MESSAGES:
        router.get(url("/info")).respond(401, json=b.envelope(401, "unauthorized", message))
        errors.append(_raises(harness, "get_info"))
    cases: list[tuple[str, httpx.Response | Exception]] = [
        ("/parameters", httpx.Response(403, json=b.FORBIDDEN)),
        (f"/workflows/run/{RUN_ID}", httpx.Response(404, json=b.NOT_FOUND)),
        ("/workflows/logs", httpx.Response(429, json=b.TOO_MANY, headers={"Retry-After": "1"})),
    ]
    for path, answer in cases:
        router.get(url(path)).mock(side_effect=[answer] * 3)
    errors += [
        _raises(harness, "get_parameters"),
        _raises(harness, "get_workflow_run", RUN_ID),
        _raises(harness, "list_workflow_logs"),
    ]
    for answer in (httpx.Response(502, text=b.NGINX_502), httpx.ConnectError("[Errno 111] Connection refused"),
                   httpx.ReadTimeout("timed out"), httpx.Response(200, text="<html>not json</html>")):
        router.get(url("/info")).mock(side_effect=[answer] * 3)
        errors.append(_raises(harness, "get_info"))
    router.get(url(f"/workflows/run/{RUN_ID}")).respond(200, json=b.RUN_DETAIL_ALL_NULL)
    errors.append(_raises(harness, "get_workflow_run", RUN_ID))

    for answer in (httpx.Response(400, json=b.INVALID_USER), httpx.Response(400, json=b.NOT_WORKFLOW_APP),
                   httpx.Response(429, json=b.QUOTA), httpx.Response(500, json=b.INTERNAL),
                   httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("Server disconnected")):
        router.post(RUN_URL).mock(side_effect=[answer])
        errors.append(_raises(harness, "run_workflow", {"query": "hello"}))
    for stream in (sse_response(frame(b.WORKFLOW_STARTED), frame(b.ERROR_INVALID_PARAM)),
                   sse_response(frame(b.WORKFLOW_STARTED), then=httpx.ReadTimeout("timed out")),
                   sse_response(frame(b.WORKFLOW_STARTED), b"data: {broken\n\n"),
                   sse_response(frame(b.WORKFLOW_STARTED), PING),
                   httpx.Response(401, json=b.envelope(401, "unauthorized", "Access token is invalid"))):
        router.post(RUN_URL).mock(return_value=stream)
        errors.append(_stream_error(harness))

    errors += [
        _raises(harness, "get_workflow_run", "not-a-uuid"),
        _raises(harness, "stop_workflow_task", "task-1"),
        _raises(harness, "run_workflow", {"x": float("nan")}),
        _raises(harness, "list_workflow_logs", status="running"),
    ]
    return errors


def test_errors_and_logs_never_contain_the_key(harness: Harness, router: respx.MockRouter,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # Airflow's logging config (loaded by integration tests in the same session) sets httpx to WARN.
    caplog.set_level(logging.DEBUG, logger="httpx")
    errors = failing_calls(harness, router)
    assert len(errors) == 26
    assert len({type(e) for e in errors}) >= 10  # a real variety of error paths
    for exc in errors:
        rendered = "".join(traceback.format_exception(exc))
        for text in (str(exc), repr(exc), rendered):
            assert SECRET_FRAGMENT not in text, type(exc).__name__
    # The requests really carried the key, and httpx really logged them: the checks above could fail.
    assert any(API_KEY in (call.request.headers.get("Authorization") or "") for call in router.calls)
    assert caplog.records
    assert SECRET_FRAGMENT not in caplog.text
    for record in caplog.records:
        assert SECRET_FRAGMENT not in record.getMessage()
        assert SECRET_FRAGMENT not in repr(record.args)


def test_config_and_client_reprs_hide_the_key() -> None:
    config = make_config()
    assert SECRET_FRAGMENT not in repr(config)
    assert SECRET_FRAGMENT not in str(config)
    assert SECRET_FRAGMENT not in repr(config.api_key)
    assert "**********" in repr(config)
    with DifyClient(config) as client:
        assert SECRET_FRAGMENT not in repr(client)
        assert repr(client) == "DifyClient(base_url='https://api.dify.ai/v1')"

    async def scenario() -> None:
        async with AsyncDifyClient(config) as client:
            assert SECRET_FRAGMENT not in repr(client)
            assert repr(client) == "AsyncDifyClient(base_url='https://api.dify.ai/v1')"

    asyncio.run(scenario())


def test_config_errors_do_not_echo_the_key() -> None:
    for kwargs in ({"base_url": "ftp://x"}, {"stream_idle_timeout": 5}, {"timeout": 0}):
        with pytest.raises(DifyError) as info:
            ClientConfig(api_key=API_KEY, **kwargs)  # type: ignore[arg-type]
        assert SECRET_FRAGMENT not in str(info.value)
        assert SECRET_FRAGMENT not in "".join(traceback.format_exception(info.value))
