"""Shared test machinery: one adapter drives both clients, so each behaviour is written once.

``Harness.call("get_info")`` runs the method on a fresh :class:`DifyClient` or, for the async
flavour, on a fresh :class:`AsyncDifyClient` inside ``asyncio.run``. Retry sleeps are recorded
through the clients' injectable ``sleep=`` argument; nothing ever really sleeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from dify_provider.client import AsyncDifyClient, ClientConfig, DifyClient, DifyError, RetryPolicy, StreamEvent

API_KEY = "app-Zq8vS3cr3tK3y-never-print-me"
BASE = "https://api.dify.ai/v1"

TASK_ID = "c3800678-a077-43df-a102-53f23ed20b88"
RUN_ID = "fb47b2e6-5a3b-4a61-b2c0-5f1e4b3e9d21"
WORKFLOW_UUID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
APP_ID = "0e7a9d7e-2f2b-4b53-9a3f-8a1e8f5c6b7d"
FILE_ID = "72fa9618-8f89-4a37-9b33-7e1178a24a67"

FAST_RETRY = RetryPolicy(max_attempts=3, max_elapsed=60.0, initial_backoff=0.01, max_backoff=0.04)


def url(path: str) -> str:
    return BASE + path


def make_config(**overrides: Any) -> ClientConfig:
    # verify=False: respx answers before any TLS happens, and loading the CA bundle costs ~60 ms
    # per client, which would dominate the suite's runtime.
    values: dict[str, Any] = {"api_key": API_KEY, "base_url": BASE, "retry": FAST_RETRY, "verify": False}
    values.update(overrides)
    return ClientConfig(**values)


# --- byte streams ---------------------------------------------------------------------------


class ChunkStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body delivered in the given chunks, then optionally an exception (a silent or
    cut connection). Re-iterable, so a retried request gets the same body again."""

    def __init__(self, chunks: Sequence[bytes], then: Exception | None = None) -> None:
        self.chunks = list(chunks)
        self.then = then

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.then is not None:
            raise self.then

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.then is not None:
            raise self.then


def frame(payload: dict[str, Any]) -> bytes:
    """One Dify SSE frame: ``data: <one-line JSON>`` and a blank line (dify-api.md 4.1)."""
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


PING = b"event: ping\n\n"


def split(body: bytes, size: int) -> list[bytes]:
    return [body[i:i + size] for i in range(0, len(body), size)]


def sse_response(*frames: bytes, chunk_size: int | None = None, then: Exception | None = None,
                 status: int = 200) -> httpx.Response:
    body = b"".join(frames)
    chunks = split(body, chunk_size) if chunk_size else [f for f in frames]
    return httpx.Response(status, headers={"content-type": "text/event-stream; charset=utf-8"},
                          stream=ChunkStream(chunks, then))


# --- the adapter ----------------------------------------------------------------------------


class FakeClock:
    """Stands in for ``time`` inside tenacity; a harness given this clock advances it by every
    sleep it records, so ``max_elapsed`` can be tested without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@dataclass
class StreamOutcome:
    events: list[StreamEvent]
    error: DifyError | None
    workflow_run_id: str | None
    task_id: str | None
    finished: bool


@dataclass
class Drained:
    """A stream read to its end (or to the error it raised), and the stream object itself."""

    events: list[StreamEvent]
    error: DifyError | None
    stream: Any


@dataclass
class Harness:
    kind: Literal["sync", "async"]
    config: ClientConfig = field(default_factory=make_config)
    sleeps: list[float] = field(default_factory=list)
    clock: FakeClock | None = None

    def with_config(self, **overrides: Any) -> Harness:
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **overrides), sleeps=[])

    def with_retry(self, **overrides: Any) -> Harness:
        return self.with_config(retry=dataclasses.replace(self.config.retry, **overrides))

    def with_clock(self, clock: FakeClock) -> Harness:
        return dataclasses.replace(self, clock=clock, sleeps=[])

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.kind == "sync":
            with DifyClient(self.config, sleep=self._sleep) as client:
                return getattr(client, method)(*args, **kwargs)

        async def run() -> Any:
            async with AsyncDifyClient(self.config, sleep=self._async_sleep) as client:
                return await getattr(client, method)(*args, **kwargs)

        return asyncio.run(run())

    def calls(self, *steps: tuple[str, tuple[Any, ...]]) -> tuple[list[Any], str | None]:
        """Several calls on one client: their results (or the DifyError each raised), and the
        server version the client learned from the answers."""
        results: list[Any] = []
        if self.kind == "sync":
            with DifyClient(self.config, sleep=self._sleep) as client:
                for method, args in steps:
                    try:
                        results.append(getattr(client, method)(*args))
                    except DifyError as exc:
                        results.append(exc)
                return results, client.server_version

        async def run() -> tuple[list[Any], str | None]:
            async with AsyncDifyClient(self.config, sleep=self._async_sleep) as client:
                for method, args in steps:
                    try:
                        results.append(await getattr(client, method)(*args))
                    except DifyError as exc:
                        results.append(exc)
                return results, client.server_version

        return asyncio.run(run())

    def stream(self, inputs: Any = None, **kwargs: Any) -> StreamOutcome:
        """Start a streaming run and drain it. A DifyError raised while iterating (including on
        opening the stream, which happens at the first iteration) is captured in the outcome with
        the events that came before it; argument errors raised by ``run_workflow`` propagate."""
        inputs = {"query": "hello"} if inputs is None else inputs
        events: list[StreamEvent] = []
        error: DifyError | None = None

        if self.kind == "sync":
            with DifyClient(self.config, sleep=self._sleep) as client:
                stream = client.run_workflow(inputs, response_mode="streaming", **kwargs)
                try:
                    for event in stream:
                        events.append(event)
                except DifyError as exc:
                    error = exc
                return StreamOutcome(events, error, stream.workflow_run_id, stream.task_id, stream.finished)

        async def run() -> StreamOutcome:
            nonlocal error
            async with AsyncDifyClient(self.config, sleep=self._async_sleep) as client:
                stream = await client.run_workflow(inputs, response_mode="streaming", **kwargs)
                try:
                    async for event in stream:
                        events.append(event)
                except DifyError as exc:
                    error = exc
                return StreamOutcome(events, error, stream.workflow_run_id, stream.task_id, stream.finished)

        return asyncio.run(run())

    def drain(self, method: str, *args: Any, **kwargs: Any) -> Drained:
        """Like :meth:`stream` for any streaming method (``chat_message``, ...): argument errors
        propagate, a DifyError raised while reading is kept with the events before it."""
        kwargs.setdefault("response_mode", "streaming")
        events: list[StreamEvent] = []
        if self.kind == "sync":
            with DifyClient(self.config, sleep=self._sleep) as client:
                stream = getattr(client, method)(*args, **kwargs)
                try:
                    events.extend(stream)
                except DifyError as exc:
                    return Drained(events, exc, stream)
                return Drained(events, None, stream)

        async def run() -> Drained:
            async with AsyncDifyClient(self.config, sleep=self._async_sleep) as client:
                stream = await getattr(client, method)(*args, **kwargs)
                try:
                    async for event in stream:
                        events.append(event)
                except DifyError as exc:
                    return Drained(events, exc, stream)
                return Drained(events, None, stream)

        return asyncio.run(run())

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.clock is not None:
            self.clock.offset += seconds

    async def _async_sleep(self, seconds: float) -> None:
        self._sleep(seconds)
