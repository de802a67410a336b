"""Blocking client: for workers (operators, poke-mode sensors) and scripts."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self, TypeVar, overload

import httpx
import tenacity
from httpx_sse import EventSource

from dify_provider.client import _api
from dify_provider.client import errors as e
from dify_provider.client._core import (
    Call,
    ClientConfig,
    raise_for_status,
    request_args,
    transport_error,
)
from dify_provider.client._transport import SyncServiceClient
from dify_provider.client.models import (
    AppInfo,
    AppParameters,
    BlockingRunResponse,
    ServerInfo,
    StopResult,
    StreamEvent,
    UploadedFile,
    WorkflowLogPage,
    WorkflowRun,
)
from dify_provider.client.version import VERSION_HEADER, ServerVersion

T = TypeVar("T")


class WorkflowStream(_api.StreamState):
    """An open run stream: iterate for typed events; ``close()`` hangs up (on Dify 1.13+ the run
    keeps going; older servers orphan it). Remembers the run and task ids once announced.

    :meth:`abort` and :meth:`hang_up_at` end it from another thread, e.g. at a deadline.
    """

    def __init__(self, client: DifyClient, call: Call[Any]) -> None:
        super().__init__(call, client.config.stream_idle_timeout)
        self._client = client
        self._response: httpx.Response | None = None
        self._events: Iterator[StreamEvent] | None = None
        #: Set once :meth:`abort` was called: whatever the reading thread sees next is our doing.
        self.aborted = False

    def _open(self) -> httpx.Response:
        def send() -> httpx.Response:
            request = self._client.http.build_request(**request_args(self._client.config, self._call, stream=True))
            try:
                response = self._client.http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise transport_error(exc, self._call.path) from exc
            self._client._note_version(response)
            if not response.is_success:
                response.read()
                response.close()
                raise_for_status(response, self._call.path)
            return response

        response: httpx.Response = tenacity.Retrying(**self._client._retry_args(self._call))(send)
        return response

    def abort(self) -> None:
        """Hang up from any thread, and wake a read blocked in another.

        ``close()`` from another thread does not wake a blocked read: it returns only when the
        next bytes arrive, i.e. at Dify's next ping (10 s) or, on a silent stream, never before
        the inactivity timeout. Shutting the socket down ends that read at once; the reading
        thread then sees a broken stream and closes the response itself.
        """
        self.aborted = True
        response = self._response
        network = response.extensions.get("network_stream") if response is not None else None
        sock = network.get_extra_info("socket") if network is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # already closed: nothing left to wake
                # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would reset
                # the SSL object the reading thread is using.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        elif response is not None:
            response.close()  # a transport without a socket (tests' mocks): the best there is

    def hang_up_at(self, when: float) -> StreamDeadline:
        """A timer that aborts this stream at wall-clock time ``when`` (epoch seconds);
        use it as a context manager around the reading, and ask it whether it ``fired``."""
        return StreamDeadline(self, when)

    def __iter__(self) -> Iterator[StreamEvent]:
        # One iterator per stream: a caller may stop at ``workflow_started`` and resume later.
        if self._events is None:
            self._events = self._generate()
        return self._events

    def _generate(self) -> Iterator[StreamEvent]:
        if self._response is None:
            self._response = self._open()
        if self.aborted:  # hung up while the request was being sent
            self.close()
            raise e.DifyStreamError(f"the stream from {self._call.path} was hung up by this client")
        try:
            for sse in EventSource(self._response).iter_sse():
                event = self.accept(sse)
                if event is not None:
                    yield event
                    if self.finished:
                        return
        except httpx.TransportError as exc:
            raise self.broken(exc) from exc
        finally:
            self.close()
        raise self.ended_early()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamDeadline:
    """Aborts a :class:`WorkflowStream` at a wall-clock moment, from a timer thread."""

    def __init__(self, stream: WorkflowStream, when: float) -> None:
        self._stream = stream
        self._fired = threading.Event()
        self._timer = threading.Timer(max(0.0, when - time.time()), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self._fired.set()
        self._stream.abort()

    @property
    def fired(self) -> bool:
        return self._fired.is_set()

    def __enter__(self) -> Self:
        self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._timer.cancel()


class DifyClient(SyncServiceClient[ClientConfig]):
    """Pooled, retrying client for one Dify app (one API key). Use as a context manager, or
    call :meth:`close` yourself: the pool holds sockets.

    ``server_version`` is what the last answer's ``X-Version`` header said (None before any).
    """

    service = "Dify"
    version_header = VERSION_HEADER

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        raise_for_status(response, path)

    # --- API -------------------------------------------------------------------------------

    @overload
    def run_workflow(self, inputs: dict[str, Any], user: str | None = None, *,
                     response_mode: Literal["blocking"] = "blocking", files: list[dict[str, Any]] | None = None,
                     workflow_id: str | None = None) -> BlockingRunResponse: ...

    @overload
    def run_workflow(self, inputs: dict[str, Any], user: str | None = None, *,
                     response_mode: Literal["streaming"], files: list[dict[str, Any]] | None = None,
                     workflow_id: str | None = None) -> WorkflowStream: ...

    def run_workflow(self, inputs: dict[str, Any], user: str | None = None, *,
                     response_mode: Literal["blocking", "streaming"] = "blocking",
                     files: list[dict[str, Any]] | None = None,
                     workflow_id: str | None = None) -> BlockingRunResponse | WorkflowStream:
        """Start a run. Blocking mode waits for the end (proxies cut it at ~60-100 s: prefer
        streaming for anything long); streaming returns a :class:`WorkflowStream` at once."""
        call = _api.run_workflow(self.config, inputs, user, response_mode, files, workflow_id)
        if response_mode == "streaming":
            return WorkflowStream(self, call)
        result: BlockingRunResponse = self._call(call)
        return result

    def get_workflow_run(self, workflow_run_id: str) -> WorkflowRun:
        return self._call(_api.get_workflow_run(workflow_run_id))

    def stop_workflow_task(self, task_id: str, user: str | None = None) -> StopResult:
        return self._call(_api.stop_workflow_task(self.config, task_id, user))

    def list_workflow_logs(self, **query: Any) -> WorkflowLogPage:
        return self._call(_api.list_workflow_logs(**query))

    def upload_file(self, file: str | Path | bytes | IO[bytes], user: str | None = None, *,
                    filename: str | None = None, mime_type: str | None = None) -> UploadedFile:
        return self._call(_api.upload_file(self.config, file, user, filename, mime_type))

    def get_info(self) -> AppInfo:
        return self._call(_api.get_info())

    def get_parameters(self) -> AppParameters:
        return self._call(_api.get_parameters())

    def get_server_version(self) -> ServerInfo:
        """``GET /``: the JSON index of servers that answer it (a real 1.13.2 answers 404)."""
        return self._call(_api.get_server_version(self.config))

    def detect_version(self) -> ServerVersion:
        """The server's version at the cost of at most one request: the ``X-Version`` of an
        answer already received, else what one ``GET /`` shows (body or header); may be unknown."""
        if self.server_version:
            return _api.version_learned(self.server_version, None)
        root = None
        with contextlib.suppress(e.DifyError):
            root = self.get_server_version()
        return _api.version_learned(self.server_version, root)
