"""Everything the emulator remembers, and how runs progress.

Threading model: the server's asyncio loop owns all run mutations (handlers, run tasks, and control
calls that :class:`~dify_provider.testing.server.DifyEmulator` dispatches onto the loop), so runs
never race each other. Each mutation also happens under ``cond`` (a ``threading.Condition``) and
notifies it, which is what lets a test thread read consistent snapshots and *wait* for a status
without polling. One asyncio task drives each run; live SSE readers get events through their own
asyncio queues.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing import payloads
from dify_provider.testing.config import EmulatorConfig, version_tuple
from dify_provider.testing.faults import FaultBook
from dify_provider.testing.models import EmulatedApp, NodeSpec, RunSnapshot, Scenario
from dify_provider.testing.recording import RequestLog
from dify_provider.testing.runs import Item, Node, PendingForm, Run

log = logging.getLogger(__name__)
T = TypeVar("T")

STOPPED_BY_USER = "Stopped by user."

#: Route keys of the service API (see :func:`~dify_provider.testing.faults.normalize_endpoint`).
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
        "POST /files/upload",
        "GET /form/human_input/{}",
        "POST /form/human_input/{}",
    }
)


#: The old name of :class:`~dify_provider.testing.config.EmulatorConfig`.
Config = EmulatorConfig

__all__ = ["SERVICE_ENDPOINTS", "STOPPED_BY_USER", "Config", "EmulatorConfig", "EmulatorState", "version_tuple"]


class EmulatorState:
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
        try:
            async with asyncio.timeout(seconds):
                await interrupt.wait()
        except TimeoutError:
            return True
        return False

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

    def runs_of(self, app: EmulatedApp) -> list[Run]:
        return self._by_app.get(app.name, [])

    def script(self, app_name: str, scenarios: Sequence[Scenario]) -> None:
        self.app(app_name)
        with self.cond:
            self._scripts.setdefault(app_name, deque()).extend(scenarios)

    def snapshots(self) -> dict[str, RunSnapshot]:
        with self.cond:
            return {run_id: run.snapshot() for run_id, run in self.runs.items()}

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
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                return None

    def _notify(self) -> None:
        """Wake waiters; call with ``cond`` held, on the loop thread."""
        self.cond.notify_all()
        if self._changed is not None and threading.get_ident() == self._loop_thread:
            self._changed.set()
            self._changed = asyncio.Event()

    # -- run lifecycle (loop thread) --------------------------------------------------------------

    def create_run(self, app: EmulatedApp, user: str, inputs: dict[str, Any], files: list[Any]) -> Run:
        with self.cond:
            script = self._scripts.get(app.name)
            scenario = script.popleft() if script else app.scenario
            self._seq += 1
            run = Run(
                id=str(uuid.uuid4()),
                task_id=str(uuid.uuid4()),
                app=app,
                user=user,
                inputs=inputs,
                files=files,
                scenario=scenario,
                seq=self._seq,
            )
            self.runs[run.id] = run
            self._by_task[run.task_id] = run
            self._by_app.setdefault(app.name, []).append(run)
            self._notify()
        return run

    def launch(self, run: Run) -> None:
        run.task = asyncio.get_running_loop().create_task(self._drive(run), name=f"dify-run-{run.id}")
        run.task.add_done_callback(_log_crash)

    def subscribe(self, run: Run, replay_from: int | None = None) -> asyncio.Queue[Item]:
        """A queue of the run's events: live ones, preceded by ``events[replay_from:]`` if given."""
        queue: asyncio.Queue[Item] = asyncio.Queue()
        if replay_from is not None:
            for event in run.events[replay_from:]:
                queue.put_nowait(event)
        run.subscribers.add(queue)
        return queue

    def unsubscribe(self, run: Run, queue: asyncio.Queue[Item]) -> None:
        run.subscribers.discard(queue)

    def _emit(self, run: Run, event: dict[str, Any]) -> None:
        run.events.append(event)
        for queue in run.subscribers:
            queue.put_nowait(event)

    async def _drive(self, run: Run) -> None:
        scenario = run.scenario
        self._emit(run, payloads.workflow_started(run, "initial"))
        first = scenario.nodes if scenario.nodes is not None else scenario.steps
        if scenario.status == "paused":
            await self._run_nodes(run, first, final=False, outcome="succeeded")
            self._pause(run)
            await run.resumed.wait()
            await self._run_nodes(run, scenario.steps_after_resume, final=True, outcome=scenario.after_resume)
            final = scenario.after_resume
        else:
            await self._run_nodes(run, first, final=True, outcome=scenario.status)
            final = scenario.status
        if scenario.hold:
            await self._hold(run)  # until release(), or finish()/stop() cancel this task
        self._complete(run, WorkflowRunStatus(final))

    async def _hold(self, run: Run) -> None:
        with self.cond:
            run.held = True
            self._notify()
        await run.released.wait()
        run.released.clear()
        with self.cond:
            run.held = False
            self._notify()

    async def _run_nodes(self, run: Run, nodes: int | tuple[NodeSpec, ...], *, final: bool, outcome: str) -> None:
        """Run the nodes (``count`` generic ones: the first of the run is the start node, the last
        of the final segment the end node); a failing outcome fails the last node, a partial one
        marks the node before it as a handled ``exception``."""
        scenario = run.scenario
        specs = nodes if isinstance(nodes, tuple) else None
        count = len(nodes) if isinstance(nodes, tuple) else nodes
        failing = final and outcome == "failed" and not scenario.hold
        excepting = final and outcome == "partial-succeeded" and not scenario.hold
        for i in range(count):
            last = i == count - 1
            spec = specs[i] if specs is not None else None
            if spec is None:
                node_type = "start" if not run.nodes else ("end" if final and last and not failing else "llm")
                node = self._start_node(run, node_type)
            else:
                node = self._start_node(run, spec.type, node_id=spec.id, title=spec.title or spec.id)
            for template, selector in spec.text_chunks if spec is not None else ():
                self._emit(run, payloads.text_chunk(run, template.format_map(_Missing(run.inputs)), list(selector)))
            if spec is not None and spec.hold:
                await self._hold(run)
            seconds = spec.seconds if spec is not None and spec.seconds is not None else scenario.step_seconds
            await asyncio.sleep(seconds)
            node.tokens = spec.tokens if spec is not None and spec.tokens is not None else scenario.tokens_per_step
            if failing and last:
                node.status, node.error = "failed", scenario.error or f"Node {node.title} run failed: emulated failure"
                run.exceptions += 1  # Dify counts every failed node (GraphExecution.record_node_failure)
            elif excepting and (i == count - 2 or count == 1):
                node.status, node.error = "exception", "Emulated handled error"
                run.exceptions += 1
            else:
                node.status = "succeeded"
                if node.node_type == "start":
                    node.outputs = dict(run.stored_inputs)
                elif node.node_type == "end" or (final and last and spec is not None):
                    node.outputs = self._default_outputs(run)
                else:
                    node.outputs = {"text": f"step {node.index}"}
            self._finish_node(run, node)

    def _start_node(self, run: Run, node_type: str, *, node_id: str | None = None, title: str | None = None) -> Node:
        index = len(run.nodes) + 1
        titles = {"start": "Start", "end": "End", "human-input": "Human Input"}
        node = Node(
            index=index,
            node_id=node_id or (node_type if node_type in titles else f"llm_{index}"),
            node_type=node_type,
            title=title or titles.get(node_type, f"LLM {index}"),
            predecessor=run.nodes[-1].node_id if run.nodes else None,
            inputs=run.stored_inputs if node_type == "start" else {},
        )
        run.nodes.append(node)
        with self.cond:  # Dify counts a step when a node starts (event_handlers: NodeRunStartedEvent)
            run.steps += 1
            self._notify()
        self._emit(run, payloads.node_started(run, node))
        return node

    def _finish_node(self, run: Run, node: Node) -> None:
        node.finished_at = time.time()
        with self.cond:
            run.tokens += node.tokens
        self._emit(run, payloads.node_finished(run, node))

    def _default_outputs(self, run: Run) -> dict[str, Any]:
        if run.scenario.outputs is not None:
            return dict(run.scenario.outputs)
        return run.app.compute_outputs(run.inputs)

    def _pause(self, run: Run) -> None:
        form = PendingForm(node=self._start_node(run, "human-input", node_id="human_input"))
        run.form = form
        self._forms[form.token] = run
        with self.cond:
            run.status = WorkflowRunStatus.PAUSED
            self._notify()
        self._emit(run, payloads.human_input_required(run, form))
        self._emit(run, payloads.workflow_paused(run, form))

    def _complete(
        self,
        run: Run,
        status: WorkflowRunStatus,
        *,
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        succeeded = status in (WorkflowRunStatus.SUCCEEDED, WorkflowRunStatus.PARTIAL_SUCCEEDED)
        if succeeded and outputs is None:
            outputs = self._default_outputs(run)
        if status == WorkflowRunStatus.FAILED:
            error = error or run.scenario.error or "Emulated workflow failure"
        elif status == WorkflowRunStatus.STOPPED:
            error = error or run.scenario.error or STOPPED_BY_USER
        if status == WorkflowRunStatus.PARTIAL_SUCCEEDED:
            run.exceptions = max(run.exceptions, 1)
        with self.cond:
            run.status, run.outputs, run.error = status, outputs, error
            run.finished_at = time.time()
            run.held = False
            if run.form is not None:
                run.form.expired = True
            self._notify()
        self._emit(run, payloads.workflow_finished(run))

    def _halt(self, run: Run) -> None:
        """Cancel the run's task. A node left running gets no ``node_finished`` (as on 1.13.2,
        where a stop ends the stream with ``workflow_finished`` right away)."""
        if run.task is not None and not run.task.done():
            run.task.cancel()

    def resume(self, run: Run, action: str, inputs: dict[str, Any]) -> None:
        form = run.form
        if run.status != WorkflowRunStatus.PAUSED or form is None or form.submitted:
            raise ValueError(f"run {run.id} is {run.status.value}, not waiting for input")
        form.submitted = True
        with self.cond:
            run.status = WorkflowRunStatus.RUNNING
            self._notify()
        run.segment_start = len(run.events)
        self._emit(run, payloads.workflow_started(run, "resumption"))
        self._emit(run, payloads.human_input_form_filled(run, form, action, inputs))
        form.node.status = "succeeded"
        form.node.outputs = {"__action_id": action, **inputs}
        self._finish_node(run, form.node)
        run.resumed.set()

    def stop(self, run: Run) -> bool:
        """The stop API: ends a running (or paused) run as ``stopped`` (the stream says so; with
        ``stopped_run_record="running"`` the API record stays ``running``); a pre-1.13 orphan
        ignores it."""
        if run.terminal or run.orphaned:
            return False
        self._halt(run)
        run.shows_running = self.config.stopped_run_record == "running"
        self._complete(run, WorkflowRunStatus.STOPPED, error=STOPPED_BY_USER)
        return True

    def release(self, run: Run) -> None:
        """Let a held run go on: out of its held node, or on to its scenario's outcome."""
        if not run.held:
            raise ValueError(f"run {run.id} is not held (it is {run.status.value})")
        run.released.set()

    def finish(self, run: Run, status: WorkflowRunStatus, outputs: dict[str, Any] | None, error: str | None) -> None:
        """End any unfinished run now (the test's hand on a held run)."""
        if run.terminal:
            raise ValueError(f"run {run.id} already ended {run.status.value}")
        if status not in (
            WorkflowRunStatus.SUCCEEDED,
            WorkflowRunStatus.FAILED,
            WorkflowRunStatus.PARTIAL_SUCCEEDED,
            WorkflowRunStatus.STOPPED,
        ):
            raise ValueError(f"cannot finish a run as {status.value!r}")
        self._halt(run)
        self._complete(run, status, outputs=outputs, error=error)

    def fail(self, run: Run, error: str) -> None:
        """End the run ``failed`` now, as a failure outside any node does (an in-stream error)."""
        if run.terminal:
            return
        self._halt(run)
        self._complete(run, WorkflowRunStatus.FAILED, error=error)

    def client_gone(self, run: Run) -> None:
        """The streaming client of this run went away before the end. From 1.13 runs carry on; with
        the pre-1.13 switch the run is orphaned: stuck ``running``, deaf to stop."""
        if not self.config.pre_113_disconnect or run.terminal or run.orphaned:
            return
        if run.status == WorkflowRunStatus.PAUSED:
            return
        self._halt(run)
        with self.cond:
            run.orphaned = True
            self._notify()

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

    def reset(self) -> None:
        self._close_all()
        with self.cond:
            self.runs.clear()
            self._by_task.clear()
            self._by_app.clear()
            self._forms.clear()
            self.files.clear()
            self._scripts.clear()
            self.config = self._initial_config
            self.faults.clear()
            self.requests.clear()
            self._notify()

    def shutdown(self) -> None:
        self._close_all()


class _Missing(dict[str, Any]):
    """``str.format_map`` over run inputs: an unknown name formats as empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("emulated run crashed", exc_info=task.exception())
