"""Helpers for driving the emulator over real HTTP on loopback.

The ``dify_emulator`` / ``dify_emulator_factory`` fixtures come from the package's pytest plugin
(entry point ``pytest11``), so these tests also prove the plugin is wired.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from dify_provider.testing import DifyEmulator

#: One TLS context for every client: building one per ``httpx.Client`` costs ~50 ms.
SSL = ssl.create_default_context()


def auth(emu: DifyEmulator, app: str = "echo") -> dict[str, str]:
    return {"Authorization": f"Bearer {emu.api_key(app)}"}


def run_body(text: str = "hello", *, user: str = "tester", mode: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": {"text": text, **extra}, "user": user}
    if mode is not None:
        body["response_mode"] = mode
    return body


def split_frames(raw: bytes) -> list[bytes]:
    """Complete SSE frames (without their blank-line terminator); a trailing partial one is dropped."""
    return raw.split(b"\n\n")[:-1]


def data_events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(f[len(b"data: ") :]) for f in split_frames(raw) if f.startswith(b"data: ")]


class SSEReader:
    """Reads a streaming response incrementally, keeping the raw bytes for byte-level checks."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.raw = b""
        self._chunks = response.iter_raw()

    @property
    def events(self) -> list[dict[str, Any]]:
        return data_events(self.raw)

    @property
    def names(self) -> list[str]:
        return [e["event"] for e in self.events]

    @property
    def pings(self) -> int:
        return split_frames(self.raw).count(b"event: ping")

    def read_until(self, done: Callable[[SSEReader], bool], within: float = 5.0) -> SSEReader:
        """Read until ``done``; a stream that keeps talking without ever satisfying it fails the
        test after ``within`` seconds instead of hanging it."""
        deadline = time.monotonic() + within
        while not done(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {within}s; got {self.names}")
            try:
                self.raw += next(self._chunks)
            except StopIteration:
                raise AssertionError(f"stream ended early; got {self.names}") from None
        return self

    def until_event(self, name: str) -> SSEReader:
        return self.read_until(lambda r: name in r.names)

    def read_all(self) -> bytes:
        for chunk in self._chunks:
            self.raw += chunk
        return self.raw


@contextmanager
def open_stream(client: httpx.Client, method: str, url: str, **kwargs: Any) -> Iterator[SSEReader]:
    with client.stream(method, url, **kwargs) as response:
        yield SSEReader(response)


@pytest.fixture
def emu(dify_emulator: DifyEmulator) -> DifyEmulator:
    return dify_emulator


def make_client(emu: DifyEmulator, app: str | None = "echo", **kwargs: Any) -> httpx.Client:
    headers = auth(emu, app) if app else {}
    options: dict[str, Any] = {"base_url": emu.base_url, "headers": headers, "timeout": 5.0, "verify": SSL}
    return httpx.Client(**(options | kwargs))


@pytest.fixture
def client(emu: DifyEmulator) -> Iterator[httpx.Client]:
    """A client for the service API with the ``echo`` app's key."""
    with make_client(emu) as c:
        yield c


@pytest.fixture
def anon(emu: DifyEmulator) -> Iterator[httpx.Client]:
    """A client for the service API without credentials."""
    with make_client(emu, app=None) as c:
        yield c


def succeeded_outputs(emu: DifyEmulator, run_id: str) -> dict[str, Any]:
    """Wait for the run to succeed; its outputs."""
    outputs = emu.wait_for(run_id, status="succeeded").outputs
    assert outputs is not None
    return outputs


def start_streaming_run(client: httpx.Client, body: dict[str, Any] | None = None) -> tuple[str, str]:
    """Start a run in streaming mode, read its first event, hang up; return (run id, task id)."""
    with open_stream(client, "POST", "/workflows/run", json=body or run_body(mode="streaming")) as reader:
        first = reader.until_event("workflow_started").events[0]
    return first["workflow_run_id"], first["task_id"]


def chat_body(
    query: str = "hello",
    *,
    user: str = "tester",
    mode: str | None = None,
    conversation_id: str | None = None,
    **inputs: Any,
) -> dict[str, Any]:
    """A ``POST /chat-messages`` (or ``/completion-messages``) body."""
    body: dict[str, Any] = {"inputs": inputs, "query": query, "user": user}
    if mode is not None:
        body["response_mode"] = mode
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    return body


def chat_path(emu: DifyEmulator, app: str) -> str:
    return "/completion-messages" if emu.apps[app].mode == "completion" else "/chat-messages"
