"""Chenyu's one documented endpoint as a :class:`~dify_provider.client._core.Call`, its config,
and how its answers become typed results or typed errors.

Chenyu wraps every answer in ``{"code", "msg", "data"}`` and may report a failure with HTTP 200
and ``code != 0``, so success is decided by the envelope, not only by the HTTP status. Starting
and cancelling runs are not documented; they are deliberately absent (add them here, as further
``Call`` builders, when Chenyu documents them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from dify_provider.client import errors as e
from dify_provider.client._core import Call, Retry, ServiceConfig, retry_after_header
from dify_provider.client.chenyu import errors as ce
from dify_provider.client.chenyu.models import ChenyuEnvelope, RunProgress

DEFAULT_BASE_URL = "https://www.chenyu.cn"
PROGRESS_PATH = "/api/open/v2/workflow/run/execution"
_RUN_ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


@dataclass(frozen=True)
class ChenyuConfig(ServiceConfig):
    """Everything needed to talk to Chenyu with one API key (``Authorization: Bearer``)."""

    default_base_url = DEFAULT_BASE_URL
    default_path = ""
    key_hint = "set the Chenyu open-API key"


def check_run_order_id(value: Any, name: str = "run_order_id") -> str:
    """A run order id such as ``wfrun_314ff7d8b7a5beff1388``, checked before any request."""
    text = str(value).strip() if value is not None else ""
    if not _RUN_ORDER_ID.fullmatch(text):
        shown = "empty" if not text else f"{text[:80]!r} is not a run order id"
        raise e.DifyConfigError(name, f"{shown} (expected letters, digits and _ . : -, e.g. "
                                      "'wfrun_314ff7d8b7a5beff1388')")
    return text


# --- answers -----------------------------------------------------------------------------


def error_for(http_status: int, envelope: ChenyuEnvelope | None, *, path: str, retry_after: float | None = None,
              fallback: str = "") -> ce.ChenyuAPIError:
    """The typed error for a failed answer. The class follows the meaning: ``TASK_NOT_FOUND``
    is not-found whatever the status; otherwise ``data.error.status_code`` (the engine's own
    status) when the HTTP status is a plain 200, else the HTTP status."""
    detail = envelope.error() if envelope else None
    status = http_status
    if http_status < 400 and detail is not None and detail.status_code:
        status = detail.status_code
    engine_code = detail.engine_code if detail else None
    code = engine_code or (f"code {envelope.code}" if envelope else "unknown")
    message = (detail.text() if detail else "") or (envelope.msg if envelope else "") or fallback
    cls: type[ce.ChenyuAPIError]
    hint = ""
    if engine_code == ce.TASK_NOT_FOUND or status == 404:
        cls, hint = ce.ChenyuNotFoundError, "check the run order id and that it belongs to this API key"
    elif status in (401, 403):
        cls, hint = ce.ChenyuAuthError, "check the Chenyu API key stored in the connection's password"
    elif status == 429:
        cls = ce.ChenyuRateLimitError
    elif status >= 500:
        cls = ce.ChenyuServerError
    elif status >= 400:
        cls = ce.ChenyuInvalidInputError
    else:
        cls = ce.ChenyuAPIError
    return cls(status, code, message or "no message", path=path, hint=hint, retry_after=retry_after,
               envelope_code=envelope.code if envelope else None, error=detail)


def _envelope(response: httpx.Response) -> ChenyuEnvelope | None:
    try:
        return ChenyuEnvelope.model_validate_json(response.content)
    except ValidationError:
        return None


def raise_for_status(response: httpx.Response, path: str) -> None:
    """HTTP errors; the envelope's ``code`` of a 2xx answer is checked when it is parsed."""
    if response.is_success:
        return
    envelope = _envelope(response)
    # Proxies answer 502/504 with HTML: show its start, never the headers.
    fallback = " ".join(response.text.split())[:200] or response.reason_phrase
    raise error_for(response.status_code, envelope, path=path, retry_after=retry_after_header(response),
                    fallback=fallback)


def _progress_parser(run_order_id: str) -> Callable[[httpx.Response], RunProgress]:
    def parse(response: httpx.Response) -> RunProgress:
        path = response.request.url.path
        snippet = response.text[:200].replace("\n", " ")
        envelope = _envelope(response)
        if envelope is None:
            raise e.DifyResponseError(f"unexpected body from Chenyu {path} (not a {{code, msg, data}} envelope); "
                                      f"body starts {snippet!r}")
        if envelope.code != 0:
            raise error_for(response.status_code, envelope, path=path)
        try:
            progress = RunProgress.model_validate(envelope.data)
        except ValidationError as exc:
            raise e.DifyResponseError(
                f"unexpected progress data from Chenyu {path}: {exc.error_count()} problem(s), first: "
                f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}; body starts {snippet!r}") from None
        return progress.model_copy(update={"run_order_id": run_order_id})

    return parse


def get_run_progress(run_order_id: str) -> Call[RunProgress]:
    rid = check_run_order_id(run_order_id)
    return Call("GET", PROGRESS_PATH, _progress_parser(rid), retry=Retry.SAFE, params={"run_order_id": rid})

