"""Dify's error envelope, reproduced byte-for-byte in shape (dify-api.md section 6).

Dify renders every non-stream error as ``{"code", "message", "status"}`` (plus ``params`` for some
400s). Werkzeug exceptions derive ``code`` from their class name, so an HTTP status alone tells us
the code and default message a real server (or its Flask layer) would send; the table below keeps
those pairs in one place so fault injection and real handlers cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

#: Werkzeug's class-derived code and default description per status.
WERKZEUG_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The browser (or proxy) sent a request that this server could not understand."),
    401: (
        "unauthorized",
        "The server could not verify that you are authorized to access the URL requested.",
    ),
    403: (
        "forbidden",
        "You don't have the permission to access the requested resource. "
        "It is either read-protected or not readable by the server.",
    ),
    404: (
        "not_found",
        "The requested URL was not found on the server. "
        "If you entered the URL manually please check your spelling and try again.",
    ),
    405: ("method_not_allowed", "The method is not allowed for the requested URL."),
    412: ("precondition_failed", "The precondition on the request for the URL failed positive evaluation."),
    413: ("request_entity_too_large", "The data value transmitted exceeds the capacity limit."),
    415: ("unsupported_media_type", "The server does not support the media type transmitted in the request."),
    429: ("too_many_requests", "This user has exceeded an allotted request count. Try again later."),
    500: (
        "internal_server_error",
        "The server encountered an internal error and was unable to complete your request. "
        "Either the server is overloaded or there is an error in the application.",
    ),
    502: ("bad_gateway", "The proxy server received an invalid response from an upstream server."),
    503: (
        "service_unavailable",
        "The server is temporarily unable to service your request due to maintenance downtime "
        "or capacity problems. Please try again later.",
    ),
    504: ("gateway_timeout", "The connection to an upstream server timed out."),
}

NOT_WORKFLOW_APP = "Please check if your app mode matches the right API route."
MISSING_USER = "Arg user must be provided."
EMPTY_JSON = "Invalid JSON payload received or JSON payload is empty."


def envelope(status: int, code: str, message: str, params: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if params is not None:
        body["params"] = params
    return body


class DifyError(Exception):
    """An error a handler raises to answer with Dify's envelope instead of a result."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        params: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.params = params
        self.headers = dict(headers or {})

    @classmethod
    def http(cls, status: int, message: str | None = None, **kwargs: Any) -> DifyError:
        """An error named the way Werkzeug names its HTTP exceptions (``NotFound`` -> ``not_found``)."""
        code, default = WERKZEUG_ERRORS.get(status, ("unknown", "Unknown error."))
        return cls(status, code, message if message is not None else default, **kwargs)

    def response(self) -> JSONResponse:
        headers = dict(self.headers)
        if self.status == 401:
            # external_api.py adds this to every 401; clients and proxies key off it.
            headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return JSONResponse(envelope(self.status, self.code, self.message, self.params), self.status, headers=headers)


def invalid_param(message: str, params: str | None = None) -> DifyError:
    return DifyError(400, "invalid_param", message, params=params)


def not_found(message: str) -> DifyError:
    return DifyError(404, "not_found", message)


def not_workflow_app() -> DifyError:
    return DifyError(400, "not_workflow_app", NOT_WORKFLOW_APP)


def not_chat_app() -> DifyError:
    return DifyError(400, "not_chat_app", NOT_WORKFLOW_APP)  # the same words (error.py NotChatAppError)


def app_unavailable() -> DifyError:
    """``AppUnavailableError``: what the completion endpoints answer a non-completion app."""
    return DifyError(400, "app_unavailable", "App unavailable, please check your app configurations.")
