"""One exception hierarchy for everything the client can say went wrong.

Callers catch by meaning (auth, not found, rate limit, ...) rather than by HTTP status, and
every message says what to do next. No message ever contains the API key: errors are built from
Dify's response body and the request path only, never from headers.
"""

from __future__ import annotations

from typing import Any, ClassVar

# Dify error codes (dify-api.md section 6) that this library treats specially.
CODE_INVALID_PARAM = "invalid_param"
CODE_NOT_WORKFLOW_APP = "not_workflow_app"
CODE_APP_UNAVAILABLE = "app_unavailable"
CODE_NOT_FOUND = "not_found"
CODE_UNAUTHORIZED = "unauthorized"
CODE_FORBIDDEN = "forbidden"
CODE_TOO_MANY_REQUESTS = "too_many_requests"
CODE_RATE_LIMIT_ERROR = "rate_limit_error"
CODE_BAD_REQUEST = "bad_request"
CODE_INTERNAL = "internal_server_error"
# The chat family's (dify-api.md section 6; Dify's controllers/service_api/app/error.py).
CODE_NOT_CHAT_APP = "not_chat_app"
CODE_CONVERSATION_COMPLETED = "conversation_completed"
CODE_PROVIDER_NOT_INITIALIZE = "provider_not_initialize"
CODE_PROVIDER_QUOTA_EXCEEDED = "provider_quota_exceeded"
CODE_MODEL_CURRENTLY_NOT_SUPPORT = "model_currently_not_support"
CODE_FORM_SUBMITTED = "human_input_form_submitted"
CODE_FORM_EXPIRED = "human_input_form_expired"
CODE_INVALID_FORM_DATA = "invalid_form_data"


class DifyError(Exception):
    """Base of every error raised by this library."""


class DifyConfigError(DifyError, ValueError):
    """Bad configuration or argument, found before any request was sent.

    ``field`` names what to fix (``base_url``, ``inputs``, ``workflow_run_id``, ...).
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class DifyTransportError(DifyError):
    """The request did not get an HTTP answer (connection refused/reset, DNS, timeout)."""

    def __init__(self, message: str, *, sent: bool | None = None) -> None:
        # ``sent`` is False only when the request provably never reached the server
        # (connect error): the one case where re-sending a run start is safe.
        self.sent = sent
        super().__init__(message)


class DifyConnectionError(DifyTransportError):
    """Could not connect, or the connection broke before a full answer arrived."""


class DifyTimeoutError(DifyTransportError):
    """No answer within the configured timeout."""


class DifyStreamError(DifyError):
    """A streaming response broke its contract: went silent, was cut, or sent garbage."""


class DifyStreamTimeoutError(DifyStreamError, DifyTimeoutError):
    """The stream sent nothing, not even a ping, for longer than the inactivity timeout."""


class DifyStreamEndedError(DifyStreamError):
    """The server ended the stream cleanly before a terminal event (its own idle timeout, say)."""


class DifyResponseError(DifyError):
    """Dify answered with a body this library could not read (malformed JSON, wrong shape)."""


class DifyAPIError(DifyError):
    """Dify answered with an error envelope ``{code, message, status}``.

    Other backends subclass this (and the classes below, by meaning) so that retry rules and
    waiters that decide by meaning work for every backend; ``service`` names who answered.
    """

    service: ClassVar[str] = "Dify"

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        path: str = "",
        hint: str = "",
        retry_after: float | None = None,
        params: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.path = path
        self.hint = hint
        self.retry_after = retry_after
        self.params = params
        where = f" on {path}" if path else ""
        text = f"{self.service} API error {status} {code}{where}: {message}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "message": self.message, "path": self.path}


class DifyAuthError(DifyAPIError):
    """401/403: the key is wrong, or the app or workspace is disabled."""


class DifyNotFoundError(DifyAPIError):
    """404 (or an all-null run body from old servers): wrong id, another app's key, or expired."""


class DifyInvalidInputError(DifyAPIError):
    """400: the request is wrong and retrying it unchanged cannot help."""


class DifyNotWorkflowAppError(DifyInvalidInputError):
    """The key belongs to an app whose mode has no workflow endpoints."""


class DifyNotChatAppError(DifyInvalidInputError):
    """The key belongs to an app with no chat endpoints: only chat, agent-chat and advanced-chat apps have them."""


class DifyConversationCompletedError(DifyInvalidInputError):
    """The conversation was ended in Dify: a new message needs a new conversation."""


class DifyModelProviderError(DifyInvalidInputError):
    """The app's model cannot be called: no provider credentials, or the model is unavailable.
    Fixed in the Dify workspace's model settings, not by sending again."""


class DifyFormClosedError(DifyInvalidInputError):
    """412: the human-input form takes no answer any more (one answer per form, first wins)."""

    @property
    def submitted(self) -> bool:
        return self.code == CODE_FORM_SUBMITTED

    @property
    def expired(self) -> bool:
        return self.code == CODE_FORM_EXPIRED


class DifyRateLimitError(DifyAPIError):
    """429 ``too_many_requests``: the app's concurrency limit; retried with backoff."""


class DifyQuotaExceededError(DifyAPIError):
    """429 ``rate_limit_error``: the workspace's execution quota is used up; never retried."""


class DifyProviderQuotaExceededError(DifyQuotaExceededError, DifyInvalidInputError):
    """400 ``provider_quota_exceeded``: the model provider's quota (Dify-hosted trial credits, say)
    is used up; never retried. Also a 400 like any other, for callers that catch those."""


class DifyServerError(DifyAPIError):
    """5xx: Dify or a proxy in front of it failed."""


class DifyRunError(DifyError):
    """A run ended in a status the caller treats as failure (failed, stopped, ...).

    Raised by waiting helpers, not by the HTTP layer: Dify reports a failed run as HTTP 200.
    """

    def __init__(self, workflow_run_id: str, status: str, error: str | None, message: str = "") -> None:
        self.workflow_run_id = workflow_run_id
        self.status = status
        self.error = error
        detail = message or f"Dify workflow run {workflow_run_id} ended with status {status}"
        if error:
            detail += f": {error}"
        super().__init__(detail)
