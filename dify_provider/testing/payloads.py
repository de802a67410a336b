"""The JSON bodies and SSE payloads, shaped as dify-api.md sections 3 and 4 give them.

Pure functions of a :class:`Run`, so every place that shows a run (blocking body, stream, detail,
logs, events endpoint) shows the same facts, with Dify's per-endpoint quirks applied here only:
the detail endpoint's ``inputs`` is a JSON *string*, its ``outputs`` is ``{}`` until the run has
them (and while paused), totals stay 0 with ``finished_at`` null while it runs (a paused run shows
its totals so far), and a run 1.13.2 stopped shows as still running (:attr:`Run.api_status`).
Shapes follow recordings of a real Dify 1.13.2 (``tests/contract/recordings``).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing.chat_payloads import ids
from dify_provider.testing.forms import actions_json, inputs_json
from dify_provider.testing.models import EMULATOR_NAMESPACE, EmulatedApp, InputField
from dify_provider.testing.runs import Node, PendingForm, Run

#: ``Workflow.version`` of a published workflow is its publication timestamp.
WORKFLOW_VERSION = "2026-03-02 09:30:00.000000"


def _envelope(run: Run, event: str, data: dict[str, Any]) -> dict[str, Any]:
    if run.message is not None:
        # A chatflow's frames: the chat converter's ids first, then the entity's own fields.
        return {"event": event, **ids(run.message), "task_id": run.task_id, "workflow_run_id": run.id, "data": data}
    return {"event": event, "workflow_run_id": run.id, "task_id": run.task_id, "data": data}


def workflow_started(run: Run, reason: str) -> dict[str, Any]:
    return _envelope(
        run,
        "workflow_started",
        {
            "id": run.id,
            "workflow_id": run.workflow_id,
            "inputs": run.sys_inputs,
            "created_at": int(run.created_at),
            "reason": reason,
        },
    )


def _node_ids(node: Node) -> dict[str, Any]:
    # Dify 1.13.2's graph engine reports index 1 and no predecessor for every node.
    return {
        "id": node.execution_id,
        "node_id": node.node_id,
        "node_type": node.node_type,
        "title": node.title,
        "index": 1,
        "predecessor_node_id": None,
    }


def node_started(run: Run, node: Node) -> dict[str, Any]:
    data = {
        **_node_ids(node),
        "inputs": None,
        "inputs_truncated": False,
        "created_at": int(node.started_at),
        "extras": {},
        "iteration_id": None,
        "loop_id": None,
        "agent_strategy": None,
    }
    return _envelope(run, "node_started", data)


def text_chunk(run: Run, text: str, selector: list[str]) -> dict[str, Any]:
    return _envelope(run, "text_chunk", {"text": text, "from_variable_selector": selector})


def node_finished(run: Run, node: Node) -> dict[str, Any]:
    finished = node.finished_at if node.finished_at is not None else time.time()
    price = node.price if node.price is not None else f"{node.tokens * 0.000002:.7f}"
    metadata = {"total_tokens": node.tokens, "total_price": price, "currency": "USD"} if node.tokens else None
    process_data: dict[str, Any] = {}
    outputs = node.outputs
    if node.node_type == "llm" and node.tokens and node.status == "succeeded":
        # An LLM node's outputs and process_data carry its usage, split (``jsonable_encoder``ed:
        # prices as floats there); the split is three quarters prompt unless the node says.
        prompt = node.prompt_tokens if node.prompt_tokens is not None else node.tokens - node.tokens // 4
        usage = {"prompt_tokens": prompt, "completion_tokens": node.tokens - prompt, "total_tokens": node.tokens,
                 "total_price": float(price), "currency": "USD", "latency": round(finished - node.started_at, 3)}
        process_data, outputs = {"usage": usage}, {**node.outputs, "usage": usage}
    data = {
        **_node_ids(node),
        "inputs": node.inputs,
        "inputs_truncated": False,
        "process_data": process_data,
        "process_data_truncated": False,
        "outputs": outputs,
        "outputs_truncated": False,
        "status": node.status,
        "error": node.error,
        "elapsed_time": round(finished - node.started_at, 6),
        "execution_metadata": metadata,
        "created_at": int(node.started_at),
        "finished_at": int(finished),
        "files": [],
        "iteration_id": None,
        "loop_id": None,
    }
    return _envelope(run, "node_finished", data)


def finished_data(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow_id": run.workflow_id,
        "status": (run.stream_status or run.status).value,
        "outputs": run.outputs if run.outputs is not None else {},  # 1.13.2: {} when failed or stopped
        "error": run.error,
        "elapsed_time": run.elapsed(),
        "total_tokens": run.tokens,
        "total_steps": run.steps,
        "created_at": int(run.created_at),
        "finished_at": None if run.finished_at is None else int(run.finished_at),
        "created_by": {"id": run.end_user_id, "user": run.user},
        "exceptions_count": run.exceptions,
        "files": [],
    }


def workflow_finished(run: Run, *, task_id: str | None = None) -> dict[str, Any]:
    """``task_id`` defaults to the run's; the events endpoint rebuilds this frame from the stored
    run and (like Dify) puts the *run id* there."""
    event = _envelope(run, "workflow_finished", finished_data(run))
    if task_id is not None:
        event["task_id"] = task_id
    return event


def _reason(form: PendingForm) -> dict[str, Any]:
    """``HumanInputRequired.model_dump(mode="json")``, which ``workflow_paused`` and a paused
    blocking answer list as ``reasons`` (no expiration time there)."""
    return {
        "TYPE": "human_input_required",
        "form_id": form.form_id,
        "form_content": form.content,
        "inputs": inputs_json(form.spec),
        "actions": actions_json(form.spec),
        "display_in_ui": form.spec.delivery == "webapp",  # ``is_webapp_enabled``
        "node_id": form.node.node_id,
        "node_title": form.node.title,
        "resolved_default_values": dict(form.resolved_defaults),
        "form_token": form.token,
    }


def human_input_required(run: Run, form: PendingForm) -> dict[str, Any]:
    reason = _reason(form)  # the same facts, in HumanInputRequiredResponse's order (recording hitl/10)
    data = {
        "form_id": form.form_id,
        "node_id": form.node.node_id,
        "node_title": form.node.title,
        "form_content": form.content,
        "inputs": reason["inputs"],
        "actions": reason["actions"],
        "display_in_ui": reason["display_in_ui"],
        "form_token": form.token,
        "resolved_default_values": reason["resolved_default_values"],
        "expiration_time": form.expiration_time,
    }
    return _envelope(run, "human_input_required", data)


def workflow_paused(run: Run, form: PendingForm) -> dict[str, Any]:
    data = {
        "workflow_run_id": run.id,
        "paused_nodes": [form.node.node_id],
        "outputs": {},
        "reasons": [_reason(form)],
        "status": WorkflowRunStatus.PAUSED.value,
        "created_at": int(run.created_at),
        "elapsed_time": run.elapsed(),
        "total_tokens": run.tokens,
        "total_steps": run.steps,
    }
    return _envelope(run, "workflow_paused", data)


def human_input_form_filled(
    run: Run, form: PendingForm, action: str, inputs: dict[str, Any], rendered: str
) -> dict[str, Any]:
    data = {
        "node_id": form.node.node_id,
        "node_title": form.node.title,
        "rendered_content": rendered,
        "action_id": action,
        "action_text": form.spec.action_title(action),
        "submitted_data": inputs,  # not in 1.13.2's entity; dify-api.md 4.2 lists it
    }
    return _envelope(run, "human_input_form_filled", data)


def human_input_form_timeout(run: Run, form: PendingForm) -> dict[str, Any]:
    data = {"node_id": form.node.node_id, "node_title": form.node.title, "expiration_time": form.expiration_time}
    return _envelope(run, "human_input_form_timeout", data)


def _as_text(value: Any) -> str:
    """``_stringify_default_values``: what the form page prefills is text."""
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


def form_definition(form: PendingForm) -> dict[str, Any]:
    """The form by token, as 1.13.2's ``_jsonify_form_definition`` builds it (the web API adds
    ``site``)."""
    return {
        "form_content": form.content,
        "inputs": inputs_json(form.spec),
        "resolved_default_values": {name: _as_text(value) for name, value in form.resolved_defaults.items()},
        "user_actions": actions_json(form.spec),
        "expiration_time": form.expiration_time,
    }


def blocking_body(run: Run, *, reasons: bool = False) -> dict[str, Any]:
    """The blocking answer, at the end or at a pause. A paused one on 1.13.2 (recording hitl/20,
    ``_to_blocking_response``) is the pause's totals with ``outputs`` {}, ``finished_at`` null and
    no form: ``reasons`` (with the form token) only when asked, which the routes do from 1.14 on
    (``has_events_api``: observed by the new SDK against a newer Dify, not in the docs)."""
    data = finished_data(run)
    del data["created_by"], data["exceptions_count"], data["files"]
    if run.status == WorkflowRunStatus.PAUSED and run.form is not None:
        data["outputs"] = {}
        if reasons:
            data["reasons"] = [_reason(run.form)]
    return {"task_id": run.task_id, "workflow_run_id": run.id, "data": data}


def _shown_totals(run: Run) -> tuple[int, int, float, int | None]:
    """Detail and logs show totals, elapsed time and finish only once the run has ended (#19548);
    a paused run's record has the totals so far (1.13 persistence layer, ``_handle_graph_run_paused``)."""
    if run.shows_running or not run.terminal:
        if run.status == WorkflowRunStatus.PAUSED and not run.shows_running:
            return run.steps, run.tokens, 0.0, None
        return 0, 0, 0.0, None
    assert run.finished_at is not None
    return run.steps, run.tokens, run.elapsed(), int(run.finished_at)


def listed_in_logs(run: Run, running_runs: bool) -> bool:
    """1.13.2 writes a run's log row as it starts (``_handle_workflow_started_event``); older
    pipelines when it finished (``running_runs=False``)."""
    return running_runs or (run.terminal and not run.shows_running)


def run_detail(run: Run, *, live_totals: bool = False) -> dict[str, Any]:
    steps, tokens, elapsed, finished = _shown_totals(run)
    if live_totals and not finished:
        steps, tokens = run.steps, run.tokens
    shown = run.api_status
    outputs = run.outputs if run.terminal and not run.shows_running and run.outputs is not None else {}
    return {
        "id": run.id,
        "workflow_id": run.workflow_id,
        "status": shown.value,
        "inputs": run.inputs_json,
        "outputs": outputs,
        "error": None if run.shows_running else run.error,
        "total_steps": steps,
        "total_tokens": tokens,
        "created_at": int(run.created_at),
        "finished_at": finished,
        "elapsed_time": elapsed,
    }


def log_item(run: Run) -> dict[str, Any]:
    steps, tokens, elapsed, finished = _shown_totals(run)
    return {
        "id": str(uuid.uuid5(EMULATOR_NAMESPACE, f"log:{run.id}")),
        "workflow_run": {
            "id": run.id,
            "version": WORKFLOW_VERSION,
            "status": run.api_status.value,
            "error": None if run.shows_running else run.error,
            "elapsed_time": elapsed,
            "total_tokens": tokens,
            "total_steps": steps,
            "created_at": int(run.created_at),
            "finished_at": finished,
            "exceptions_count": run.exceptions,
            "triggered_from": "app-run",
        },
        "created_from": "service-api",
        "created_by_role": "end_user",
        "created_by_account": None,
        "created_by_end_user": {
            "id": run.end_user_id,
            "type": "service-api",
            "is_anonymous": False,
            "session_id": run.user,
        },
        "details": None,
        "created_at": int(run.created_at),
    }


def app_info(app: EmulatedApp) -> dict[str, Any]:
    return {
        "name": app.name,
        "description": app.description,
        "tags": list(app.tags),
        "mode": app.mode,
        "author_name": app.author_name,
    }


def _form_entry(field: InputField) -> dict[str, Any]:
    """The start node's variable as the app's DSL holds it (1.13.2 passes it through): no
    ``default`` unless one is set, ``max_length`` for text, ``options`` always."""
    entry: dict[str, Any] = {
        "variable": field.variable,
        "label": field.label or field.variable,
        "type": field.type,
        "required": field.required,
    }
    if field.max_length is not None:
        entry["max_length"] = field.max_length
    entry["options"] = list(field.options)
    if field.default is not None:
        entry["default"] = field.default
    return {field.type: entry}


def app_parameters(app: EmulatedApp) -> dict[str, Any]:
    """1.13.2's answer for an app with its features off (file upload included), but for the
    citations an app with ``retriever_resource`` shows."""
    return {
        "opening_statement": "",
        "suggested_questions": [],
        "suggested_questions_after_answer": {"enabled": False},
        "speech_to_text": {"enabled": False},
        "text_to_speech": {"enabled": False, "language": "", "voice": ""},
        "retriever_resource": {"enabled": app.retriever_resource},
        "annotation_reply": {"enabled": False},
        "more_like_this": {"enabled": False},
        "user_input_form": [_form_entry(f) for f in app.inputs],
        "sensitive_word_avoidance": {"enabled": False},
        "file_upload": {"enabled": False},
        "system_parameters": {
            "image_file_size_limit": 10,
            "video_file_size_limit": 100,
            "audio_file_size_limit": 50,
            "file_size_limit": 15,
            "workflow_file_upload_limit": 10,
        },
    }


def app_site(app: EmulatedApp) -> dict[str, Any]:
    """``GET /site``: the WebApp settings of a new app (1.13.2)."""
    return {
        "title": app.name,
        "chat_color_theme": None,
        "chat_color_theme_inverted": False,
        "icon_type": "emoji",
        "icon": "\N{ROBOT FACE}",
        "icon_background": "#FFEAD5",
        "description": None,
        "copyright": None,
        "privacy_policy": None,
        "custom_disclaimer": "",
        "default_language": "en-US",
        "show_workflow_steps": True,
        "use_icon_as_answer_icon": False,
        "icon_url": None,
    }


def app_meta(app: EmulatedApp) -> dict[str, Any]:
    """``GET /meta``: tool icons of the app's tool nodes (emulated apps have none)."""
    return {"tool_icons": {}}
