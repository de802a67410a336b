"""Non-blocking client: for triggers, where one event loop serves every waiting task.

Mirrors :class:`~dify_provider.client.sync.DifyClient` method for method; all decisions live in
``_core``/``_api``, so only the awaiting differs.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any, Literal, Self, TypeVar, overload

import httpx
import tenacity
from httpx_sse import EventSource

from dify_provider.client import _api
from dify_provider.client._core import (
    Call,
    ClientConfig,
    raise_for_status,
    request_args,
    retryable,
    tenacity_args,
    transport_error,
)
from dify_provider.client._transport import AsyncServiceClient
from dify_provider.client._transport import fast_transport as fast_transport  # re-exported (hooks import it here)
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

T = TypeVar("T")


class AsyncWorkflowStream(_api.StreamState):
    """Async twin of :class:`~dify_provider.client.sync.WorkflowStream`."""

    def __init__(self, client: AsyncDifyClient, call: Call[Any]) -> None:
        super().__init__(call, client.config.stream_idle_timeout)
        self._client = client
        self._response: httpx.Response | None = None
        self._events: AsyncIterator[StreamEvent] | None = None

    async def _open(self) -> httpx.Response:
        async def send() -> httpx.Response:
            request = self._client.http.build_request(**request_args(self._client.config, self._call, stream=True))
            try:
                response = await self._client.http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise transport_error(exc, self._call.path) from exc
            if not response.is_success:
                await response.aread()
                await response.aclose()
                raise_for_status(response, self._call.path)
            return response

        response: httpx.Response = await tenacity.AsyncRetrying(**self._client._retry_args(self._call))(send)
        return response

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        # One iterator per stream: a caller may stop at ``workflow_started`` and resume later.
        if self._events is None:
            self._events = self._generate()
        return self._events

    async def _generate(self) -> AsyncIterator[StreamEvent]:
        if self._response is None:
            self._response = await self._open()
        try:
            async for sse in EventSource(self._response).aiter_sse():
                event = self.accept(sse)
                if event is not None:
                    yield event
                    if self.finished:
                        return
        except httpx.TransportError as exc:
            raise self.broken(exc) from exc
        finally:
            await self.aclose()
        raise self.ended_early()

    async def aclose(self) -> None:
        if self._response is not None:
            await self._response.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


#: Parsed URLs by text. A triggerer polls the same few thousand run URLs over and over, and
#: parsing one costs more than the rest of building its request; ``httpx.URL`` is immutable.
_url = functools.lru_cache(maxsize=4096)(httpx.URL)


class AsyncDifyClient(AsyncServiceClient[ClientConfig]):
    """Pooled, retrying async client for one Dify app. ``max_in_flight`` bounds concurrent
    requests so that thousands of callers queue in memory instead of thrashing the pool.

    Built for a triggerer polling thousands of runs, where each poll's CPU is the cost: when a
    ``transport`` is given (the shared triggerer client passes aiohttp's), plain calls go straight
    to it with headers and timeouts built once, skipping ``httpx.AsyncClient.send`` (auth flows,
    cookies, redirects, event hooks: none used here), and retries are set up only after a first
    attempt failed. Measured at 1,000 waiting runs, that is about half of a poll's CPU (see
    ``bench/``). Without a transport, requests take httpx's normal path (its pool, environment
    proxies); streams always do.
    """

    service = "Dify"

    def __init__(self, config: ClientConfig, *, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 max_in_flight: int | None = None) -> None:
        super().__init__(config, transport=transport, sleep=sleep, max_in_flight=max_in_flight)
        self._direct = transport
        # What build_request would produce for every call, computed once: httpx's default headers
        # overlaid with ours (with and without the key: GET / is unauthenticated), and timeouts.
        with_key = httpx.Headers(self.http.headers)
        with_key.update(config.headers())
        without_key = httpx.Headers(with_key)
        del without_key["Authorization"]
        self._headers = {True: with_key, False: without_key}
        self._timeouts = {"timeout": config.httpx_timeout().as_dict()}

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        raise_for_status(response, path)

    async def _call(self, call: Call[T]) -> T:
        started = time.monotonic()
        try:
            return await self._attempt(call)
        except Exception as exc:
            if not retryable(exc, call.retry):
                raise
            first = exc
        # Rare: hand over to the one retry policy (tenacity), replaying the first failure so it is
        # counted as attempt 1 and its time against the time limit.
        replay = [first]

        async def attempt() -> T:
            if replay:
                raise replay.pop()
            return await self._attempt(call)

        retrying = tenacity.AsyncRetrying(**tenacity_args(self.config.retry, call.retry, self._sleep,
                                                          elapsed=time.monotonic() - started))
        result: T = await retrying(attempt)
        return result

    async def _attempt(self, call: Call[T]) -> T:
        async with self._gate:
            try:
                response = await self._send(call)
            except httpx.TransportError as exc:
                raise self._transport_error(exc, call.path) from exc
        self._raise_for_status(response, call.path)
        return call.parse(response)

    async def _send(self, call: Call[Any]) -> httpx.Response:
        if self._direct is None:
            return await self.http.send(self.http.build_request(**request_args(self.config, call)))
        if self.http.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        request = httpx.Request(call.method, _url(call.url or self.config.base_url + call.path), params=call.params,
                                json=call.json, files=call.files, data=call.data, headers=self._headers[call.auth],
                                extensions=self._timeouts)
        response = await self._direct.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

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
