"""The reading of a Dify SSE stream, sync and async, whatever the endpoint.

A run's stream (``/workflows/run``) and a message's stream (``/chat-messages``,
``/completion-messages``) differ only in what their events mean, which is the business of their
:class:`~dify_provider.client._api.StreamState`; opening the request (with the start-retry rules),
the inactivity timeout, hanging up from another thread and at a deadline are written here once.
A concrete stream is ``class XStream(SyncEventStream, XState)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
import tenacity
from httpx_sse import EventSource

from dify_provider.client._api import StreamState
from dify_provider.client._core import Call, ClientConfig, raise_for_status, request_args, transport_error
from dify_provider.client._transport import AsyncServiceClient, SyncServiceClient
from dify_provider.client.models import StreamEvent

T = TypeVar("T")


class SyncEventStream(StreamState):
    """An open stream: iterate for typed events; ``close()`` hangs up. Nothing is sent before the
    first iteration. :meth:`abort` and :meth:`hang_up_at` end it from another thread."""

    def __init__(self, client: SyncServiceClient[ClientConfig], call: Call[Any]) -> None:
        super().__init__(call, client.config.stream_idle_timeout)
        self._client = client
        self._response: httpx.Response | None = None
        self._events: Iterator[StreamEvent] | None = None

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
        # One iterator per stream: a caller may stop at the first event and resume later.
        if self._events is None:
            self._events = self._generate()
        return self._events

    def _generate(self) -> Iterator[StreamEvent]:
        if self.aborted:  # hung up before anything was sent: send nothing (it would start a run)
            raise self.hung_up()
        if self._response is None:
            self._response = self._open()
        try:
            if self.aborted:  # hung up while the request was being sent
                raise self.hung_up()
            for sse in EventSource(self._response).iter_sse():
                event = self.accept(sse)
                if event is not None:
                    yield event
                    if self.finished:
                        return
                if self.aborted:  # while the caller handled the event: the response may be closed
                    raise self.hung_up()
        except httpx.TransportError as exc:
            raise self.broken(exc) from exc
        except httpx.StreamClosed as exc:  # closed by abort() without a socket to shut down
            if not self.aborted:
                raise
            raise self.hung_up() from exc
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
    """Aborts a :class:`SyncEventStream` at a wall-clock moment, from a timer thread."""

    def __init__(self, stream: SyncEventStream, when: float) -> None:
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


class AsyncEventStream(StreamState):
    """Async twin of :class:`SyncEventStream`.

    :meth:`abort` may be called from any thread or from the loop. It cancels the read the stream
    is awaiting, never anything else the reading task awaits: a cancellation is only requested
    while this stream's own read is pending, and it is converted back (``Task.uncancel``) into a
    :class:`~dify_provider.client.errors.DifyStreamError`. That works whatever the transport
    (the aiohttp pool has no socket to shut down).
    """

    def __init__(self, client: AsyncServiceClient[ClientConfig], call: Call[Any]) -> None:
        super().__init__(call, client.config.stream_idle_timeout)
        self._client = client
        self._response: httpx.Response | None = None
        self._events: AsyncIterator[StreamEvent] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The task awaiting this stream's read, while it does; only it is ever cancelled.
        self._reader: asyncio.Task[Any] | None = None
        self._cancelled = False

    async def _open(self) -> httpx.Response:
        async def send() -> httpx.Response:
            request = self._client.http.build_request(**request_args(self._client.config, self._call, stream=True))
            try:
                response = await self._client.http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise transport_error(exc, self._call.path) from exc
            self._client._note_version(response)
            if not response.is_success:
                await response.aread()
                await response.aclose()
                raise_for_status(response, self._call.path)
            return response

        response: httpx.Response = await tenacity.AsyncRetrying(**self._client._retry_args(self._call))(send)
        return response

    def abort(self) -> None:
        """Hang up from any thread (or the loop's own), waking a read awaited in the loop."""
        self.aborted = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not reading yet: the first read sees ``aborted``
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake()
        else:
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._reader is not None and not self._cancelled:
            self._cancelled = True
            self._reader.cancel()

    def hang_up_at(self, when: float) -> AsyncStreamDeadline:
        """A loop timer that aborts this stream at wall-clock time ``when`` (epoch seconds); use it
        as a context manager (``with`` or ``async with``) around the reading."""
        return AsyncStreamDeadline(self, when)

    async def _read(self, awaitable: Awaitable[T]) -> T:
        """Await one step of the stream where :meth:`abort` can cancel it."""
        task = asyncio.current_task()
        self._reader = task
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._cancelled and task is not None and task.uncancel() == 0:
                raise self.hung_up() from None
            raise
        finally:
            self._reader = None

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        # One iterator per stream: a caller may stop at the first event and resume later.
        if self._events is None:
            self._events = self._generate()
        return self._events

    async def _generate(self) -> AsyncIterator[StreamEvent]:
        self._loop = asyncio.get_running_loop()
        if self.aborted:
            raise self.hung_up()
        if self._response is None:
            self._response = await self._read(self._open())
        try:
            sse_frames = EventSource(self._response).aiter_sse()
            while True:
                if self.aborted:
                    raise self.hung_up()
                try:
                    sse = await self._read(anext(sse_frames))
                except StopAsyncIteration:
                    break
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


class AsyncStreamDeadline:
    """Aborts an :class:`AsyncEventStream` at a wall-clock moment, from the running loop."""

    def __init__(self, stream: AsyncEventStream, when: float) -> None:
        self._stream = stream
        self._when = when
        self._fired = False
        self._handle: asyncio.TimerHandle | None = None

    def _fire(self) -> None:
        self._fired = True
        self._stream.abort()

    @property
    def fired(self) -> bool:
        return self._fired

    def __enter__(self) -> Self:
        self._handle = asyncio.get_running_loop().call_later(max(0.0, self._when - time.time()), self._fire)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.cancel()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)
