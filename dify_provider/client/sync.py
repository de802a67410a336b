"""Blocking client: for workers (operators, poke-mode sensors) and scripts."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Any, Literal, TypeVar, overload

import httpx

from dify_provider.client import _api
from dify_provider.client import errors as e
from dify_provider.client._core import ClientConfig, raise_for_status
from dify_provider.client._streams import StreamDeadline as StreamDeadline  # re-exported (operators import it here)
from dify_provider.client._streams import SyncEventStream
from dify_provider.client._transport import SyncServiceClient
from dify_provider.client.chat.sync import ChatMethods
from dify_provider.client.human_input.sync import HumanInputMethods
from dify_provider.client.models import (
    AppInfo,
    AppParameters,
    BlockingRunResponse,
    ServerInfo,
    StopResult,
    UploadedFile,
    WorkflowLogPage,
    WorkflowRun,
)
from dify_provider.client.version import VERSION_HEADER, ServerVersion

T = TypeVar("T")


class WorkflowStream(SyncEventStream):
    """An open run stream: iterate for typed events; ``close()`` hangs up (on Dify 1.13+ the run
    keeps going; older servers orphan it). Remembers the run and task ids once announced.

    :meth:`abort` and :meth:`hang_up_at` end it from another thread, e.g. at a deadline.
    """


class DifyClient(ChatMethods, HumanInputMethods, SyncServiceClient[ClientConfig]):
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
