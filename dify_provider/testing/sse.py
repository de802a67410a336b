"""Dify's SSE framing: ``data: <one-line JSON>\\n\\n`` per event and a bare ``event: ping\\n\\n``
keep-alive (dify-api.md section 4.1).

Pings as 1.13.2 sends them (``streaming_utils.stream_topic_events`` and the worker's
``AppQueueManager.listen``): one the moment the stream opens, then one every ``ping_interval``
(on a fixed schedule from the start) while the run executes, none once it does not (a run that
never started, or a paused one). The server ends a stream after ``idle_timeout`` seconds without
sending anything.

A custom response rather than ``StreamingResponse`` because the emulator must know *how* a stream
ended (finished, client gone, deliberately cut) to apply the pre-1.13 orphaning rule, and must be
able to go silent or cut a frame in half on cue.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from dify_provider.testing.faults import close_connection
from dify_provider.testing.models import Fault
from dify_provider.testing.runs import Item

PING = b"event: ping\n\n"
Outcome = Literal["complete", "disconnected", "cut"]
_TERMINAL = frozenset({"workflow_finished", "error"})
#: Where a ``chat``/``agent-chat``/``completion`` stream ends (its pipeline's last frames).
MESSAGE_TERMINAL = frozenset({"message_end", "error"})


def encode(event: dict[str, Any]) -> bytes:
    """Compact JSON, like the orjson dump of current Dify."""
    return b"data: " + json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def encode_stored(event: dict[str, Any]) -> bytes:
    """The events endpoint's frame for a finished run uses ``json.dumps`` defaults."""
    return f"data: {json.dumps(event)}\n\n".encode()


def in_stream_error(status: int, code: str, message: str, workflow_run_id: str | None = None) -> dict[str, Any]:
    """Dify's in-stream ``error`` event: top-level status, code and message, no ``task_id`` and no
    ``data`` (dify-api.md section 4.1); the run id only once the run was announced."""
    event: dict[str, Any] = {"event": "error"}
    if workflow_run_id is not None:
        event["workflow_run_id"] = workflow_run_id
    return {**event, "status": status, "code": code, "message": message}


def error_event(fault: Fault, workflow_run_id: str | None = None) -> dict[str, Any]:
    """The ``error`` event a ``stream_error`` fault sends."""
    return in_stream_error(fault.status, fault.code or "internal_server_error", fault.message or "", workflow_run_id)


class EventStream(Response):
    """Stream a run's queued events until a terminal one, then close.

    ``on_close`` receives the outcome, so the caller can orphan the run when a pre-1.13 client
    went away mid-run. ``on_error`` builds the event a ``stream_error`` fault sends (and ends the
    run as that failure would).

    Pings: one at open if ``ping_at_open``, then one per ``ping_interval`` tick (counted from the
    stream's start) while ``executing()`` says so (None: always). ``idle_timeout`` ends the stream
    after that long without a frame (pings count unless ``pings_keep_alive`` is False). The stream
    ends after an event named in ``terminal`` (a run's: ``workflow_finished`` or ``error``; a chat
    message's: ``message_end`` or ``error``), and after a ``workflow_paused`` if ``close_on_pause``.
    ``prelude`` frames go out before the queue's (the events endpoint's state snapshot).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        queue: asyncio.Queue[Item],
        *,
        ping_interval: float,
        ping_at_open: bool = True,
        executing: Callable[[], bool] | None = None,
        idle_timeout: float | None = None,
        pings_keep_alive: bool = True,
        close_on_pause: bool = True,
        fault: Fault | None = None,
        on_close: Callable[[Outcome], None] = lambda outcome: None,
        encoder: Callable[[dict[str, Any]], bytes] = encode,
        headers: dict[str, str] | None = None,
        on_error: Callable[[Fault], dict[str, Any]] | None = None,
        terminal: frozenset[str] = _TERMINAL,
        prelude: Sequence[dict[str, Any]] = (),
    ) -> None:
        # Like StreamingResponse: no ``body`` attribute, hence no Content-Length (chunked).
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self.queue = queue
        self.ping_interval = ping_interval
        self.ping_at_open = ping_at_open
        self.executing = executing
        self.idle_timeout = idle_timeout
        self.pings_keep_alive = pings_keep_alive
        self.close_on_pause = close_on_pause
        self.fault = fault
        self.on_close = on_close
        self.encoder = encoder
        self.on_error = on_error
        self.terminal = terminal
        self._backlog: list[Item] = list(prelude)
        self._send_fn: Send | None = None
        self._next_ping = 0.0
        self._last_frame = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send_fn = send
        now = asyncio.get_running_loop().time()
        self._next_ping = now + self.ping_interval
        self._last_frame = now
        outcome: Outcome = "disconnected"
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                outcome = await self._pump(scope)
                group.cancel_scope.cancel()
            if outcome == "complete":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.on_close(outcome)

    async def _send(self, chunk: bytes, *, ping: bool = False) -> None:
        assert self._send_fn is not None
        await self._send_fn({"type": "http.response.body", "body": chunk, "more_body": True})
        if self.pings_keep_alive or not ping:
            self._last_frame = asyncio.get_running_loop().time()

    async def _ping_if_due(self) -> None:
        now = asyncio.get_running_loop().time()
        if now >= self._next_ping:
            # A fixed schedule from the stream's start, events or not (the worker's ``listen``).
            self._next_ping += self.ping_interval
            if self._next_ping <= now:
                self._next_ping = now + self.ping_interval
            if self.executing is None or self.executing():
                await self._send(PING, ping=True)

    async def _next(self) -> Item | Literal["idle"]:
        """The next queued item, sending pings while waiting for it; ``"idle"`` once the idle
        timeout passed without a frame."""
        if self._backlog:
            return self._backlog.pop(0)
        loop = asyncio.get_running_loop()
        while True:
            await self._ping_if_due()
            deadline = self._next_ping
            if self.idle_timeout is not None:
                idle_at = self._last_frame + self.idle_timeout
                if loop.time() >= idle_at:
                    return "idle"
                deadline = min(deadline, idle_at)
            try:
                async with asyncio.timeout_at(deadline):
                    return await self.queue.get()
            except TimeoutError:
                continue

    async def _silence(self, seconds: float | None) -> bool:
        """Say nothing for ``seconds`` (None: until closed), keeping events for later.
        Returns False if the stream was closed meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    item = await self.queue.get()
            except TimeoutError:
                self._next_ping = self._last_frame = loop.time()
                self._next_ping += self.ping_interval
                return True
            if item is None:
                return False
            self._backlog.append(item)

    async def _pump(self, scope: Scope) -> Outcome:
        sent = 0
        fault = self.fault
        if self.ping_at_open:
            await self._send(PING, ping=True)  # "to prevent the connection staying in pending state"
        while True:
            if fault is not None and fault.kind == "stream_silent" and sent == fault.after_events:
                seconds, fault = fault.seconds, None
                if not await self._silence(seconds):
                    return "complete"
            if fault is not None and fault.kind == "stream_error" and sent == fault.after_events:
                await self._send(self.encoder(self.on_error(fault) if self.on_error else error_event(fault)))
                return "complete"
            item = await self._next()
            if item is None or item == "idle":
                return "complete"
            frame = self.encoder(item)
            if fault is not None and fault.kind == "stream_cut" and sent == fault.after_events:
                await self._send(frame[: len(frame) // 2])
                await close_connection(scope)
                return "cut"
            await self._send(frame)
            sent += 1
            event = item.get("event")
            if event in self.terminal or (event == "workflow_paused" and self.close_on_pause):
                return "complete"
