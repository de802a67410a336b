"""Everything the emulator remembers, and how other threads wait for it to change.

:class:`Registry` holds the apps (by name and by key), the runs (by id, task id, app and form
token), the conversations and messages of chat apps (:class:`~dify_provider.testing.chats.ChatLog`),
uploaded files, scripted scenarios, the config, the fault book and the request log, with
the lookups the routes use and the waiting the test side uses. How runs progress is
:class:`~dify_provider.testing.state.EmulatorState`, built on it.

Threading model: the server's asyncio loop owns all run mutations (handlers, run tasks, and control
calls that :class:`~dify_provider.testing.server.DifyEmulator` dispatches onto the loop), so runs
never race each other. Each mutation also happens under ``cond`` (a ``threading.Condition``) and
notifies it (:meth:`Registry._notify`), which is what lets a test thread read consistent snapshots
and *wait* for a status without polling (:meth:`Registry.wait`; code on the loop uses
:meth:`Registry.wait_async`). One asyncio task drives each run; live SSE readers get events
through their own asyncio queues.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dify_provider.testing.chats import ChatLog, MessageSnapshot
from dify_provider.testing.config import EmulatorConfig
from dify_provider.testing.faults import FaultBook
from dify_provider.testing.models import EmulatedApp, RunSnapshot, Scenario
from dify_provider.testing.recording import RequestLog
from dify_provider.testing.runs import PendingForm, Run

T = TypeVar("T")

#: Route keys of the service API (see :func:`~dify_provider.testing.faults.normalize_endpoint`),
#: served by :mod:`dify_provider.testing.routes`.
SERVICE_ENDPOINTS = frozenset(
    {
        "GET /",
        "GET /info",
        "GET /parameters",
        "GET /site",
        "GET /meta",
        "POST /workflows/run",
        "POST /workflows/{}/run",
        "GET /workflows/run/{}",
        "POST /workflows/tasks/{}/stop",
        "GET /workflows/logs",
        "GET /workflow/{}/events",
        "POST /chat-messages",
        "POST /chat-messages/{}/stop",
        "POST /completion-messages",
        "POST /completion-messages/{}/stop",
        "GET /messages",
        "GET /conversations",
        "POST /files/upload",
        "GET /form/human_input/{}",
        "POST /form/human_input/{}",
    }
)


class Registry:
    """The emulator's memory: apps, runs and their indexes, files, scripts, config, faults and
    requests; lookups from any thread, waiting on ``cond``, and the bulk reset."""

    def __init__(self, apps: Sequence[EmulatedApp], config: EmulatorConfig) -> None:
        self.apps: dict[str, EmulatedApp] = {}
        self._by_key: dict[str, EmulatedApp] = {}
        for app in apps:
            if app.name in self.apps or app.api_key in self._by_key:
                raise ValueError(f"duplicate app name or key: {app.name!r}")
            self.apps[app.name] = app
            self._by_key[app.api_key] = app
        self._initial_config = config
        #: Replaced as a whole (it is frozen), so a reader on any thread sees one consistent config.
        self.config = config
        self.cond = threading.Condition()
        self.faults = FaultBook(SERVICE_ENDPOINTS, frozenset(self.apps))
        self.requests = RequestLog(self.cond)
        self.runs: dict[str, Run] = {}
        self._by_task: dict[str, Run] = {}
        self._by_app: dict[str, list[Run]] = {}
        self._forms: dict[str, Run] = {}
        self.chats = ChatLog()
        self.files: dict[str, dict[str, Any]] = {}
        self._scripts: dict[str, deque[Scenario]] = {}
        self._seq = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._changed: asyncio.Event | None = None
        self._interrupt: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the server thread once the loop runs."""
        self.loop = loop
        self._loop_thread = threading.get_ident()
        self._changed = asyncio.Event()
        self._interrupt = asyncio.Event()

    async def sleep(self, seconds: float) -> bool:
        """Sleep, unless reset/shutdown interrupts (so a scripted delay never holds up a
        teardown). True if the full time passed."""
        interrupt = self._interrupt
        if interrupt is None:
            await asyncio.sleep(seconds)
            return True
        return not await _set_within(interrupt, seconds)

    # -- lookups (any thread) ------------------------------------------------------------------

    def app_for_header(self, authorization: str | None) -> EmulatedApp | None:
        if not authorization or " " not in authorization:
            return None
        scheme, token = authorization.split(None, 1)
        return self._by_key.get(token) if scheme.lower() == "bearer" else None

    def app_name_for_header(self, authorization: str | None) -> str | None:
        app = self.app_for_header(authorization)
        return app.name if app else None

    def app(self, name: str) -> EmulatedApp:
        try:
            return self.apps[name]
        except KeyError:
            raise KeyError(f"no app named {name!r}; apps: {', '.join(self.apps)}") from None

    def run_by_task(self, task_id: str) -> Run | None:
        return self._by_task.get(task_id)

    def run_by_form(self, token: str) -> Run | None:
        return self._forms.get(token)

    def form_by_token(self, token: str) -> tuple[Run, PendingForm] | None:
        """The form a token names (each form of a run has its own), with its run."""
        run = self._forms.get(token)
        form = run.form_for(token) if run is not None else None
        return None if run is None or form is None else (run, form)

    def add_form(self, run: Run, form: PendingForm) -> None:
        """Make a form findable by its token (an email-only form has none)."""
        if form.token is not None:
            self._forms[form.token] = run

    def runs_of(self, app: EmulatedApp) -> list[Run]:
        return self._by_app.get(app.name, [])

    def next_scenario(self, app: EmulatedApp) -> Scenario:
        """The app's next scripted scenario, else its own (call with ``cond`` held)."""
        script = self._scripts.get(app.name)
        return script.popleft() if script else app.scenario

    def script(self, app_name: str, scenarios: Sequence[Scenario]) -> None:
        self.app(app_name)
        with self.cond:
            self._scripts.setdefault(app_name, deque()).extend(scenarios)

    def snapshots(self) -> dict[str, RunSnapshot]:
        with self.cond:
            return {run_id: run.snapshot() for run_id, run in self.runs.items()}

    def message_snapshots(self) -> dict[str, MessageSnapshot]:
        with self.cond:
            return {message_id: message.snapshot() for message_id, message in self.chats.messages.items()}

    # -- waiting ---------------------------------------------------------------------------------

    def wait(self, check: Callable[[], T | None], timeout: float) -> T | None:
        """Block the calling (non-server) thread until ``check`` returns something, or time out."""
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("wait on the server thread would deadlock it")
        found: T | None = None

        def ready() -> bool:
            nonlocal found
            found = check()
            return found is not None

        with self.cond:
            self.cond.wait_for(ready, timeout)
        return found

    async def wait_async(self, check: Callable[[], T | None], within: float) -> T | None:
        """The same, for code on the server loop (the admin API's long-poll)."""
        deadline = time.monotonic() + within
        while True:
            with self.cond:
                found = check()
            changed = self._changed
            if found is not None or changed is None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not await _set_within(changed, remaining):
                return None

    def _notify(self) -> None:
        """Wake waiters; call with ``cond`` held, on the loop thread."""
        self.cond.notify_all()
        if self._changed is not None and threading.get_ident() == self._loop_thread:
            self._changed.set()
            self._changed = asyncio.Event()

    # -- bulk (loop thread) --------------------------------------------------------------------

    def _close_all(self) -> None:
        if self._interrupt is not None:
            self._interrupt.set()
            self._interrupt = asyncio.Event()
        for run in self.runs.values():
            if run.task is not None and not run.task.done():
                run.task.cancel()
            for queue in run.subscribers:
                queue.put_nowait(None)
            run.subscribers.clear()
        for message in self.chats.messages.values():
            if message.task is not None and not message.task.done():
                message.task.cancel()
            for queue in message.subscribers:
                queue.put_nowait(None)
            message.subscribers.clear()

    def reset(self) -> None:
        self._close_all()
        with self.cond:
            self.runs.clear()
            self._by_task.clear()
            self._by_app.clear()
            self._forms.clear()
            self.chats.clear()
            self.files.clear()
            self._scripts.clear()
            self.config = self._initial_config
            self.faults.clear()
            self.requests.clear()
            self._notify()

    def shutdown(self) -> None:
        self._close_all()


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether ``event`` is set within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
