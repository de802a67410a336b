"""How runs progress: :class:`EmulatorState` is the :class:`~dify_provider.testing.registry.Registry`
(what the emulator remembers, and waiting for it to change) plus the run lifecycle.

A run is created and registered (:meth:`EmulatorState.create_run`), then driven by one asyncio task
(:meth:`EmulatorState.launch`) through its scenario's nodes, its human-input pauses (one per form
its scenario asks, :class:`~dify_provider.testing.form_state.HumanInputEngine`, ``state.human_input``)
and an optional hold, to its end; SSE readers subscribe to its events. The control calls
(``resume``, ``expire_form``, ``stop``, ``abort``, ``release``, ``finish``, ``fail``,
``client_gone``) change a run from outside its task. A chatflow's run answers a chat message
(``Run.message``): its text chunks are the answer's ``message`` events and its end brings
``message_end``, both through the chat engine (:class:`~dify_provider.testing.chat_state.ChatEngine`,
``state.chat``), which also drives the other chat modes' messages.

Threading model (see :mod:`~dify_provider.testing.registry`): all of this runs on the server's
asyncio loop, which owns run mutations; every change a test may wait for happens under ``cond``
and notifies it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing import payloads
from dify_provider.testing.catalog import CHATFLOW_NODES
from dify_provider.testing.chat_state import ChatEngine
from dify_provider.testing.chats import ChatMessage
from dify_provider.testing.config import EmulatorConfig, version_tuple
from dify_provider.testing.form_state import HumanInputEngine
from dify_provider.testing.models import EmulatedApp, NodeSpec, Scenario
from dify_provider.testing.registry import SERVICE_ENDPOINTS, Registry
from dify_provider.testing.runs import Item, Node, Run, render

log = logging.getLogger(__name__)

STOPPED_BY_USER = "Stopped by user."

#: The old name of :class:`~dify_provider.testing.config.EmulatorConfig`.
Config = EmulatorConfig

__all__ = ["SERVICE_ENDPOINTS", "STOPPED_BY_USER", "Config", "EmulatorConfig", "EmulatorState", "version_tuple"]


class EmulatorState(Registry):
    """The registry plus how runs progress; every method here runs on the loop thread."""

    def __init__(self, apps: Sequence[EmulatedApp], config: EmulatorConfig) -> None:
        super().__init__(apps, config)
        self.chat = ChatEngine(self)
        self.human_input = HumanInputEngine(self)

    def create_run(
        self,
        app: EmulatedApp,
        user: str,
        inputs: dict[str, Any],
        files: list[Any],
        *,
        message: ChatMessage | None = None,
        scenario: Scenario | None = None,
    ) -> Run:
        with self.cond:
            scenario = scenario or self.next_scenario(app)
            if message is not None and scenario.nodes is None:
                # A chatflow's answer comes from its graph: a script without nodes keeps the app's.
                scenario = scenario.model_copy(update={"nodes": app.scenario.nodes or CHATFLOW_NODES})
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
                message=message,
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
            if await self.human_input.ask_all(run):
                final = "succeeded"  # an end_on action: the branch straight to an end
            else:
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
                text, source = render(template, run.stored_inputs), list(selector)
                chatflow = run.message is not None  # a chatflow's chunks are its answer's ``message`` events
                self._emit(run, self.chat.chatflow_text(run, text, source) if chatflow else
                           payloads.text_chunk(run, text, source))
            if spec is not None and spec.hold:
                await self._hold(run)
            seconds = spec.seconds if spec is not None and spec.seconds is not None else scenario.step_seconds
            await asyncio.sleep(seconds)
            if spec is not None and spec.tokens is not None:
                node.tokens, node.price = spec.tokens, spec.price
            elif run.message is None:
                node.tokens = scenario.tokens_per_step
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
                if run.message is not None and node.node_type == "llm":
                    self.chat.chatflow_llm_done(run, node)  # the usage formula's tokens and price
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
            outputs = dict(run.scenario.outputs)
        elif run.message is not None:
            outputs = {"answer": run.message.answer, "files": []}  # the answer node's (recording 75)
        else:
            outputs = run.app.compute_outputs(run.inputs)
        if run.scenario.forms is not None:
            outputs.update(self.human_input.outputs(run))
        return outputs

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
        finished = payloads.workflow_finished(run)
        for event in [finished] if run.message is None else self.chat.chatflow_ended(run, finished):
            self._emit(run, event)

    def _halt(self, run: Run) -> None:
        """Cancel the run's task. A node left running gets no ``node_finished`` (as on 1.13.2,
        where a stop ends the stream with ``workflow_finished`` right away)."""
        if run.task is not None and not run.task.done():
            run.task.cancel()

    def resume(self, run: Run, action: str, inputs: dict[str, Any]) -> None:
        """Answer the pending form as Dify's web app would (see ``HumanInputEngine.resume``)."""
        self.human_input.resume(run, action, inputs)

    def expire_form(self, run: Run) -> None:
        """Time the pending form out: the run takes its timeout branch."""
        self.human_input.expire(run)

    def stop(self, run: Run) -> bool:
        """The stop API: ends a running run as ``stopped`` (the stream says so; with
        ``stopped_run_record="running"`` the API record stays ``running``); a pre-1.13 orphan
        ignores it. A paused one: from 1.14 the same; on 1.13.x it stays paused until its form is
        answered, which then strands it (``HumanInputEngine.defer_stop``, :meth:`strand`)."""
        if run.terminal or run.orphaned:
            return False
        if self.human_input.defer_stop(run, None):
            return True
        self._halt(run)
        run.shows_running = self.config.stopped_run_record == "running"
        self._complete(run, WorkflowRunStatus.STOPPED, error=STOPPED_BY_USER)
        return True

    def strand(self, run: Run) -> None:
        """A run stopped while paused on 1.13.x, as its resumption starts (recordings hitl/B2-B4):
        the stop flag kills the resumed worker after it rewrote the record as a fresh ``running``
        one and before anything finishes it, so the API shows ``running`` with no totals for good
        (whatever ``stopped_run_record`` says); nothing more is sent."""
        self._halt(run)
        with self.cond:
            run.status, run.error, run.outputs = WorkflowRunStatus.STOPPED, STOPPED_BY_USER, None
            run.shows_running, run.held, run.finished_at = True, False, time.time()
            if run.form is not None:
                run.form.expired = True
            self._notify()

    def abort(self, run: Run, reason: str) -> bool:
        """The graph engine's stop command alone (a chat-family stop whose user check failed):
        ``workflow_finished`` says ``failed`` with ``Aborted: <reason>``, the record ``stopped``
        (``GraphRunAbortedEvent``: the runner reports a failure, the persistence layer a stop).
        A paused run on 1.13.x: not before its resumption (``HumanInputEngine.defer_stop``)."""
        if run.terminal or run.orphaned:
            return False
        if self.human_input.defer_stop(run, reason):
            return True
        self._halt(run)
        run.stream_status = WorkflowRunStatus.FAILED
        self._complete(run, WorkflowRunStatus.STOPPED, error=f"Aborted: {reason}")
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


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("emulated run crashed", exc_info=task.exception())
