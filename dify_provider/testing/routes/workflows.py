"""Workflow runs: ``POST /workflows/run`` and ``POST /workflows/{workflow_id}/run`` (start a run,
blocking or streaming), ``GET /workflows/run/{workflow_run_id}`` (the run's record, the endpoint
pollers hit), ``POST /workflows/tasks/{task_id}/stop`` and ``GET /workflows/logs``.

Dify quirks reproduced here: on 1.13.2 a streaming start with invalid inputs answers 200, one ping,
then silence (the inputs are checked in the Celery worker; ``streaming_input_errors``); the
blocking answer alone names its charset; an unknown run id that is not a uuid is a 500 (Postgres
rejects the cast); stop checks neither user nor app and always says ``success`` (on 1.13.x it
leaves a paused run paused, recordings hitl/B0-B4); a paused blocking run names no form on 1.13.x
(hitl/20); a chatflow app's log list is empty. The detail handler is the hot path: keep it to a
dict lookup and one payload.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from dify_provider.client.status import LOG_FILTER_STATUSES
from dify_provider.testing import payloads
from dify_provider.testing.errors import DifyError, invalid_param, not_found
from dify_provider.testing.models import EmulatedApp, Fault
from dify_provider.testing.routes._core import Ctx, faults_after_start, own_run, require_mode, route, stream_timing
from dify_provider.testing.runs import Run
from dify_provider.testing.sse import EventStream, Outcome, error_event, in_stream_error
from dify_provider.testing.state import EmulatorState
from dify_provider.testing.validation import (
    WorkflowLogQuery,
    WorkflowRunPayload,
    json_body,
    parse,
    required_user,
    validate_inputs,
)

#: Flask's blocking run answer (``compact_generate_response``) names its charset; other JSON does not.
RUN_JSON = "application/json; charset=utf-8"


async def run_workflow(ctx: Ctx) -> Response:
    return await _start_run(ctx, None)


async def run_workflow_by_id(ctx: Ctx) -> Response:
    return await _start_run(ctx, ctx.request.path_params["workflow_id"])


async def _start_run(ctx: Ctx, workflow_id: str | None) -> Response:
    state, app = ctx.state, ctx.app
    body = await json_body(ctx.request)
    user = required_user(body.get("user"))
    require_mode(app, "workflow")
    payload = parse(WorkflowRunPayload, body)
    if workflow_id is not None:
        check_workflow_id(app, workflow_id)
    streaming = payload.response_mode == "streaming"
    try:
        inputs = validate_inputs(app, payload.inputs)
    except DifyError as exc:
        # 1.13.2 validates inputs in the Celery worker of a streaming run: nothing comes back.
        mode = state.config.streaming_input_errors
        if not streaming or mode == "http":
            raise
        return input_error_stream(state, exc, mode == "event")
    run = state.create_run(app, user, inputs, payload.files or [])
    queue = state.subscribe(run)
    state.launch(run)

    def closed(outcome: Outcome) -> None:
        state.unsubscribe(run, queue)
        if streaming and outcome != "complete":
            state.client_gone(run)

    early = await faults_after_start(ctx, streaming, closed)
    if isinstance(early, Response):
        return early
    if streaming:

        def failed_in_stream(fault: Fault) -> dict[str, Any]:
            state.fail(run, fault.message or "Internal Server Error")
            return error_event(fault, run.id if fault.after_events else None)

        return EventStream(queue, **stream_timing(state, lambda: run.executing), fault=early,
                           on_close=closed, on_error=failed_in_stream)
    try:
        while True:
            item = await queue.get()
            if item is None or item["event"] in ("workflow_finished", "workflow_paused"):
                break
    finally:
        state.unsubscribe(run, queue)
    # 1.13.x names no form in a paused blocking answer; from 1.14 its reasons carry the token.
    return JSONResponse(payloads.blocking_body(run, reasons=state.config.has_events_api), media_type=RUN_JSON)


def check_workflow_id(app: EmulatedApp, workflow_id: str) -> None:
    """A pinned workflow version (``AppGenerateService._get_workflow``): the app's published one only."""
    try:
        uuid.UUID(workflow_id)
    except ValueError:
        raise DifyError.http(400, f"Invalid workflow_id format: '{workflow_id}'. ") from None
    if workflow_id != app.workflow_id:
        raise not_found(f"Workflow not found with id: {workflow_id}")


def input_error_stream(state: EmulatorState, error: DifyError, as_event: bool) -> Response:
    """A streaming start whose inputs are invalid: no run. 1.13.2: the opening ping, then silence
    until the idle timeout; later Dify: an ``error`` event before ``workflow_started``."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    if as_event:
        queue.put_nowait(in_stream_error(error.status, error.code, error.message))
    return EventStream(queue, **stream_timing(state, lambda: False))


async def run_detail(ctx: Ctx) -> Response:
    require_mode(ctx.app, "workflow", "advanced-chat")
    run_id = ctx.request.path_params["workflow_run_id"]
    run = own_run(ctx, run_id)
    if run is None:
        if not _is_uuid(run_id):  # checked only here, off the polled path
            raise DifyError(500, "unknown", "Internal Server Error")  # Postgres rejects the uuid cast
        raise not_found("Workflow run not found.")
    return JSONResponse(payloads.run_detail(run, live_totals=ctx.state.config.live_run_totals))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def stop_task(ctx: Ctx) -> Response:
    body = await json_body(ctx.request)
    required_user(body.get("user"))
    require_mode(ctx.app, "workflow")
    run = ctx.state.run_by_task(ctx.request.path_params["task_id"])
    if run is not None:
        # No user check, no app check (the stop flag is keyed by task id alone: recordings 99, 99d),
        # and "success" whatever happened (section 3.4).
        ctx.state.stop(run)
    return JSONResponse({"result": "success"})


def _parse_iso(value: str, name: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid_param(f"Invalid isoformat string: {value!r}", params=name) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _matches(run: Run, query: WorkflowLogQuery, before: float | None, after: float | None) -> bool:
    if query.status is not None and run.api_status.value != query.status:
        return False
    if query.created_by_end_user_session_id is not None and run.user != query.created_by_end_user_session_id:
        return False
    if before is not None and not run.created_at < before:
        return False
    if after is not None and not run.created_at > after:
        return False
    if query.keyword:
        needle = query.keyword[:30].lower()
        haystack = f"{run.inputs_json}\n{run.outputs}\n{run.user}".lower()
        if needle not in haystack and query.keyword != run.id:
            return False
    return True


async def workflow_logs(ctx: Ctx) -> Response:
    require_mode(ctx.app, "workflow", "advanced-chat")
    query = parse(WorkflowLogQuery, dict(ctx.request.query_params))
    assert query.status is None or query.status in LOG_FILTER_STATUSES
    if query.created_by_account is not None:
        raise invalid_param(f"Account not found: {query.created_by_account}")
    before = _parse_iso(query.created_at__before, "created_at__before") if query.created_at__before else None
    after = _parse_iso(query.created_at__after, "created_at__after") if query.created_at__after else None
    running_runs = ctx.state.config.logs_running_runs
    # Log rows come from the workflow-app pipeline only: a chatflow app's list is empty (recording 73).
    runs = [] if ctx.app.mode == "advanced-chat" else reversed(ctx.state.runs_of(ctx.app))
    matching = [
        run for run in runs if payloads.listed_in_logs(run, running_runs) and _matches(run, query, before, after)
    ]
    start = (query.page - 1) * query.limit
    return JSONResponse(
        {
            "page": query.page,
            "limit": query.limit,
            "total": len(matching),
            "has_more": len(matching) > query.page * query.limit,
            "data": [payloads.log_item(run) for run in matching[start : start + query.limit]],
        }
    )


def routes(state: EmulatorState) -> list[BaseRoute]:
    return [
        route(state, "POST", "/workflows/run", run_workflow),
        route(state, "GET", "/workflows/run/{workflow_run_id}", run_detail),
        route(state, "POST", "/workflows/tasks/{task_id}/stop", stop_task),
        route(state, "GET", "/workflows/logs", workflow_logs),
        route(state, "POST", "/workflows/{workflow_id}/run", run_workflow_by_id),
    ]
