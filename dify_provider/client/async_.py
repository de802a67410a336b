"""Non-blocking client: for triggers, where one event loop serves every waiting task.

Mirrors :class:`~dify_provider.client.sync.DifyClient` method for method; all decisions live in
``_core``/``_api``, so only the awaiting differs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Any, Literal, TypeVar, overload

import httpx

from dify_provider.client import _api
from dify_provider.client import errors as e
from dify_provider.client._core import ClientConfig, raise_for_status
from dify_provider.client._streams import AsyncEventStream
from dify_provider.client._streams import AsyncStreamDeadline as AsyncStreamDeadline  # re-exported
from dify_provider.client._transport import AsyncServiceClient
from dify_provider.client._transport import fast_transport as fast_transport  # re-exported (hooks import it here)
from dify_provider.client.chat.async_ import AsyncChatMethods
from dify_provider.client.human_input.async_ import AsyncHumanInputMethods
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


class AsyncWorkflowStream(AsyncEventStream):
    """Async twin of :class:`~dify_provider.client.sync.WorkflowStream`."""


class AsyncDifyClient(AsyncChatMethods, AsyncHumanInputMethods, AsyncServiceClient[ClientConfig]):
    """Pooled, retrying async client for one Dify app. ``max_in_flight`` bounds concurrent
    requests so that thousands of callers queue in memory instead of thrashing the pool; see
    :class:`~dify_provider.client._transport.AsyncServiceClient` for the triggerer's fast path.
    """

    service = "Dify"
    version_header = VERSION_HEADER

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        raise_for_status(response, path)

    # --- API -------------------------------------------------------------------------------

    @overload
    async def run_workflow(self, inputs: dict[str, Any], user: str | None = None, *,
                           response_mode: Literal["blocking"] = "blocking",
                           files: list[dict[str, Any]] | None = None,
                           workflow_id: str | None = None) -> BlockingRunResponse: ...

    @overload
    async def run_workflow(self, inputs: dict[str, Any], user: str | None = None, *,
                           response_mode: Literal["streaming"], files: list[dict[str, Any]] | None = None,
                           workflow_id: str | None = None) -> AsyncWorkflowStream: ...

    async def run_workflow(self, inputs: dict[str, Any], user: str | None = None, *,
                           response_mode: Literal["blocking", "streaming"] = "blocking",
                           files: list[dict[str, Any]] | None = None,
                           workflow_id: str | None = None) -> BlockingRunResponse | AsyncWorkflowStream:
        call = _api.run_workflow(self.config, inputs, user, response_mode, files, workflow_id)
        if response_mode == "streaming":
            return AsyncWorkflowStream(self, call)
        result: BlockingRunResponse = await self._call(call)
        return result

    async def get_workflow_run(self, workflow_run_id: str) -> WorkflowRun:
        return await self._call(_api.get_workflow_run(workflow_run_id))

    async def stop_workflow_task(self, task_id: str, user: str | None = None) -> StopResult:
        return await self._call(_api.stop_workflow_task(self.config, task_id, user))

    async def list_workflow_logs(self, **query: Any) -> WorkflowLogPage:
        return await self._call(_api.list_workflow_logs(**query))

    async def upload_file(self, file: str | Path | bytes | IO[bytes], user: str | None = None, *,
                          filename: str | None = None, mime_type: str | None = None) -> UploadedFile:
        return await self._call(_api.upload_file(self.config, file, user, filename, mime_type))

    async def get_info(self) -> AppInfo:
        return await self._call(_api.get_info())

    async def get_parameters(self) -> AppParameters:
        return await self._call(_api.get_parameters())

    async def get_server_version(self) -> ServerInfo:
        return await self._call(_api.get_server_version(self.config))

    async def detect_version(self) -> ServerVersion:
        """See :meth:`DifyClient.detect_version`."""
        if self.server_version:
            return _api.version_learned(self.server_version, None)
        root = None
        with contextlib.suppress(e.DifyError):
            root = await self.get_server_version()
        return _api.version_learned(self.server_version, root)
