"""Serving an emulator's ASGI app from a background thread, shared by both emulators.

Tests call the emulator from their own thread while uvicorn runs its own asyncio loop in a
daemon thread. The socket is bound in the caller's thread, so a busy port fails there with a
plain ``OSError`` instead of somewhere in the server's log, and ``port=0`` is resolved before the
app is built (an app that puts its own address in answers can know it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from starlette.types import ASGIApp

T = TypeVar("T")


class _Server(uvicorn.Server):
    """uvicorn with a hook once it listens, so start() returns the moment it can answer."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[asyncio.AbstractEventLoop], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._exit = asyncio.Event()  # binds to the server loop on first use

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._on_ready(asyncio.get_running_loop())

    async def main_loop(self) -> None:
        # uvicorn's loop notices should_exit within 0.1 s; waking it at once keeps test
        # teardown quick. on_tick still runs every 0.1 s (it refreshes the Date header).
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._exit.wait()

    def request_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        self.should_exit = True
        loop.call_soon_threadsafe(self._exit.set)


class LoopbackServer:
    """One ASGI app on ``host:port`` (``port=0``: a free one), served by uvicorn in a thread."""

    def __init__(self, name: str, host: str, port: int, *, backlog: int = 2048, access_log: bool = False) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._backlog = backlog
        self._access_log = access_log
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        #: The server's event loop while it runs, else None.
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, make_app: Callable[[], ASGIApp],
              on_ready: Callable[[asyncio.AbstractEventLoop], None] | None = None) -> None:
        """Bind, build the app (``self.url`` is final by then), serve; return once it answers.
        ``on_ready`` runs on the server's loop before any request is accepted."""
        if self._thread is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto
        # says TCP, and without it Nagle + delayed ACKs add 40 ms to every response.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(self._backlog)
            self.port = sock.getsockname()[1]
            app = make_app()
        except BaseException:
            sock.close()
            raise
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=self._access_log,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=2,
            loop=os.environ.get("DIFY_EMULATOR_LOOP", "auto"),  # "asyncio" to avoid uvloop
        )

        def ready(loop: asyncio.AbstractEventLoop) -> None:
            if on_ready is not None:
                on_ready(loop)
            self.loop = loop
            self._ready.set()

        server = self._server = _Server(config, ready)

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            finally:
                self._ready.set()
                sock.close()

        self._ready.clear()
        self._thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait(15)
        if self.loop is None:
            self.stop()
            raise RuntimeError(f"the {self.name} failed to start (see the log above)")

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop and return its result (directly if not running, or
        if already on that loop), so state the routes touch is only ever touched there."""
        loop = self.loop
        if loop is None or threading.current_thread() is self._thread:
            return fn()

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=15)

    def stop(self, before: Callable[[], None] | None = None) -> None:
        """Stop serving; ``before`` runs on the loop first (ending streams, cancelling tasks)."""
        if self._thread is None or self._server is None:
            return
        loop = self.loop
        if loop is not None and self._thread.is_alive():
            if before is not None:
                self.call(before)
            self._server.request_exit(loop)
        self._server.should_exit = True
        self._thread.join(15)
        self._thread = None
        self.loop = None
