"""How a paused run asks its forms: :class:`HumanInputEngine` (``state.human_input``), the
human-input part of the run lifecycle in :mod:`~dify_provider.testing.state`.

A paused run asks each :class:`~dify_provider.testing.forms.FormSpec` of its scenario in turn:
the human-input node starts, ``human_input_required`` and ``workflow_paused`` go out (a chatflow
also ends its message), and the run's task waits. One of three things lets it go on, each opening
a new segment (``workflow_started`` with reason ``resumption``, what the events endpoint replays
from): a submission by token (:meth:`HumanInputEngine.submit`, checked as Dify checks it), the
test's answer "in the web app" (:meth:`HumanInputEngine.resume`) or the test's timeout
(:meth:`HumanInputEngine.expire`: ``human_input_form_timeout`` and the timeout branch). Nothing
times a form out by itself: a test decides when time has passed. On 1.13.x a stop sent while the
run is paused waits for one of these, which then ends the run instead
(:meth:`HumanInputEngine.defer_stop`).

Where the forms are served: the service API ``/v1/form/human_input/{token}`` (Dify >= 1.14,
:mod:`~dify_provider.testing.routes.human_input`) and Dify 1.13.2's web API
``/api/form/human_input/{token}`` (every version, no key: :mod:`~dify_provider.testing.routes.web`).
Threading: as in :mod:`~dify_provider.testing.state`, everything here runs on the server loop and
changes a test may wait for happen under ``cond``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing import payloads
from dify_provider.testing.forms import (
    FormSpec,
    check_answer,
    prefilled,
    render_answered,
    render_before,
    resolve_defaults,
)
from dify_provider.testing.runs import PendingForm, Run

if TYPE_CHECKING:
    from dify_provider.testing.state import EmulatorState

#: The ``branch`` of a run whose last form timed out.
TIMEOUT_BRANCH = "timeout"


class HumanInputEngine:
    """Opens, answers and times out a run's forms; every method runs on the loop thread."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def ask_all(self, run: Run) -> bool:
        """Ask the scenario's forms in order (a generic node between two); True when an ``end_on``
        action ended the run there."""
        for i, spec in enumerate(run.scenario.pause_forms):
            if i:
                await self.state._run_nodes(run, 1, final=False, outcome="succeeded")
            form = self._open(run, spec)
            await run.resumed.wait()
            run.resumed.clear()
            if not form.timed_out and run.branch in spec.end_on:
                return True
        return False

    def _open(self, run: Run, spec: FormSpec) -> PendingForm:
        state = self.state
        node = state._start_node(run, "human-input", node_id=spec.node_id, title=spec.title)
        form = PendingForm(node=node, spec=spec, content=render_before(spec.content, run.inputs, run.sys_inputs),
                           resolved_defaults=resolve_defaults(spec, run.inputs, run.sys_inputs))
        run.form = form
        run.forms.append(form)
        state.add_form(run, form)
        with state.cond:
            run.status = WorkflowRunStatus.PAUSED
            state._notify()
        state._emit(run, payloads.human_input_required(run, form))
        state._emit(run, payloads.workflow_paused(run, form))
        if run.message is not None:
            state._emit(run, state.chat.chatflow_paused(run))
        return form

    def outputs(self, run: Run) -> dict[str, Any]:
        """What a run with scripted forms adds to its outputs: every answer, and the last branch."""
        return {"human_input": {node: dict(answer) for node, answer in run.answers.items()}, "branch": run.branch}

    # -- answering -------------------------------------------------------------------------------

    def submit(self, run: Run, form: PendingForm, action: str, inputs: Mapping[str, Any]) -> None:
        """A submission by token, once the route has found the form answerable: Dify's checks
        (``InvalidFormData``), then the run goes on along ``action``."""
        check_answer(form.spec, action, inputs)
        self._answer(run, form, action, dict(inputs))

    def resume(self, run: Run, action: str, inputs: Mapping[str, Any]) -> None:
        """The pending form answered in Dify's web app: fields left out keep what the page
        prefilled, the action must be one of the form's (``InvalidFormData``, a ``ValueError``)."""
        form = run.pending_form
        if form is None:
            raise ValueError(f"run {run.id} is {run.status.value}, not waiting for input")
        if not form.answerable():
            raise ValueError(f"the form {form.spec.node_id!r} of run {run.id} has expired")
        answer = prefilled(form.spec, form.resolved_defaults, inputs)
        check_answer(form.spec, action, answer)
        self._answer(run, form, action, answer)

    def _answer(self, run: Run, form: PendingForm, action: str, inputs: dict[str, Any]) -> None:
        values = {**inputs, "__action_id": action}
        rendered = render_answered(form.content, values)
        form.submitted, form.action, form.answered_content = True, action, rendered
        answer = {"action": action, "action_text": form.spec.action_title(action), "inputs": dict(inputs)}
        if self._stopped_on_resumption(run, form, action, answer):
            return
        self._going_on(run, form, action, answer)
        self.state._emit(run, payloads.human_input_form_filled(run, form, action, inputs, rendered))
        # The node's outputs as HumanInputNode._run gives them: the answer, the action, the content.
        self._finish(run, form, {**values, "__rendered_content": rendered})

    def expire(self, run: Run) -> None:
        """The pending form times out now (Dify's sweeper, on the test's cue): later submissions
        get 412 expired, and the run goes on along the timeout branch with no answer recorded."""
        form = run.pending_form
        if form is None:
            raise ValueError(f"run {run.id} is {run.status.value}, no form is waiting")
        form.expired = form.timed_out = True
        if self._stopped_on_resumption(run, form, TIMEOUT_BRANCH, None):
            return
        self._going_on(run, form, TIMEOUT_BRANCH, None)
        self.state._emit(run, payloads.human_input_form_timeout(run, form))
        self._finish(run, form, {"__action_id": ""})

    # -- a stop while paused ----------------------------------------------------------------------

    def defer_stop(self, run: Run, abort_reason: str | None) -> bool:
        """A stop of a paused run on 1.13.x (recordings hitl/B0, B1): it answers success but does
        nothing now, as no engine runs to hear it; the run stays paused and its form open. What
        was sent waits for the resumption: the stop API's flag (``abort_reason`` None) or the graph
        engine's stop command alone. True when deferred; from 1.14 a stop ends a paused run."""
        if run.status != WorkflowRunStatus.PAUSED or not self.state.config.pauses_as_113:
            return False
        if abort_reason is None:
            run.stop_requested = True
        elif run.abort_reason is None:
            run.abort_reason = abort_reason
        return True

    def _stopped_on_resumption(self, run: Run, form: PendingForm, branch: str, answer: dict[str, Any] | None) -> bool:
        """The form of a run stopped while paused is answered (or times out): the stop flag strands
        the resumed run ``running`` for good (hitl/B2-B4, :meth:`EmulatorState.strand`); the stop
        command alone aborts it as its engine starts (our reading of the source: the command waits
        in Redis for the next engine of the task). False when no stop waited."""
        if not run.stop_requested and run.abort_reason is None:
            return False
        if answer is not None:
            run.answers[form.node.node_id] = answer
        if run.stop_requested:
            self.state.strand(run)
        else:
            self._going_on(run, form, branch, None)
            self.state.abort(run, run.abort_reason or "")
        return True

    def _going_on(self, run: Run, form: PendingForm, branch: str, answer: dict[str, Any] | None) -> None:
        state = self.state
        with state.cond:
            run.status = WorkflowRunStatus.RUNNING
            run.branch = branch
            if answer is not None:
                run.answers[form.node.node_id] = answer
            state._notify()
        run.segment_start = len(run.events)
        state._emit(run, payloads.workflow_started(run, "resumption"))

    def _finish(self, run: Run, form: PendingForm, outputs: dict[str, Any]) -> None:
        form.node.status = "succeeded"
        form.node.outputs = outputs
        self.state._finish_node(run, form.node)
        run.resumed.set()
