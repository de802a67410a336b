"""I/O-free heart of the client: configuration, request specs, error mapping and retry rules.

The sync and async clients only move bytes; every decision (what to send, what an answer means,
whether a failure may be retried) is made here once, so the two cannot disagree.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

import httpx
import tenacity
from pydantic import BaseModel, SecretStr, ValidationError

from dify_provider import __version__
from dify_provider.client import errors as e
from dify_provider.client.models import ErrorEnvelope

DEFAULT_BASE_URL = "https://api.dify.ai/v1"
DEFAULT_USER = "airflow"
USER_AGENT = f"airflow-provider-dify/{__version__}"

T = TypeVar("T")


def normalize_base_url(value: str | None, *, default: str = DEFAULT_BASE_URL, default_path: str = "/v1") -> str:
    """Accept what people paste: ``api.dify.ai``, ``https://host/v1/``, ``http://localhost``.

    A URL with no path gets ``default_path`` (``/v1``: where Dify mounts the service API; other
    backends pass their own, possibly empty); any other path is kept as given (self-hosted
    deployments behind a prefix).
    """
    raw = (value or "").strip() or default
    if "://" not in raw:
        raw = "https://" + raw
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise e.DifyConfigError("base_url", f"{raw!r} is not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise e.DifyConfigError("base_url", f"{raw!r} must be an http(s) URL with a host, e.g. {default}")
    # httpx percent-encodes what a host cannot contain ("exa mple.com") instead of refusing it.
    if "%" in url.host or (url.port is not None and not 0 < url.port < 65536):
        raise e.DifyConfigError("base_url", f"{raw!r} has an invalid host or port")
    path = url.path.rstrip("/") or default_path or "/"
    return str(url.copy_with(path=path, query=None, fragment=None)).rstrip("/")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter, by attempts and by total time."""

    max_attempts: int = 5
    max_elapsed: float = 120.0
    initial_backoff: float = 0.5
    max_backoff: float = 15.0
    #: A server's ``Retry-After`` is honoured up to this many seconds.
    max_retry_after: float = 60.0

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class ServiceConfig:
    """What every backend's client needs to reach one hosted service with one API key.

    The key is a ``SecretStr`` so that no repr, log line or traceback of a config can show it.
    Subclasses (one per backend) set the class-level defaults and may add fields; the transport
    (pool, timeouts, TLS, proxy, retries) is configured the same way for all of them.
    """

    #: Used when ``base_url`` is empty, and shown as the example of a valid URL (set per backend).
    default_base_url: ClassVar[str]
    #: Path appended to a base URL given without one (``""``: none).
    default_path: ClassVar[str] = ""
    #: What to tell a user whose key is empty.
    key_hint: ClassVar[str] = "set the API key"

    api_key: SecretStr
    base_url: str = ""
    timeout: float = 30.0
    connect_timeout: float = 10.0
    verify: bool | str = True
    proxy: str | None = None
    max_connections: int = 20
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Sent with every request (``X-Trace-Id``, ``traceparent``); pairs, so configs compare by value.
    extra_headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, SecretStr):
            object.__setattr__(self, "api_key", SecretStr(str(self.api_key)))
        if not self.api_key.get_secret_value().strip():
            raise e.DifyConfigError("api_key", f"is empty: {self.key_hint}")
        object.__setattr__(self, "base_url", normalize_base_url(
            self.base_url, default=self.default_base_url, default_path=self.default_path))
        for name in ("timeout", "connect_timeout"):
            if getattr(self, name) <= 0:
                raise e.DifyConfigError(name, "must be a positive number of seconds")

    def headers(self) -> dict[str, str]:
        return {**dict(self.extra_headers), "Authorization": f"Bearer {self.api_key.get_secret_value()}",
                "User-Agent": USER_AGENT}

    def httpx_timeout(self, read: float | None = None) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout, read=read or self.timeout)

    def stream_read_timeout(self) -> float:
        """Read timeout of a streamed body; a backend with streams overrides it."""
        return self.timeout

    def limits(self) -> httpx.Limits:
        return httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)


@dataclass(frozen=True)
class ClientConfig(ServiceConfig):
    """Everything needed to talk to one Dify app (one app API key)."""

    default_base_url: ClassVar[str] = DEFAULT_BASE_URL
    default_path: ClassVar[str] = "/v1"
    key_hint: ClassVar[str] = "set the Dify app API key (starts with 'app-')"

    #: A stream that sends nothing (not even Dify's 10 s pings) for this long is dead.
    stream_idle_timeout: float = 45.0
    user: str = DEFAULT_USER

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stream_idle_timeout <= 0:
            raise e.DifyConfigError("stream_idle_timeout", "must be a positive number of seconds")
        if self.stream_idle_timeout <= 10:
            raise e.DifyConfigError(
                "stream_idle_timeout", "must exceed Dify's 10 s ping interval or live streams look dead"
            )

    def stream_read_timeout(self) -> float:
        return self.stream_idle_timeout


class Retry(Enum):
    """How much re-sending a request is allowed to cost."""

    #: Reads and the stop call: re-sending changes nothing on the server.
    SAFE = "safe"
    #: Starting a run: Dify has no idempotency key, so re-send only when the first request
    #: provably did not start a run (no connection made, or rejected with 429/503).
    START = "start"
    #: Probes whose absence of an answer is itself the answer (``GET /``): one attempt.
    ONCE = "once"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call, described without doing it."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    retry: Retry = Retry.SAFE
    params: Mapping[str, Any] | None = None
    json: Any = None
    files: Any = None
    data: Mapping[str, Any] | None = None
    auth: bool = True
    #: Absolute URL override (the API root ``GET /``).
    url: str | None = None


def request_args(config: ServiceConfig, call: Call[Any], *, stream: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``httpx.Client.build_request``; streams get the idle timeout as
    their read timeout, which is exactly an inactivity timeout for a chunked SSE body."""
    headers = config.headers()
    if not call.auth:
        del headers["Authorization"]
    if stream:
        headers["Accept"] = "text/event-stream"
    timeout = config.httpx_timeout(config.stream_read_timeout() if stream else None)
    return {
        "method": call.method, "url": call.url or config.base_url + call.path, "params": call.params,
        "json": call.json, "files": call.files, "data": call.data, "headers": headers,
        "extensions": {"timeout": timeout.as_dict()},
    }


# --- error mapping ------------------------------------------------------------------------


def retry_after_header(response: httpx.Response) -> float | None:
    """Seconds a ``Retry-After`` header asks for (number or HTTP date); None when absent or garbage."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import time

    return max(0.0, when.timestamp() - time.time())


def _envelope(response: httpx.Response) -> ErrorEnvelope:
    try:
        return ErrorEnvelope.model_validate_json(response.content)
    except ValidationError:
        # Proxies answer with HTML (CRLF line ends, long markup): prefer the page's <title>.
        text = " ".join(response.text.split())
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        if text.startswith("<") and title and title.group(1).strip():
            text = f"{title.group(1).strip()} (HTML page, not a Dify API answer)"
        return ErrorEnvelope(code="unknown", message=text[:200] or response.reason_phrase)


_HINTS = {
    e.CODE_NOT_WORKFLOW_APP: "the API key belongs to an app that is not a workflow app; workflow "
    "endpoints need the key of a Dify app in 'workflow' mode (check the app's mode in the console)",
    e.CODE_NOT_CHAT_APP: "the API key belongs to an app that is not a chat app; chat endpoints need the key "
    "of a Dify app in 'chat', 'agent-chat' or 'advanced-chat' mode",
    e.CODE_APP_UNAVAILABLE: "the app has no published workflow: publish it in the Dify console",
    e.CODE_RATE_LIMIT_ERROR: "the workspace's workflow execution quota is used up; retrying will not help",
    e.CODE_TOO_MANY_REQUESTS: "the app's concurrent request limit was hit",
    e.CODE_CONVERSATION_COMPLETED: "start a new conversation (send no conversation_id)",
    e.CODE_PROVIDER_QUOTA_EXCEEDED: "the model provider's quota is used up; retrying will not help",
    e.CODE_PROVIDER_NOT_INITIALIZE: "the app's model provider has no credentials: set them in the Dify workspace",
    e.CODE_MODEL_CURRENTLY_NOT_SUPPORT: "the app's model is not available to this workspace",
}
# Where one code means different things by endpoint, the path's hint wins (longest prefix first).
_PATH_HINTS = {
    # Dify 1.13's CompletionApi answers every non-completion app with app_unavailable.
    (e.CODE_APP_UNAVAILABLE, "/completion-messages"): "the API key's app is not a completion app, or its model "
    "configuration is broken",
    (e.CODE_APP_UNAVAILABLE, "/chat-messages"): "the app's model configuration is broken: check it in the console",
    (e.CODE_NOT_FOUND, "/chat-messages"): "conversation_id or workflow_id unknown to this app; conversations "
    "belong to the user who started them",
    (e.CODE_NOT_FOUND, "/messages"): "conversation_id or first_id unknown to this app for this user",
    (e.CODE_NOT_FOUND, "/conversations"): "last_id unknown to this app for this user",
}
_CLASS_BY_CODE: dict[str, type[e.DifyAPIError]] = {
    e.CODE_NOT_WORKFLOW_APP: e.DifyNotWorkflowAppError,
    e.CODE_NOT_CHAT_APP: e.DifyNotChatAppError,
    e.CODE_CONVERSATION_COMPLETED: e.DifyConversationCompletedError,
    e.CODE_PROVIDER_QUOTA_EXCEEDED: e.DifyProviderQuotaExceededError,
    e.CODE_PROVIDER_NOT_INITIALIZE: e.DifyModelProviderError,
    e.CODE_MODEL_CURRENTLY_NOT_SUPPORT: e.DifyModelProviderError,
    e.CODE_FORM_SUBMITTED: e.DifyFormClosedError,
    e.CODE_FORM_EXPIRED: e.DifyFormClosedError,
}


def _hint(code: str, message: str, path: str) -> str:
    for (hint_code, prefix), hint in _PATH_HINTS.items():
        if code == hint_code and path.startswith(prefix):
            return hint
    if code == e.CODE_INVALID_PARAM and "does not support blocking mode" in message:
        return "agent apps only stream: use response_mode='streaming'"  # Dify's AgentChatAppGenerator
    return _HINTS.get(code, "")


def error_for(status: int, code: str, message: str, *, path: str = "", retry_after: float | None = None,
              params: str | None = None) -> e.DifyAPIError:
    """Build the typed error for an envelope; used for HTTP errors and in-stream ``error`` events."""
    cls: type[e.DifyAPIError]
    hint = _hint(code, message, path)
    if status == 401:
        cls, hint = e.DifyAuthError, "check the app API key stored in the connection's password"
    elif status == 403:
        cls = e.DifyAuthError
        hint = hint or "the app, its API access or its workspace is disabled in Dify"
    elif status == 404:
        cls = e.DifyNotFoundError
    elif status == 429 and code == e.CODE_RATE_LIMIT_ERROR:
        cls = e.DifyQuotaExceededError
    elif status == 429:
        cls = e.DifyRateLimitError
    elif status >= 500:
        cls = e.DifyServerError
    else:
        cls = _CLASS_BY_CODE.get(code, e.DifyInvalidInputError)
    return cls(status, code, message, path=path, hint=hint, retry_after=retry_after, params=params)


def raise_for_status(response: httpx.Response, path: str) -> None:
    if response.is_success:
        return
    env = _envelope(response)
    raise error_for(
        response.status_code, env.code, env.message, path=path,
        retry_after=retry_after_header(response), params=env.params,
    )


def transport_error(exc: httpx.TransportError, path: str, *, service: str = "Dify") -> e.DifyTransportError:
    """Translate httpx's transport failures, keeping only what is safe to show (never headers)."""
    what = type(exc).__name__
    detail = str(exc) or what
    if isinstance(exc, httpx.TimeoutException):
        return e.DifyTimeoutError(f"{service} did not answer {path} in time ({what}: {detail})", sent=True)
    # Only a refused/failed connect proves nothing was sent. (Plain httpx-aiohttp reports a server
    # disconnect as ConnectTimeout, which is why ConnectTimeout does not count as "not sent";
    # our PooledTransport re-maps it, but a caller may bring their own transport.)
    return e.DifyConnectionError(f"could not reach {service} for {path} ({what}: {detail})",
                                 sent=not isinstance(exc, httpx.ConnectError))


def retryable(exc: BaseException, kind: Retry) -> bool:
    if kind is Retry.ONCE:
        return False
    if kind is Retry.SAFE:
        if isinstance(exc, e.DifyTransportError):
            return True
        if isinstance(exc, e.DifyRateLimitError):
            return True
        return isinstance(exc, e.DifyServerError) and exc.status in (502, 503, 504)
    # Retry.START: never after a timeout or a broken connection: that may have started a paid run.
    if isinstance(exc, e.DifyTransportError):
        return exc.sent is False
    if isinstance(exc, e.DifyRateLimitError):
        return True
    return isinstance(exc, e.DifyServerError) and exc.status == 503


def retry_after_of(exc: BaseException | None) -> float | None:
    return exc.retry_after if isinstance(exc, e.DifyAPIError) else None


#: Retries are logged here (stdlib logging: a task's log in a worker, the trigger's in a triggerer).
log = logging.getLogger("dify_provider.client")


def _log_retry(state: tenacity.RetryCallState) -> None:
    """One line per retry, so a flaky or unreachable Dify shows in the task log while the call
    keeps trying (error texts never carry the key)."""
    exc = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    log.warning("Dify call failed (%s: %s); retrying in %.1f s", type(exc).__name__, exc, delay)


def tenacity_args(policy: RetryPolicy, kind: Retry, sleep: Callable[[float], Any], *,
                  elapsed: float = 0.0) -> dict[str, Any]:
    """Arguments for ``tenacity.Retrying``/``AsyncRetrying``: one policy for both clients.

    ``elapsed``: seconds already spent on this call before tenacity took over (the async client
    makes its first attempt without tenacity, see ``AsyncDifyClient._call``), so the time limit
    still counts from the first attempt.
    """

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return policy.backoff(state.attempt_number, retry_after_of(exc))

    return {
        "stop": tenacity.stop_after_attempt(policy.max_attempts)
        | tenacity.stop_before_delay(policy.max_elapsed - elapsed),
        "wait": wait,
        "retry": tenacity.retry_if_exception(lambda exc: retryable(exc, kind)),
        "before_sleep": _log_retry,
        "reraise": True,
        "sleep": sleep,
    }


# --- parsing ------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def parser(model: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            snippet = response.text[:200].replace("\n", " ")
            raise e.DifyResponseError(
                f"unexpected {model.__name__} body from {response.request.url.path}: "
                f"{exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}; body starts {snippet!r}"
            ) from None

    return parse
