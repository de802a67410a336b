"""The Dify endpoints as :class:`Call` specs, validated before anything is sent.

Sync and async clients both call these builders, so paths, parameters and retry classes are
written exactly once.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx
from httpx_sse import ServerSentEvent
from pydantic import ValidationError

from dify_provider.client import errors as e
from dify_provider.client._checks import (
    check_files,
    check_inputs,
    check_log_query,
    check_response_mode,
    check_user,
    check_uuid,
)
from dify_provider.client._core import (
    Call,
    ClientConfig,
    Retry,
    error_for,
    parser,
)
from dify_provider.client.models import (
    AppInfo,
    AppParameters,
    BlockingRunResponse,
    ErrorEvent,
    ServerInfo,
    StopResult,
    StreamEvent,
    UploadedFile,
    WorkflowLogPage,
    WorkflowRun,
    WorkflowStartedEvent,
    parse_event,
)
from dify_provider.client.status import WorkflowRunStatus
from dify_provider.client.version import ServerVersion, VersionSource


def _run_detail(response: httpx.Response) -> WorkflowRun:
    # Early-2024 servers answered an unknown id with HTTP 200 and every field null.
    body = response.content
    if re.match(rb'\s*\{\s*"id"\s*:\s*null\b', body):
        payload = json.loads(body)
        if all(v is None for v in payload.values()):
            raise e.DifyNotFoundError(404, "not_found", "Workflow run not found.",
                                      path=response.request.url.path, hint=NOT_FOUND_HINT)
    return parser(WorkflowRun)(response)


NOT_FOUND_HINT = "wrong id, another app's key, or older than the log retention"


def run_workflow(config: ClientConfig, inputs: Any, user: str | None, response_mode: str,
                 files: Any, workflow_id: str | None) -> Call[Any]:
    mode = check_response_mode(response_mode)
    body: dict[str, Any] = {"inputs": check_inputs(inputs), "user": check_user(user, config.user),
                            "response_mode": mode}
    checked_files = check_files(files)
    if checked_files is not None:
        body["files"] = checked_files
    path = "/workflows/run"
    if workflow_id is not None:
        path = f"/workflows/{check_uuid('workflow_id', workflow_id)}/run"
    return Call("POST", path, parser(BlockingRunResponse), retry=Retry.START, json=body)


@functools.lru_cache(maxsize=4096)  # the same few thousand runs are polled over and over
def get_workflow_run(run_id: str) -> Call[WorkflowRun]:
    return Call("GET", f"/workflows/run/{check_uuid('workflow_run_id', run_id)}", _run_detail)


def stop_workflow_task(config: ClientConfig, task_id: str, user: str | None) -> Call[StopResult]:
    return Call("POST", f"/workflows/tasks/{check_uuid('task_id', task_id)}/stop", parser(StopResult),
                json={"user": check_user(user, config.user)})


def list_workflow_logs(*, keyword: str | None = None, status: WorkflowRunStatus | str | None = None,
                       page: int = 1, limit: int = 20, created_at__before: str | None = None,
                       created_at__after: str | None = None,
                       created_by_end_user_session_id: str | None = None,
                       created_by_account: str | None = None) -> Call[WorkflowLogPage]:
    check_log_query(None if status is None else str(status), page, limit)
    params = {
        "keyword": keyword,
        "status": None if status is None else str(status),
        "page": page,
        "limit": limit,
        "created_at__before": created_at__before,
        "created_at__after": created_at__after,
        "created_by_end_user_session_id": created_by_end_user_session_id,
        "created_by_account": created_by_account,
    }
    return Call("GET", "/workflows/logs", parser(WorkflowLogPage),
                params={k: v for k, v in params.items() if v is not None})


def upload_file(config: ClientConfig, file: str | Path | bytes | IO[bytes], user: str | None,
                filename: str | None, mime_type: str | None) -> Call[UploadedFile]:
    if isinstance(file, str | Path):
        path = Path(file)
        if not path.is_file():
            raise e.DifyConfigError("file", f"{str(path)!r} is not a readable file")
        content: bytes | IO[bytes] = path.read_bytes()
        filename = filename or path.name
    else:
        content = file
    if not filename:
        raise e.DifyConfigError("filename", "is required when uploading bytes or a file object")
    if "/" in filename or "\\" in filename:
        raise e.DifyConfigError("filename", "must be a bare name without '/' or '\\' (Dify rejects it)")
    part = (filename, content, mime_type or "application/octet-stream")
    return Call("POST", "/files/upload", parser(UploadedFile), retry=Retry.START,
                files={"file": part}, data={"user": check_user(user, config.user)})


def get_info() -> Call[AppInfo]:
    return Call("GET", "/info", parser(AppInfo))


def get_parameters() -> Call[AppParameters]:
    return Call("GET", "/parameters", parser(AppParameters))


def get_server_version(config: ClientConfig) -> Call[ServerInfo]:
    # One attempt: a server that does not answer it (1.13.2: a 404 page) will not start to.
    return Call("GET", "/", parser(ServerInfo), retry=Retry.ONCE, auth=False, url=config.base_url + "/")


def version_learned(header: str | None, root: ServerInfo | None) -> ServerVersion:
    """What a ``GET /`` probe taught: its JSON body where the server answers it, else the
    ``X-Version`` header any of its answers carried (the probe's 404 page included)."""
    if root is not None:
        return ServerVersion(root.server_version, VersionSource.ROOT)
    if header:
        return ServerVersion(header, VersionSource.HEADER)
    return ServerVersion.unknown()


# --- streaming ----------------------------------------------------------------------------


def decode_sse(sse: ServerSentEvent, path: str,
               parse: Callable[[dict[str, Any]], StreamEvent] = parse_event) -> StreamEvent | None:
    """One SSE frame to a typed event; ``None`` for keep-alives. An ``error`` event raises.

    ``parse`` picks the event classes: the chat endpoints pass one that knows their events too.
    """
    if sse.event == "ping" or not sse.data.strip():
        return None
    try:
        payload = json.loads(sse.data)
    except ValueError:
        raise e.DifyStreamError(f"Dify sent a malformed event on {path}: {sse.data[:120]!r}") from None
    if not isinstance(payload, dict):
        raise e.DifyStreamError(f"Dify sent a non-object event on {path}: {sse.data[:120]!r}")
    try:
        event = parse(payload)
    except ValidationError as exc:
        raise e.DifyStreamError(f"Dify sent an unexpected {payload.get('event')!r} event on {path}: "
                                f"{exc.errors()[0]['msg']}") from None
    if isinstance(event, ErrorEvent):
        raise error_for(event.status, event.code, event.message or "error event in stream", path=path)
    return event


class StreamState:
    """What every stream shares, sync or async, workflow or chat: the ids announced so far,
    whether it ended, and how a broken transport reads to the caller. Only the awaiting differs
    (``_streams``); what an event means is :meth:`note`'s, which a chat stream extends."""

    def __init__(self, call: Call[Any], idle_timeout: float) -> None:
        self._call = call
        self._idle_timeout = idle_timeout
        self.workflow_run_id: str | None = None
        self.task_id: str | None = None
        self.finished = False
        #: Set once ``abort()`` was called: whatever the reading side sees next is our doing.
        self.aborted = False

    def accept(self, sse: ServerSentEvent) -> StreamEvent | None:
        """Decode one frame (``None`` for keep-alives) and remember what it tells."""
        event = decode_sse(sse, self._call.path, self.parse)
        if event is not None:
            self.note(event)
        return event

    def parse(self, payload: dict[str, Any]) -> StreamEvent:
        """A frame's payload as a typed event; the chat stream's also knows the chat events."""
        return parse_event(payload)

    def note(self, event: StreamEvent) -> None:
        if isinstance(event, WorkflowStartedEvent):
            self.workflow_run_id, self.task_id = event.workflow_run_id, event.task_id
        if event.is_terminal:
            self.finished = True

    def hung_up(self) -> e.DifyStreamError:
        return e.DifyStreamError(f"the stream from {self._call.path} was hung up by this client")

    def broken(self, exc: httpx.TransportError) -> e.DifyError:
        path = self._call.path
        if self.aborted:  # the socket we shut down, not the server
            return self.hung_up()
        if isinstance(exc, httpx.ReadTimeout):
            return e.DifyStreamTimeoutError(
                f"the stream from {path} was silent for {self._idle_timeout:g} s (no event, no ping)", sent=True)
        return e.DifyStreamError(f"the stream from {path} was cut: {type(exc).__name__}: {exc}")

    def ended_early(self) -> e.DifyStreamEndedError:
        where = f" (run {self.workflow_run_id} may still be going: poll it)" if self.workflow_run_id else ""
        return e.DifyStreamEndedError(f"the stream from {self._call.path} ended before a terminal event{where}")
