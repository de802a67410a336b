"""``DifyEmulator``: the emulator running in a background thread, and the handle tests hold.

Control methods are called from the test's thread while the server runs its own asyncio loop;
anything that touches runs is handed to that loop (``run_coroutine_threadsafe``) and waited for,
so after ``emu.finish(run_id)`` returns the run *is* finished for every client. Waiting
(:meth:`DifyEmulator.wait_for`) blocks on a condition the server notifies: no sleep-polling.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, Self, TypeVar

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing.app import create_app
from dify_provider.testing.catalog import default_apps
from dify_provider.testing.chats import ChatMessage, MessageSnapshot
from dify_provider.testing.config import EmulatorConfig
from dify_provider.testing.models import (
    EmulatedApp,
    Fault,
    RecordedRequest,
    RunSnapshot,
    Scenario,
)
from dify_provider.testing.runs import Run
from dify_provider.testing.serving import LoopbackServer
from dify_provider.testing.state import EmulatorState

T = TypeVar("T")
StatusArg = str | WorkflowRunStatus | Collection[str | WorkflowRunStatus]
RunTarget = str | Callable[[RunSnapshot], bool] | None


def _statuses(status: StatusArg | None) -> frozenset[WorkflowRunStatus] | None:
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    return frozenset(WorkflowRunStatus(value) for value in values)


class DifyEmulator:
    """A local Dify service API on loopback, behaving like Dify 1.13.2 unless switched.
    ``with DifyEmulator() as emu: ...``

    ``apps`` defaults to :func:`~dify_provider.testing.catalog.default_apps`. ``**switches`` are
    :class:`~dify_provider.testing.config.EmulatorConfig` fields (``server_version="1.12.0",
    pre_113_disconnect=True, stream_idle_timeout=0.5, ...``), applied over ``config`` (a config
    or a mapping; None: the 1.13.2 defaults); an unknown name is a ``TypeError``. ``port=0``
    picks a free port.
    """

    def __init__(
        self,
        apps: Sequence[EmulatedApp] | None = None,
        *,
        config: EmulatorConfig | Mapping[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        access_log: bool = False,
        **switches: Any,
    ) -> None:
        settings = EmulatorConfig.build(config, **switches)
        self.state = EmulatorState(default_apps() if apps is None else apps, settings)
        self._server = LoopbackServer("dify-emulator", host, port, access_log=access_log)
        #: Seconds from start() to the server accepting requests (imports excluded).
        self.startup_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server.running:
            return self
        began = time.perf_counter()
        self._server.start(lambda: create_app(self.state), self.state.bind)
        self.startup_seconds = time.perf_counter() - began
        return self

    def close(self) -> None:
        """Stop the server: open streams end, run tasks are cancelled."""
        self._server.stop(before=self.state.shutdown)
        self.state.loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _on_loop(self, fn: Callable[[], T]) -> T:
        return self._server.call(fn)

    # -- addresses and apps --------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return self._server.url

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

    @property
    def messages(self) -> Mapping[str, MessageSnapshot]:
        """Message id -> snapshot of every chat, agent-chat, chatflow and completion message, oldest
        first (a chatflow's also has its run in :attr:`runs`: ``workflow_run_id``)."""
        return MappingProxyType(self.state.message_snapshots())

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

    @property
    def config(self) -> EmulatorConfig:
        """The switches in force now (frozen; change them with :meth:`configure`)."""
        return self.state.config

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Switch server-wide behaviour until the next :meth:`reset`: any
        :class:`~dify_provider.testing.config.EmulatorConfig` field, e.g.
        ``configure(server_version="1.14.0", stopped_run_record="stopped")``. All changes are
        validated first and apply together; an unknown name is a ``TypeError``, a bad value a
        ``ValueError``. Returns the new config. Streams already open keep their timing."""
        with self.state.cond:
            self.state.config = self.state.config.changed(**changes)
            return self.state.config

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
        """Answer the form a paused run waits on, as a person in Dify's web app would: a later
        submission by token gets 412 submitted. Inputs left out keep their prefilled value (a
        default, else empty; a select: its first option); an action the form lacks, or a select
        value not among its options, is a ``ValueError`` (``InvalidFormData``)."""

        def act() -> RunSnapshot:
            run = self._run(run_id)
            self.state.resume(run, action, dict(inputs or {}))
            return run.snapshot()

        return self._on_loop(act)

    def expire_form(self, run_id: str) -> RunSnapshot:
        """Time out the form a paused run waits on, as Dify's sweeper does once its expiration time
        has passed: submissions get 412 expired, the run emits ``human_input_form_timeout`` and
        goes on along the timeout branch (``branch: "timeout"``, no answer; later forms still come)."""

        def act() -> RunSnapshot:
            run = self._run(run_id)
            self.state.expire_form(run)
            return run.snapshot()

        return self._on_loop(act)

    def release(self, run_id: str) -> RunSnapshot:
        """Let a held run go on: out of its held node (``NodeSpec(hold=True)``) through the rest
        of its nodes, or past ``Scenario(hold=True)`` to the scenario's own outcome."""

        def act() -> RunSnapshot:
            run = self._run(run_id)
            self.state.release(run)
            return run.snapshot()

        return self._on_loop(act)

    def stop(self, run_id: str) -> RunSnapshot:
        """Stop a run as the stop API does: the stream ends ``stopped``; with the 1.13.2 default
        ``stopped_run_record="running"`` the API record stays ``running`` (``snapshot.status`` is
        ``stopped``, ``snapshot.api_status`` ``running``). A pre-1.13 orphan ignores it. A paused
        run on 1.13.x stays paused; answering its form then strands it (status ``stopped``,
        ``api_status`` ``running`` with no totals, for good); from 1.14 it ends ``stopped``."""

        def act() -> RunSnapshot:
            run = self._run(run_id)
            self.state.stop(run)
            return run.snapshot()

        return self._on_loop(act)

    def release_message(self, message_id: str) -> MessageSnapshot:
        """Let a held message go on (``Scenario(hold=True)``; a chatflow's: its run, as :meth:`release`)."""
        return self._on_message(message_id, self.state.chat.release)

    def finish_message(
        self, message_id: str, status: str | WorkflowRunStatus = "succeeded", error: str | None = None
    ) -> MessageSnapshot:
        """End an unfinished message now: ``succeeded`` (``message_end``), ``failed`` (an in-stream
        ``error`` with ``error``), ``stopped`` (as the stop API). A chatflow's: :meth:`finish` its run."""
        target = WorkflowRunStatus(status)
        return self._on_message(message_id, lambda message: self.state.chat.finish(message, target, error))

    def stop_message(self, message_id: str) -> MessageSnapshot:
        """Stop a message as its owner's stop API call does (it ends with ``message_end``)."""
        return self._on_message(message_id, self.state.chat.stop)

    def _on_message(self, message_id: str, action: Callable[[ChatMessage], object]) -> MessageSnapshot:
        def act() -> MessageSnapshot:
            message = self.state.chats.messages.get(message_id)
            if message is None:
                raise KeyError(f"no message {message_id!r}")
            action(message)
            return message.snapshot()

        return self._on_loop(act)

    def reset(self) -> None:
        """Forget runs, messages and conversations, requests, faults, scripts and uploads; back to the
        constructor's config."""
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

    def wait_for_message(
        self,
        target: str | Callable[[MessageSnapshot], bool] | None = None,
        status: str | Collection[str] | None = None,
        timeout: float = 5.0,
    ) -> MessageSnapshot:
        """Block until a message exists (an id, a predicate: the newest matching wins, or None) with
        ``status`` (``running``, ``succeeded``, ``failed``, ``stopped``, ``paused``; one or several)."""
        wanted = None if status is None else {status} if isinstance(status, str) else set(status)

        def check() -> MessageSnapshot | None:
            messages = self.state.chats.messages
            if isinstance(target, str):
                candidates = [messages[target]] if target in messages else []
            else:
                candidates = list(reversed(messages.values()))
            for message in candidates:
                snapshot = message.snapshot()
                if (wanted is None or snapshot.status in wanted) and (not callable(target) or target(snapshot)):
                    return snapshot
            return None

        found = self.state.wait(check, timeout)
        if found is None:
            want = sorted(wanted) if wanted else "any status"
            raise TimeoutError(f"no message matching {target!r} with {want} after {timeout}s")
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
