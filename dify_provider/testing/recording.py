"""Recording every service-API request, so a test can count calls ("no second run was started").

A pure ASGI middleware, outermost, because it must see requests that never reach a route (401s,
404s, faults) and the raw body before anything consumes it. It buffers the body and replays it
to the app, then hands ``receive`` back so disconnect detection keeps working for SSE.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers, UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dify_provider.testing.faults import TRANSPORT_KEY, as_transport
from dify_provider.testing.models import RecordedRequest

#: The scope key under which a request's sequence number in the log travels to the routes.
RECORD_KEY = "dify_emulator.record"


class RequestLog:
    """The recorded requests; appends and updates happen under the shared condition so waiters
    (``DifyEmulator.wait_for_requests``) wake up."""

    def __init__(self, cond: threading.Condition, limit: int = 200_000) -> None:
        self._cond = cond
        self._records: list[RecordedRequest] = []
        self._limit = limit
        self._seq = 0

    def add(self, **fields: Any) -> int:
        """Record a request as it arrives; the answer's status (and any fault) comes later,
        through ``update`` with the sequence number returned here."""
        with self._cond:
            self._seq += 1
            self._records.append(RecordedRequest(seq=self._seq, status=None, fault=None, **fields))
            if len(self._records) > self._limit:
                del self._records[: len(self._records) - self._limit]
            self._cond.notify_all()
            return self._seq

    def update(self, seq: int, *, status: int | None = None, fault: str | None = None) -> None:
        # Records are frozen (a snapshot handed to a test never changes under it), so an update
        # swaps in a copy. Sequence numbers are contiguous, which locates the record directly.
        with self._cond:
            index = len(self._records) - 1 - (self._seq - seq)
            if 0 <= index < len(self._records):  # not cleared or trimmed away meanwhile
                record = self._records[index]
                self._records[index] = replace(record, status=record.status if status is None else status,
                                               fault=record.fault if fault is None else fault)
            self._cond.notify_all()

    def snapshot(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._records)

    def clear(self) -> None:
        with self._cond:
            self._records.clear()


def _redact(headers: Headers) -> dict[str, str]:
    out = dict(headers.items())
    if "authorization" in out:
        scheme, sep, _ = out["authorization"].partition(" ")
        out["authorization"] = f"{scheme} ***" if sep else "***"
    return out


async def _parse_form(scope: Scope, body: bytes) -> dict[str, Any]:
    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    fields: dict[str, Any] = {}
    async with Request(scope, replay).form() as form:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                fields[key] = {"filename": value.filename, "content_type": value.content_type, "size": value.size}
            else:
                fields[key] = value
    return fields


async def _decode(scope: Scope, headers: Headers, body: bytes) -> tuple[Any, dict[str, Any] | None]:
    if not body:
        return None, None
    content_type = headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        try:
            return None, await _parse_form(scope, body)
        except Exception:  # a malformed upload is recorded raw; the route reports the error
            return body.decode("utf-8", "replace"), None
    text = body.decode("utf-8", "replace")
    try:
        return json.loads(text), None
    except ValueError:
        return text, None


class RecordingMiddleware:
    """Record service-API requests (everything outside ``/_emulator``) and expose the transport."""

    def __init__(self, app: ASGIApp, log: RequestLog, app_for_key: Callable[[str | None], str | None]) -> None:
        self.app = app
        self.log = log
        self.app_for_key = app_for_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        transport = as_transport(getattr(getattr(send, "__self__", None), "transport", None))
        if transport is not None:
            scope[TRANSPORT_KEY] = transport
        if scope["path"].startswith("/_emulator"):
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client left before sending the body
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = Headers(scope=scope)
        parsed, form = await _decode(scope, headers, body)
        seq = self.log.add(
            method=scope["method"],
            path=scope["path"],
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)),
            headers=_redact(headers),
            body=parsed,
            form=form,
            app=self.app_for_key(headers.get("authorization")),
            received_at=time.time(),
        )
        scope[RECORD_KEY] = seq

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.log.update(seq, status=message["status"])
            await send(message)

        await self.app(scope, replay, recording_send)
