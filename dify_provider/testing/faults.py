"""Scripted faults: the per-endpoint FIFO they wait in, and the broken responses they produce.

Connection-level faults need the raw transport, which ASGI does not expose; the recording
middleware stashes uvicorn's transport in the scope (see :func:`transport_of`) so a reset can be a
real TCP RST and a drop a real half-written response. Without it (another server) both degrade to
returning early, which uvicorn also turns into a broken connection.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol, cast

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from dify_provider.testing.errors import WERKZEUG_ERRORS, envelope
from dify_provider.testing.models import Fault, FaultPhase

TRANSPORT_KEY = "dify_emulator.transport"

#: The endpoints a run (or a chat message) is created by: only these accept ``after_run_created`` faults.
RUN_ENDPOINTS = frozenset({"POST /workflows/run", "POST /workflows/{}/run", "POST /chat-messages",
                           "POST /completion-messages"})


def normalize_endpoint(endpoint: str) -> str:
    """``"post /v1/workflows/run/{id}/"`` -> ``"POST /workflows/run/{}"``: what faults are keyed by."""
    method, _, path = endpoint.strip().partition(" ")
    path = re.sub(r"\{[^}]*\}", "{}", path.strip())
    if path.startswith("/v1/") or path == "/v1":
        path = path[3:] or "/"
    if len(path) > 1:
        path = path.rstrip("/")
    return f"{method.upper()} {path}"


@dataclass(eq=False)
class _Slot:
    fault: Fault
    left: int | None


class FaultBook:
    """Pending faults, FIFO per endpoint; wildcard (``endpoint=None``) faults are consulted after
    the endpoint's own queue. Thread-safe: tests add from their thread, handlers take on the loop."""

    def __init__(self, endpoints: frozenset[str], apps: frozenset[str]) -> None:
        self._endpoints = endpoints
        self._apps = apps
        self._queues: dict[str | None, deque[_Slot]] = {}
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        key = None if fault.endpoint is None else normalize_endpoint(fault.endpoint)
        if key is not None and key not in self._endpoints:
            known = ", ".join(sorted(self._endpoints))
            raise ValueError(f"unknown endpoint {fault.endpoint!r}; known: {known}")
        if fault.app is not None and fault.app not in self._apps:
            raise ValueError(f"unknown app {fault.app!r}")
        if fault.after_run_created and key not in RUN_ENDPOINTS:
            raise ValueError(f"after_run_created needs one of the endpoints {', '.join(sorted(RUN_ENDPOINTS))}")
        with self._lock:
            self._queues.setdefault(key, deque()).append(_Slot(fault, fault.times))

    def take(self, endpoint: str, app: str | None, phase: FaultPhase) -> Fault | None:
        """Consume one firing of the first pending fault that applies here, if any."""
        with self._lock:
            for key in (endpoint, None):
                queue = self._queues.get(key)
                if not queue:
                    continue
                for slot in queue:
                    if slot.fault.phase != phase or slot.fault.app not in (None, app):
                        continue
                    if slot.left is not None:
                        slot.left -= 1
                        if slot.left == 0:
                            queue.remove(slot)
                    return slot.fault
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return [slot.fault for queue in self._queues.values() for slot in queue]

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()


def invented_start(endpoint: str) -> dict[str, Any]:
    """What a run endpoint would have answered, for a drop/malformed fault that rejects the request
    before anything exists (only the shape matters: the client gets half of it)."""
    if endpoint.startswith("POST /workflows"):
        return {"task_id": str(uuid.uuid4()), "workflow_run_id": str(uuid.uuid4()), "data": {}}
    message_id = str(uuid.uuid4())
    return {"event": "message", "task_id": str(uuid.uuid4()), "id": message_id, "message_id": message_id,
            "answer": "", "metadata": {}}


def error_response(fault: Fault) -> Response:
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    if fault.body is not None:
        return Response(fault.body, fault.status, headers=headers, media_type="text/html")
    code, message = WERKZEUG_ERRORS.get(fault.status, ("unknown", "Unknown error."))
    body = envelope(fault.status, fault.code or code, fault.message or message)
    if fault.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return JSONResponse(body, fault.status, headers=headers)


class Transport(Protocol):
    """What we use of a transport; uvloop's are not ``asyncio.Transport`` subclasses."""

    def close(self) -> None: ...
    def abort(self) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


def as_transport(candidate: object) -> Transport | None:
    if all(callable(getattr(candidate, name, None)) for name in ("close", "abort", "get_extra_info")):
        return cast(Transport, candidate)
    return None


def transport_of(scope: Scope) -> Transport | None:
    return as_transport(scope.get(TRANSPORT_KEY))


async def close_connection(scope: Scope, *, reset: bool = False) -> None:
    """Close the client's connection now; ``reset`` makes it an RST (SO_LINGER 0) instead of a FIN."""
    transport = transport_of(scope)
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()
    # Let uvicorn see connection_lost before the app returns, so it does not log the
    # deliberately unfinished response as an application error.
    await asyncio.sleep(0)
    await asyncio.sleep(0)


class ResetResponse(Response):
    """No response at all: the connection is reset."""

    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await close_connection(scope, reset=True)


class TruncatedResponse(Response):
    """Headers announcing ``inner``'s full Content-Length, half its body, then a closed connection."""

    def __init__(self, inner: Response) -> None:
        super().__init__(inner.body, inner.status_code, media_type=inner.media_type)
        self.raw_headers = inner.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        half = bytes(self.body[: max(1, len(self.body) // 2)])
        await send({"type": "http.response.body", "body": half, "more_body": True})
        await close_connection(scope)


def malformed(inner: Response) -> Response:
    """The same status with a JSON body cut in half: well-formed HTTP, unparseable content."""
    body = bytes(inner.body)
    return Response(body[: max(1, len(body) // 2)], inner.status_code, media_type="application/json")


def mangle(fault: Fault, inner: Response) -> Response:
    """Apply a drop/malformed fault to the response the endpoint would have sent."""
    return TruncatedResponse(inner) if fault.kind == "drop" else malformed(inner)
