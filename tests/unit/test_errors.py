"""HTTP error answers become typed, actionable errors, identically in both clients."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from dify_provider.client import (
    DifyAPIError,
    DifyAuthError,
    DifyInvalidInputError,
    DifyNotFoundError,
    DifyNotWorkflowAppError,
    DifyQuotaExceededError,
    DifyRateLimitError,
    DifyServerError,
)

from . import _bodies as b
from ._endpoints import ENDPOINTS, Endpoint, endpoint_params
from ._harness import Harness, url


def _single_attempt(harness: Harness) -> Harness:
    return harness.with_retry(max_attempts=1)


@pytest.mark.parametrize("message", b.AUTH_MESSAGES)
def test_401_each_message_is_auth_error_with_hint(harness: Harness, router: respx.MockRouter, message: str) -> None:
    route = router.get(url("/info")).respond(
        401, json=b.envelope(401, "unauthorized", message), headers={"WWW-Authenticate": 'Bearer realm="api"'})
    with pytest.raises(DifyAuthError) as info:
        harness.call("get_info")
    exc = info.value
    assert (exc.status, exc.code, exc.message, exc.path) == (401, "unauthorized", message, "/info")
    assert "API key" in exc.hint
    assert message in str(exc)
    assert exc.hint in str(exc)
    assert route.call_count == 1  # never retried


# (response status, body, expected class, code, substring expected in the hint or None for "no hint")
MAPPING: list[Any] = [
    pytest.param(403, b.FORBIDDEN, DifyAuthError, "forbidden", "disabled", id="403-forbidden"),
    pytest.param(403, b.envelope(403, "app_api_disabled", "The app's API service has been disabled."),
                 DifyAuthError, "app_api_disabled", "disabled", id="403-newer-code"),
    pytest.param(404, b.NOT_FOUND, DifyNotFoundError, "not_found", None, id="404"),
    pytest.param(400, b.INVALID_USER, DifyInvalidInputError, "invalid_param", None, id="400-invalid_param"),
    pytest.param(400, b.NOT_WORKFLOW_APP, DifyNotWorkflowAppError, "not_workflow_app", "'workflow' mode",
                 id="400-not_workflow_app"),
    pytest.param(400, b.APP_UNAVAILABLE, DifyInvalidInputError, "app_unavailable", "publish it",
                 id="400-app_unavailable"),
    pytest.param(400, b.envelope(400, "bad_request", "Invalid workflow ID format"), DifyInvalidInputError,
                 "bad_request", None, id="400-bad_request"),
    pytest.param(413, b.envelope(413, "file_too_large", ""), DifyInvalidInputError, "file_too_large", None,
                 id="413"),
    pytest.param(429, b.TOO_MANY, DifyRateLimitError, "too_many_requests", "concurrent", id="429-too_many"),
    pytest.param(429, b.QUOTA, DifyQuotaExceededError, "rate_limit_error", "quota", id="429-quota"),
    pytest.param(500, b.INTERNAL, DifyServerError, "internal_server_error", None, id="500"),
    pytest.param(503, b.envelope(503, "unknown", "Service Unavailable"), DifyServerError, "unknown", None,
                 id="503"),
]


@pytest.mark.parametrize(("status", "body", "cls", "code", "hint"), MAPPING)
def test_status_maps_to_typed_error(harness: Harness, router: respx.MockRouter, status: int,
                                    body: dict[str, Any], cls: type[DifyAPIError], code: str,
                                    hint: str | None) -> None:
    router.get(url("/info")).respond(status, json=body)
    with pytest.raises(DifyAPIError) as info:
        _single_attempt(harness).call("get_info")
    exc = info.value
    assert type(exc) is cls
    assert (exc.status, exc.code, exc.message, exc.path) == (status, code, body["message"], "/info")
    if hint is None:
        assert exc.hint == ""
    else:
        assert hint in exc.hint
        assert hint in str(exc)
    assert exc.to_dict() == {"status": status, "code": code, "message": body["message"], "path": "/info"}


def test_not_workflow_app_is_an_invalid_input_error_and_says_what_to_do(
        harness: Harness, router: respx.MockRouter) -> None:
    router.post(url("/workflows/run")).respond(400, json=b.NOT_WORKFLOW_APP)
    with pytest.raises(DifyInvalidInputError) as info:
        harness.call("run_workflow", {"query": "hello"})
    assert isinstance(info.value, DifyNotWorkflowAppError)
    assert "not a workflow app" in str(info.value)
    assert "check the app's mode in the console" in str(info.value)


def test_invalid_param_keeps_params(harness: Harness, router: respx.MockRouter) -> None:
    router.post(url("/workflows/run")).respond(400, json=b.INVALID_USER)
    with pytest.raises(DifyInvalidInputError) as info:
        harness.call("run_workflow", {"query": "hello"})
    assert info.value.params == "user"
    assert "Arg user must be provided." in str(info.value)


def test_html_502_from_a_proxy_gives_a_readable_message(harness: Harness, router: respx.MockRouter) -> None:
    router.get(url("/info")).respond(502, text=b.NGINX_502, headers={"content-type": "text/html"})
    with pytest.raises(DifyServerError) as info:
        _single_attempt(harness).call("get_info")
    exc = info.value
    assert (exc.status, exc.code) == (502, "unknown")
    text = str(exc)
    assert "502 Bad Gateway" in text
    assert "\n" not in text
    assert "\r" not in text
    assert "<" not in exc.message  # the page title, not the markup
    assert len(exc.message) <= 200


@pytest.mark.parametrize(("content", "message"), [
    pytest.param("upstream connect error or disconnect/reset before headers.\r\nreset reason: overflow\r\n",
                 "upstream connect error or disconnect/reset before headers. reset reason: overflow", id="envoy"),
    pytest.param("<html>\r\n<body>\r\n<h1>Bad gateway</h1>\r\n</body>\r\n</html>\r\n",
                 "<html> <body> <h1>Bad gateway</h1> </body> </html>", id="html-without-title"),
    pytest.param("x" * 500, "x" * 200, id="long-text-truncated"),
])
def test_plain_text_error_bodies_are_one_bounded_line(harness: Harness, router: respx.MockRouter, content: str,
                                                      message: str) -> None:
    router.get(url("/info")).respond(502, text=content)
    with pytest.raises(DifyServerError) as info:
        _single_attempt(harness).call("get_info")
    assert info.value.message == message


@pytest.mark.parametrize("content", [b"", b"   ", b"null", b"[1, 2]", b'"oops"'])
def test_unreadable_error_bodies_fall_back_to_text_or_reason(harness: Harness, router: respx.MockRouter,
                                                             content: bytes) -> None:
    router.get(url("/info")).respond(504, content=content)
    with pytest.raises(DifyServerError) as info:
        _single_attempt(harness).call("get_info")
    exc = info.value
    assert (exc.status, exc.code) == (504, "unknown")
    assert exc.message == (content.decode().strip() or "Gateway Timeout")


@pytest.mark.parametrize("endpoint", endpoint_params(ENDPOINTS))
@pytest.mark.parametrize(("status", "body", "cls"), [
    pytest.param(404, b.NOT_FOUND, DifyNotFoundError, id="404"),
    pytest.param(429, b.QUOTA, DifyQuotaExceededError, id="429-quota"),
])
def test_every_endpoint_maps_errors_the_same_way(harness: Harness, router: respx.MockRouter, endpoint: Endpoint,
                                                 status: int, body: dict[str, Any],
                                                 cls: type[DifyAPIError]) -> None:
    route = router.request(endpoint.http, endpoint.url).respond(status, json=body)
    with pytest.raises(cls) as info:
        harness.call(endpoint.method, *endpoint.args, **endpoint.kwargs)
    assert info.value.path == httpx.URL(endpoint.url).path.removeprefix("/v1")
    assert route.call_count == 1
    assert harness.sleeps == []
