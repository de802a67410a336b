"""The events stream of a run: ``GET /workflow/{workflow_run_id}/events`` (singular
``workflow``, as in Dify), a Dify 1.14 API (Flask's HTML 404 page before, see
:func:`~dify_provider.testing.routes._core.require_events_api`).

It gives a reader who was not there what the run sent from its current segment (the last start or
resumption) on, then its live events. With ``include_state_snapshot`` it starts instead with the
state Dify rebuilds from its database (:mod:`~dify_provider.testing.replay`: one
``workflow_started``, the node executions without details and, for a paused run, the current
``workflow_paused`` with the form's token; no ``human_input_required``), then goes on live. It
closes at a ``workflow_paused`` (the snapshot's or a live one) unless ``continue_on_pause``. A
finished run yields only its ``workflow_finished``. Unlike a run's own stream it pings after every
``ping_interval`` of silence and only events count towards its idle timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing import payloads, replay
from dify_provider.testing.errors import not_found
from dify_provider.testing.routes._core import Ctx, own_run, require_events_api, require_mode, route, stream_timing
from dify_provider.testing.runs import Run
from dify_provider.testing.sse import EventStream, encode_stored
from dify_provider.testing.state import EmulatorState
from dify_provider.testing.validation import required_user


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


async def workflow_events(ctx: Ctx) -> Response:
    require_events_api(ctx)
    state, request = ctx.state, ctx.request
    user = required_user(request.query_params.get("user"))
    require_mode(ctx.app, "workflow", "advanced-chat")
    run = own_run(ctx, request.path_params["workflow_run_id"])
    if run is None or run.user != user:
        raise not_found("Workflow run not found")
    headers = {"Cache-Control": "no-cache", "Connection": "keep-alive"}
    fault = state.faults.take(ctx.endpoint, ctx.app.name, "stream")
    if fault is not None:
        ctx.fired(fault)
    # Dify's events stream pings after every ping_interval of silence and counts only events
    # towards its idle timeout (workflow_event_snapshot_service.build_workflow_event_stream).
    timing = {**stream_timing(state, None), "pings_keep_alive": False}
    if run.terminal:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        queue.put_nowait(payloads.workflow_finished(run, task_id=run.id))
        return EventStream(queue, **timing, fault=fault, encoder=encode_stored, headers=headers)
    frames: list[dict[str, Any]] = []
    if _flag(request, "include_state_snapshot"):
        # workflow_event_snapshot_service: the rows are read as the request comes, then the stream
        # subscribes and learns the task id, then the snapshot goes out, then the live events.
        paused = run.status == WorkflowRunStatus.PAUSED
        frames = replay.snapshot_events(run)
        live = state.subscribe(run)
        try:
            task_id = await _task_id(state, run, paused)
        except BaseException:
            state.unsubscribe(run, live)  # the client left while we waited
            raise
        for frame in frames:
            frame["task_id"] = task_id
    else:
        live = state.subscribe(run, replay_from=run.segment_start)
    return EventStream(
        live,
        **timing,
        prelude=frames,
        close_on_pause=not _flag(request, "continue_on_pause"),
        fault=fault,
        headers=headers,
        on_close=lambda outcome: state.unsubscribe(run, live),
    )


async def _task_id(state: EmulatorState, run: Run, paused: bool) -> str:
    """``_resolve_task_id``: a paused run's is stored; a running one's is the first live event's,
    if one comes within :data:`~dify_provider.testing.replay.TASK_ID_WAIT`, else the run id."""
    first: dict[str, Any] | None = None
    if not paused:
        probe = state.subscribe(run)
        try:
            first = await asyncio.wait_for(probe.get(), replay.TASK_ID_WAIT)
        except TimeoutError:
            pass
        finally:
            state.unsubscribe(run, probe)
    return replay.task_id_of(run, paused, first)


def routes(state: EmulatorState) -> list[BaseRoute]:
    return [route(state, "GET", "/workflow/{workflow_run_id}/events", workflow_events)]
