"""``DifyEmulator``: the emulator running in a background thread, and the handle tests hold.

Control methods are called from the test's thread while the server runs its own asyncio loop;
anything that touches runs is handed to that loop (``run_coroutine_threadsafe``) and waited for,
so after ``emu.finish(run_id)`` returns the run *is* finished for every client. Waiting
(:meth:`DifyEmulator.wait_for`) blocks on a condition the server notifies: no sleep-polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypeVar

import uvicorn

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing.app import create_app
from dify_provider.testing.models import (
    EmulatedApp,
    Fault,
    RecordedRequest,
    RunSnapshot,
    Scenario,
    default_apps,
)
from dify_provider.testing.runs import Run
from dify_provider.testing.state import Config, EmulatorState

T = TypeVar("T")
StatusArg = str | WorkflowRunStatus | Collection[str | WorkflowRunStatus]
RunTarget = str | Callable[[RunSnapshot], bool] | None


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


def _statuses(status: StatusArg | None) -> frozenset[WorkflowRunStatus] | None:
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    return frozenset(WorkflowRunStatus(value) for value in values)


class DifyEmulator:
    """A local Dify service API on loopback. ``with DifyEmulator() as emu: ...``

    ``apps`` defaults to :func:`~dify_provider.testing.models.default_apps`. ``pre_113_disconnect``
    switches on Dify <= 1.12 behaviour: a streaming client that disconnects orphans its run
    (``running`` forever, stop ignored). ``port=0`` picks a free port.
    """

    def __init__(
        self,
        apps: Sequence[EmulatedApp] | None = None,
        *,
        server_version: str = "1.13.0",
        pre_113_disconnect: bool = False,
        ping_interval: float = 10.0,
        host: str = "127.0.0.1",
        port: int = 0,
        access_log: bool = False,
    ) -> None:
        config = Config(server_version, pre_113_disconnect, ping_interval)
        self.state = EmulatorState(default_apps() if apps is None else apps, config)
        self._host = host
        self._port = port
        self._access_log = access_log
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        #: Seconds from start() to the server accepting requests (imports excluded).
        self.startup_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            return self
        began = time.perf_counter()
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto
        # says TCP, and without it Nagle + delayed ACKs add 40 ms to every response.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self._host, self._port))  # bound here, so a busy port fails in the caller
        sock.listen(2048)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.state),
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=self._access_log,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=2,
            loop=os.environ.get("DIFY_EMULATOR_LOOP", "auto"),  # "asyncio" to avoid uvloop
        )
        self._server = _Server(config, self._bind)
        self._thread = threading.Thread(target=self._serve, args=(sock,), name="dify-emulator", daemon=True)
        self._thread.start()
        self._ready.wait(15)
        if self.state.loop is None:
            self.close()
            raise RuntimeError("the Dify emulator failed to start (see the log above)")
        self.startup_seconds = time.perf_counter() - began
        return self

    def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None
        try:
            self._server.run(sockets=[sock])
        finally:
            self._ready.set()
            sock.close()

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.state.bind(loop)
        self._ready.set()

    def close(self) -> None:
        """Stop the server: open streams end, run tasks are cancelled."""
        if self._thread is None or self._server is None:
            return
        loop = self.state.loop
        if loop is not None and self._thread.is_alive():
            self._on_loop(self.state.shutdown)
            self._server.request_exit(loop)
        self._server.should_exit = True
        self._thread.join(15)
        self._thread = None
        self.state.loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _on_loop(self, fn: Callable[[], T]) -> T:
        loop = self.state.loop
        if loop is None or threading.current_thread() is self._thread:
            return fn()

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=15)

    # -- addresses and apps --------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The service API base (what a Dify connection's host should be), ending in ``/v1``."""
        return f"{self.root_url}/v1"

    @property
    def admin_url(self) -> str:
        return f"{self.root_url}/_emulator"

    @property
    def apps(self) -> Mapping[str, EmulatedApp]:
        return MappingProxyType(self.state.apps)

    def api_key(self, app: str = "echo") -> str:
        return self.state.app(app).api_key

    def app_id(self, app: str = "echo") -> str:
        return self.state.app(app).app_id

    def airflow_connection(self, app: str | None = None) -> dict[str, Any]:
        """An Airflow connection (``AIRFLOW_CONN_*`` JSON form) pointing at ``app`` (default:
        ``echo``, else the first workflow app)."""
        chosen = self.state.app(app) if app else self._default_app()
        return {
            "conn_type": "dify",
            "host": self.base_url,
            "password": chosen.api_key,
            "extra": {"console_url": self.root_url, "app_id": chosen.app_id},
        }

    def airflow_connection_json(self, app: str | None = None) -> str:
        return json.dumps(self.airflow_connection(app))

    def _default_app(self) -> EmulatedApp:
        apps = self.state.apps
        if "echo" in apps:
            return apps["echo"]
        return next((a for a in apps.values() if a.mode == "workflow"), next(iter(apps.values())))

    # -- inspection ------------------------------------------------------------------------------

    @property
    def runs(self) -> Mapping[str, RunSnapshot]:
        """Run id -> snapshot, oldest first (a copy taken now)."""
        return MappingProxyType(self.state.snapshots())

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.state.requests.snapshot()

    def requests_to(self, method: str | None, path: str | re.Pattern[str]) -> list[RecordedRequest]:
        """Recorded requests by method (None: any) and path suffix (``"/workflows/run"``) or regex."""
        return [r for r in self.requests if _request_matches(r, method, path)]

    # -- control ---------------------------------------------------------------------------------

    def script(self, app: str, *scenarios: Scenario) -> None:
        """The next runs of ``app`` follow ``scenarios`` in order, then the app's default again."""
        self.state.script(app, scenarios)

    def inject(self, *faults: Fault) -> None:
        for fault in faults:
            self.state.faults.add(fault)

    def configure(
        self,
        *,
        server_version: str | None = None,
        pre_113_disconnect: bool | None = None,
        ping_interval: float | None = None,
    ) -> None:
        """Switch server-wide behaviour until the next :meth:`reset`."""
        with self.state.cond:
            config = self.state.config
            if server_version is not None:
                config.server_version = server_version
            if pre_113_disconnect is not None:
                config.pre_113_disconnect = pre_113_disconnect
            if ping_interval is not None:
                config.ping_interval = ping_interval

    def finish(
        self,
        run_id: str,
        status: str | WorkflowRunStatus = "succeeded",
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> RunSnapshot:
        """End an unfinished (typically held) run now; ``outputs`` default to the app's."""
        target = WorkflowRunStatus(status)

        def act() -> RunSnapshot:
            run = self._run(run_id)
            self.state.finish(run, target, outputs, error)
            return run.snapshot()

        return self._on_loop(act)

    def resume(self, run_id: str, action: str = "approve", inputs: dict[str, Any] | None = None) -> RunSnapshot:
        """Submit a paused run's form, as ``POST /form/human_input/{token}`` would."""

        def act() -> RunSnapshot:
            run = self._run(run_id)
            self.state.resume(run, action, dict(inputs or {}))
            return run.snapshot()

        return self._on_loop(act)

    def stop(self, run_id: str) -> RunSnapshot:
        """Stop a run as the stop API does (a pre-1.13 orphan ignores it)."""

        def act() -> RunSnapshot:
            run = self._run(run_id)
            self.state.stop(run)
            return run.snapshot()

        return self._on_loop(act)

    def reset(self) -> None:
        """Forget runs, requests, faults, scripts and uploads; undo :meth:`configure`."""
        self._on_loop(self.state.reset)

    def _run(self, run_id: str) -> Run:
        run = self.state.runs.get(run_id)
        if run is None:
            raise KeyError(f"no run {run_id!r}")
        return run

    # -- waiting ---------------------------------------------------------------------------------

    def wait_for(self, target: RunTarget = None, status: StatusArg | None = None, timeout: float = 5.0) -> RunSnapshot:
        """Block until a run exists and has ``status`` (one or several), then return it.

        ``target`` is a run id, a predicate on snapshots (the newest matching run wins), or None
        for any run. Wakes on the server's notifications; raises ``TimeoutError``.
        """
        wanted = _statuses(status)

        def check() -> RunSnapshot | None:
            runs = self.state.runs
            if isinstance(target, str):
                found = runs.get(target)
                candidates = [] if found is None else [found]
            else:
                candidates = list(reversed(runs.values()))
            for run in candidates:
                snapshot = run.snapshot()
                if wanted is not None and snapshot.status not in wanted:
                    continue
                if callable(target) and not target(snapshot):
                    continue
                return snapshot
            return None

        found = self.state.wait(check, timeout)
        if found is None:
            current = self.state.runs.get(target) if isinstance(target, str) else None
            seen = f"; it is {current.status.value}" if current is not None else ""
            want = sorted(s.value for s in wanted) if wanted else "any status"
            raise TimeoutError(f"no run matching {target!r} with {want} after {timeout}s{seen}")
        return found

    def wait_for_requests(
        self,
        method: str | None,
        path: str | re.Pattern[str],
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[RecordedRequest], bool] | None = None,
    ) -> list[RecordedRequest]:
        """Block until at least ``count`` matching requests were received (and satisfy ``where``,
        e.g. ``lambda r: r.status is not None`` for "answered"); return them all."""

        def check() -> list[RecordedRequest] | None:
            matching = [r for r in self.requests_to(method, path) if where is None or where(r)]
            return matching if len(matching) >= count else None

        found = self.state.wait(check, timeout)
        if found is None:
            raise TimeoutError(f"fewer than {count} {method or ''} {path} requests after {timeout}s")
        return found


def _request_matches(request: RecordedRequest, method: str | None, path: str | re.Pattern[str]) -> bool:
    if method is not None and request.method != method.upper():
        return False
    if isinstance(path, str):
        return request.path.endswith(path)
    return path.search(request.path) is not None
