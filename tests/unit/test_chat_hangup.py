"""Hanging up a chat stream early: ``abort()`` from another thread and ``hang_up_at()``, sync
(a real socket, shut down as over the network) and async (the read is cancelled, nothing else
the caller awaits), and a hang-up before the stream opened sends nothing."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from dify_provider.client import AsyncChatStream, AsyncDifyClient, ChatStream, DifyClient, DifyError, DifyStreamError
from dify_provider.client.models import StreamEvent

from . import _chat_bodies as cb
from ._harness import Harness, make_config, url

CHAT_URL = url("/chat-messages")
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8"}


class _Socket:
    """The ``network_stream`` extension of a real response: what ``abort()`` shuts down."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None


class SocketBody(httpx.SyncByteStream):
    """A body read from a real socket, failing as httpcore does when the peer goes away."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def __iter__(self) -> Iterator[bytes]:
        while data := self.sock.recv(65536):
            yield data
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    def close(self) -> None:
        self.sock.close()


def socket_response(*frames: bytes) -> tuple[httpx.Response, socket.socket]:
    ours, server = socket.socketpair()
    server.sendall(b"".join(frames))  # and then nothing: a read after these blocks for good
    return httpx.Response(200, headers=SSE_HEADERS, stream=SocketBody(ours),
                          extensions={"network_stream": _Socket(ours)}), server


def _read_in_thread(stream: ChatStream) -> tuple[threading.Thread, list[StreamEvent], list[BaseException],
                                                  threading.Event]:
    events: list[StreamEvent] = []
    errors: list[BaseException] = []
    first = threading.Event()

    def read() -> None:
        try:
            for event in stream:
                events.append(event)
                first.set()
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)
            first.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, events, errors, first


def test_abort_from_another_thread_wakes_a_blocked_read(router: respx.MockRouter) -> None:
    response, server = socket_response(cb.message("partial"))
    router.post(CHAT_URL).mock(return_value=response)
    with DifyClient(make_config()) as client, server:
        stream = client.chat_message("hi", response_mode="streaming")
        thread, events, errors, first = _read_in_thread(stream)
        assert first.wait(10)  # a safety net only: the frame is already in the socket
        stream.abort()  # the reader is (or soon is) blocked in recv() on a silent stream
        thread.join(10)
        assert not thread.is_alive()
    [error] = errors
    assert type(error) is DifyStreamError
    assert "hung up by this client" in str(error)
    assert [event.event for event in events] == ["message"]
    assert (stream.aborted, stream.answer, stream.finished) == (True, "partial", False)


def test_hang_up_at_a_deadline_sync(router: respx.MockRouter) -> None:
    response, server = socket_response(cb.message("partial"))
    router.post(CHAT_URL).mock(return_value=response)
    with DifyClient(make_config()) as client, server:
        stream = client.chat_message("hi", response_mode="streaming")
        events = [next(iter(stream)).event]
        # Already due: the timer fires at once, and nothing but it can end this silent stream.
        with stream.hang_up_at(time.time() - 1) as deadline, pytest.raises(DifyStreamError, match="hung up"):
            events.extend(event.event for event in stream)
    assert deadline.fired
    assert events == ["message"]
    assert stream.aborted


def test_abort_before_the_stream_opens_sends_nothing(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(CHAT_URL).mock(return_value=cb.recorded_response())

    async def async_scenario() -> DifyError:
        async with AsyncDifyClient(make_config()) as client:
            stream = await client.chat_message("hi", response_mode="streaming")
            stream.abort()
            with pytest.raises(DifyStreamError, match="hung up by this client") as info:
                await anext(aiter(stream))
            return info.value

    if harness.kind == "sync":
        with DifyClient(make_config()) as client:
            stream = client.chat_message("hi", response_mode="streaming")
            stream.abort()
            with pytest.raises(DifyStreamError, match="hung up by this client"):
                next(iter(stream))
    else:
        asyncio.run(async_scenario())
    assert route.call_count == 0  # sending it would have started a paid answer nobody reads


class HangingBody(httpx.AsyncByteStream):
    """Some frames, then silence until cancelled (a stream the server keeps open and quiet)."""

    def __init__(self, *frames: bytes) -> None:
        self.frames = frames

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.frames:
            yield chunk
        await asyncio.Event().wait()
        yield b""  # pragma: no cover - never reached


def test_async_abort_from_another_thread(router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=httpx.Response(200, headers=SSE_HEADERS,
                                                           stream=HangingBody(cb.message("partial"))))

    async def scenario() -> tuple[AsyncChatStream, list[str], BaseException | None]:
        async with AsyncDifyClient(make_config()) as client:
            stream = await client.chat_message("hi", response_mode="streaming")
            events: list[str] = []
            try:
                async for event in stream:
                    events.append(event.event)
                    # From a thread, while this task goes back to the (silent) stream.
                    threading.Thread(target=stream.abort, daemon=True).start()
            except DifyError as exc:
                return stream, events, exc
            return stream, events, None

    stream, events, error = asyncio.run(scenario())
    assert type(error) is DifyStreamError
    assert "hung up by this client" in str(error)
    assert events == ["message"]
    assert (stream.aborted, stream.answer) == (True, "partial")


def test_async_abort_leaves_the_caller_s_other_awaits_alone(router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=httpx.Response(200, headers=SSE_HEADERS,
                                                           stream=HangingBody(cb.message("a"), cb.message("b"))))

    async def scenario() -> list[str]:
        async with AsyncDifyClient(make_config()) as client:
            stream = await client.chat_message("hi", response_mode="streaming")
            seen: list[str] = []

            async def read() -> None:
                async for event in stream:
                    seen.append(event.event)
                    stream.abort()  # not reading now: nothing is cancelled...
                    await asyncio.sleep(0)  # ...so this await completes...
                    seen.append("slept")

            with pytest.raises(DifyStreamError, match="hung up"):
                await read()  # ...and the next read is refused
            return seen

    assert asyncio.run(scenario()) == ["message", "slept"]


def test_async_hang_up_at_a_deadline(router: respx.MockRouter) -> None:
    router.post(CHAT_URL).mock(return_value=httpx.Response(200, headers=SSE_HEADERS,
                                                           stream=HangingBody(cb.message("partial"))))

    async def scenario() -> tuple[bool, list[str]]:
        async with AsyncDifyClient(make_config()) as client:
            stream = await client.chat_message("hi", response_mode="streaming")
            events = [(await anext(aiter(stream))).event]

            async def read() -> None:
                async for event in stream:
                    events.append(event.event)

            async with stream.hang_up_at(time.time() - 1) as deadline:
                with pytest.raises(DifyStreamError, match="hung up"):
                    await read()
            return deadline.fired, events

    assert asyncio.run(scenario()) == (True, ["message"])


def test_async_cancellation_by_the_caller_stays_a_cancellation(router: respx.MockRouter) -> None:
    # Only this stream's own abort() becomes a DifyStreamError; anyone else's cancel propagates.
    router.post(CHAT_URL).mock(return_value=httpx.Response(200, headers=SSE_HEADERS,
                                                           stream=HangingBody(cb.message("a"))))

    async def scenario() -> None:
        async with AsyncDifyClient(make_config()) as client:
            stream = await client.chat_message("hi", response_mode="streaming")
            first = asyncio.Event()

            async def read() -> None:
                async for _ in stream:
                    first.set()

            task = asyncio.create_task(read())
            await first.wait()
            await asyncio.sleep(0)  # let it go back to the silent stream
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not stream.aborted

    asyncio.run(scenario())
