"""Dify's SSE framing: ``data: <one-line JSON>\\n\\n`` per event and a bare ``event: ping\\n\\n``
keep-alive every ``ping_interval`` seconds (dify-api.md section 4.1).

A custom response rather than ``StreamingResponse`` because the emulator must know *how* a stream
ended (finished, client gone, deliberately cut) to apply the pre-1.13 orphaning rule, and must be
able to go silent or cut a frame in half on cue.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
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


def encode(event: dict[str, Any]) -> bytes:
    """Compact JSON, like the orjson dump of current Dify."""
    return b"data: " + json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def encode_stored(event: dict[str, Any]) -> bytes:
    """The events endpoint's frame for a finished run uses ``json.dumps`` defaults."""
    return f"data: {json.dumps(event)}\n\n".encode()


def error_event(fault: Fault, workflow_run_id: str | None = None) -> dict[str, Any]:
    """Dify's in-stream ``error`` event: top-level status, code and message, no ``task_id`` and no
    ``data`` (dify-api.md section 4.1); the run id only once the run was announced."""
    event: dict[str, Any] = {"event": "error"}
    if workflow_run_id is not None:
        event["workflow_run_id"] = workflow_run_id
    return {**event, "status": fault.status, "code": fault.code or "internal_server_error",
            "message": fault.message or ""}


class EventStream(Response):
    """Stream a run's queued events until a terminal one, then close.

    ``on_close`` receives the outcome, so the caller can orphan the run when a pre-1.13 client
    went away mid-run. ``on_error`` builds the event a ``stream_error`` fault sends (and ends the
    run as that failure would).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        queue: asyncio.Queue[Item],
        *,
        ping_interval: float,
        close_on_pause: bool = True,
        fault: Fault | None = None,
        on_close: Callable[[Outcome], None] = lambda outcome: None,
        encoder: Callable[[dict[str, Any]], bytes] = encode,
        headers: dict[str, str] | None = None,
        on_error: Callable[[Fault], dict[str, Any]] | None = None,
    ) -> None:
        # Like StreamingResponse: no ``body`` attribute, hence no Content-Length (chunked).
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self.queue = queue
        self.ping_interval = ping_interval
        self.close_on_pause = close_on_pause
        self.fault = fault
        self.on_close = on_close
        self.encoder = encoder
        self.on_error = on_error
        self._backlog: list[Item] = []
        self._send_fn: Send | None = None
        self._next_ping = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send_fn = send
        self._next_ping = asyncio.get_running_loop().time() + self.ping_interval
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

    async def _send(self, chunk: bytes) -> None:
        assert self._send_fn is not None
        await self._send_fn({"type": "http.response.body", "body": chunk, "more_body": True})

    async def _ping_if_due(self) -> None:
        now = asyncio.get_running_loop().time()
        if now >= self._next_ping:
            # Dify pings on a fixed schedule from the stream's start, events or not.
            self._next_ping += self.ping_interval
            if self._next_ping <= now:
                self._next_ping = now + self.ping_interval
            await self._send(PING)

    async def _next(self) -> Item:
        """The next queued item, sending pings while waiting for it."""
        if self._backlog:
            return self._backlog.pop(0)
        while True:
            await self._ping_if_due()
            try:
                async with asyncio.timeout_at(self._next_ping):
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
                self._next_ping = loop.time() + self.ping_interval
                return True
            if item is None:
                return False
            self._backlog.append(item)

    async def _pump(self, scope: Scope) -> Outcome:
        sent = 0
        fault = self.fault
        while True:
            if fault is not None and fault.kind == "stream_silent" and sent == fault.after_events:
                seconds, fault = fault.seconds, None
                if not await self._silence(seconds):
                    return "complete"
            if fault is not None and fault.kind == "stream_error" and sent == fault.after_events:
                await self._send(self.encoder(self.on_error(fault) if self.on_error else error_event(fault)))
                return "complete"
            item = await self._next()
            if item is None:
                return "complete"
            frame = self.encoder(item)
            if fault is not None and fault.kind == "stream_cut" and sent == fault.after_events:
                await self._send(frame[: len(frame) // 2])
                await close_connection(scope)
                return "cut"
            await self._send(frame)
            sent += 1
            event = item.get("event")
            if event in _TERMINAL or (event == "workflow_paused" and self.close_on_pause):
                return "complete"
