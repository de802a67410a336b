"""The state snapshot the events endpoint replays with ``include_state_snapshot=true``: pure
functions of a :class:`~dify_provider.testing.runs.Run`, as Dify rebuilds it from what it stored.

Dify 1.13.2's ``services/workflow_event_snapshot_service.py`` (``_build_snapshot_events``; the web
and console events routes use it, and the 1.14 service route is taken to do the same) does not
replay what the run sent: it builds the frames from the database. So a snapshot is

- one ``workflow_started`` (reason ``initial``, whatever resumptions happened; the inputs are the
  run record's);
- for a chatflow, a ``message_replace`` with the answer its message row holds so far;
- per node execution row, in creation order, a ``node_started`` and, unless the node still runs, a
  ``node_finished``, both with their details stripped (``to_ignore_detail_dict``: no inputs,
  outputs, process data or error). The row's ``index`` counts from 1 in each engine run (the
  persistence layer's sequence restarts on resume), and a human-input node answered after a pause
  is the first node of the engine run that resumed (the same row, re-started then); the node the
  run waits in now has finished ``paused``;
- if the run is paused, its *current* ``workflow_paused`` only, from the stored pause: reasons
  rebuilt from the form rows (the content there is the node's template, the recipients' token),
  the record's totals and elapsed time.

No ``human_input_required``, ``human_input_form_filled`` or ``text_chunk`` is replayed. The frames
are model dumps (``event, task_id, workflow_run_id, data``; a chatflow's message ids appended at
the end). Their ``task_id`` is the paused run's task id (from its stored generate entity), else
that of the first live event within 0.2 s, else the run id (``_resolve_task_id``): the route
decides it, see :mod:`~dify_provider.testing.routes.events`.

Not reproduced: Dify picks the *backstage* recipient's token for a reason (``_select_recipient_token``
prefers it; every form has one, even an email-only one, and it works on the web route, recording
hitl/52). The emulator has no backstage recipient, so a reason carries the token the run announced
(None for an email-only form), as the live ``workflow_paused`` does.
"""

from __future__ import annotations

import json
from typing import Any

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing.chat_payloads import saved_answer
from dify_provider.testing.forms import actions_json, inputs_json
from dify_provider.testing.runs import Node, PendingForm, Run

#: How long Dify waits for a live event to learn a running run's task id (``_resolve_task_id``).
TASK_ID_WAIT = 0.2


def _frame(event: str, task_id: str, run: Run, data: dict[str, Any]) -> dict[str, Any]:
    return {"event": event, "task_id": task_id, "workflow_run_id": run.id, "data": data}


def _workflow_started(run: Run, task_id: str) -> dict[str, Any]:
    data = {"id": run.id, "workflow_id": run.workflow_id, "inputs": json.loads(run.inputs_json),
            "created_at": int(run.created_at), "reason": "initial"}
    return _frame("workflow_started", task_id, run, data)


def _node_rows(run: Run) -> list[tuple[Node, int, float, float | None, str]]:
    """(node, index, created at, finished at, status) per node execution row, in creation order."""
    waiting = run.pending_form.node if run.pending_form is not None else None
    resumed_in = {id(form.node) for form in run.forms if form.node is not waiting and form.node.finished_at}
    rows: list[tuple[Node, int, float, float | None, str]] = []
    index = 0
    for node in run.nodes:
        created = node.started_at
        if id(node) in resumed_in:
            # Re-started by the engine run that resumed: its first node, created as it resumed.
            index, created = 0, node.finished_at or created
        index += 1
        if node is waiting:
            assert run.form is not None
            rows.append((node, index, created, max(run.form.opened_at, created), "paused"))
        else:
            rows.append((node, index, created, node.finished_at, "running" if node.finished_at is None
                         else node.status))
    return rows


def _node_frames(run: Run, task_id: str) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    for node, index, created, finished, status in _node_rows(run):
        head = {"id": node.execution_id, "node_id": node.node_id, "node_type": node.node_type, "title": node.title,
                "index": index, "predecessor_node_id": None, "inputs": None}
        frames.append(_frame("node_started", task_id, run, {
            **head, "created_at": int(created), "extras": {}, "iteration_id": None, "loop_id": None}))
        if finished is None:
            continue
        frames.append(_frame("node_finished", task_id, run, {
            **head, "process_data": None, "outputs": None, "status": status, "error": None,
            "elapsed_time": round(max(finished - created, 0.0), 6), "execution_metadata": None,
            "created_at": int(created), "finished_at": int(finished), "files": [], "iteration_id": None,
            "loop_id": None}))  # fmt: skip
    return frames


def _stored_reason(form: PendingForm) -> dict[str, Any]:
    """``_build_human_input_required_reason``: the form row's definition (its ``form_content`` is
    the node's template, not the content rendered for the run)."""
    return {
        "TYPE": "human_input_required",
        "form_id": form.form_id,
        "form_content": form.spec.content,
        "inputs": inputs_json(form.spec),
        "actions": actions_json(form.spec),
        "display_in_ui": form.spec.delivery == "webapp",
        "node_id": form.node.node_id,
        "node_title": form.node.title,
        "resolved_default_values": dict(form.resolved_defaults),
        "form_token": form.token,
    }


def _workflow_paused(run: Run, form: PendingForm, task_id: str) -> dict[str, Any]:
    """``_build_pause_event``: the record's totals (its elapsed time is 0 while paused)."""
    data = {
        "workflow_run_id": run.id,
        "paused_nodes": [form.node.node_id],
        "outputs": {},
        "reasons": [_stored_reason(form)],
        "status": WorkflowRunStatus.PAUSED.value,
        "created_at": int(run.created_at),
        "elapsed_time": 0.0,
        "total_tokens": run.tokens,
        "total_steps": run.steps,
    }
    return _frame("workflow_paused", task_id, run, data)


def snapshot_events(run: Run, task_id: str = "") -> list[dict[str, Any]]:
    """The frames a replay starts with, for a run that has not finished (the route sets their
    ``task_id`` once it knows it: it reads the rows first, as Dify does)."""
    frames = [_workflow_started(run, task_id)]
    message = run.message
    if message is not None:
        frames.append({"event": "message_replace", "task_id": task_id, "answer": saved_answer(message), "reason": ""})
    frames += _node_frames(run, task_id)
    pending = run.pending_form
    if pending is not None:
        frames.append(_workflow_paused(run, pending, task_id))
    if message is None:
        return frames
    context = {"conversation_id": message.conversation.id, "message_id": message.id,
               "created_at": int(message.created_at)}
    return [{**frame, **context} for frame in frames]


def task_id_of(run: Run, paused: bool, first_live: dict[str, Any] | None) -> str:
    """``_resolve_task_id``: a paused run's stored task id, else the first live event's, else the run id."""
    if paused:
        return run.task_id
    if first_live is not None and first_live.get("task_id"):
        return str(first_live["task_id"])
    return run.id
