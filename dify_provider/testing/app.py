"""The ``/v1`` service API routes (dify-api.md section 1) on Starlette.

Every route goes through :func:`_route`, which applies, in Dify's order: scripted faults that
fire before the endpoint (so a rejected ``POST /workflows/run`` creates no run), bearer auth, the
handler, then any fault that mangles the handler's response. Handlers return plain
``JSONResponse``s: the detail endpoint is polled by a thousand waiters at once and must stay cheap
(the only per-request extra is the ``X-Version`` header, added by :class:`VersionHeader`).

Paths the server does not have answer Werkzeug's HTML 404 page, as Flask does outside its API
error handler (``GET /v1/`` on 1.13.2, the 1.14 events/form API on older versions); a known path
with the wrong method answers the JSON 405 envelope.
"""

from __future__ import annotations

import asyncio
import mimetypes
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dify_provider.client.status import LOG_FILTER_STATUSES
from dify_provider.testing import payloads
from dify_provider.testing.admin import admin_routes
from dify_provider.testing.errors import DifyError, invalid_param, not_found, not_workflow_app
from dify_provider.testing.faults import (
    RUN_ENDPOINTS,
    ResetResponse,
    error_response,
    mangle,
    normalize_endpoint,
)
from dify_provider.testing.models import EmulatedApp, Fault
from dify_provider.testing.recording import RECORD_KEY, RecordingMiddleware
from dify_provider.testing.runs import FORM_ACTIONS, Run, end_user_id
from dify_provider.testing.sse import EventStream, Outcome, encode_stored, error_event, in_stream_error
from dify_provider.testing.state import SERVICE_ENDPOINTS, EmulatorState
from dify_provider.testing.validation import (
    FormSubmitPayload,
    WorkflowLogQuery,
    WorkflowRunPayload,
    json_body,
    parse,
    required_user,
    validate_inputs,
)

#: Werkzeug's NotFound page, byte for byte (what Flask sends for a path no route knows).
NOT_FOUND_HTML = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please check "
    "your spelling and try again.</p>\n"
)
#: Flask's blocking run answer (``compact_generate_response``) names its charset; other JSON does not.
RUN_JSON = "application/json; charset=utf-8"


class NoSuchRoute(Exception):
    """Raised by a handler whose route this server version does not have: Werkzeug's HTML 404."""


def not_found_page() -> Response:
    return HTMLResponse(NOT_FOUND_HTML, status_code=404)


@dataclass(eq=False)
class Ctx:
    """What a handler needs about the request it serves."""

    request: Request
    state: EmulatorState
    endpoint: str
    key_app: EmulatedApp | None
    response_fault: Fault | None = None

    @property
    def app(self) -> EmulatedApp:
        assert self.key_app is not None, "route declared without auth"
        return self.key_app

    def fired(self, fault: Fault) -> None:
        seq = self.request.scope.get(RECORD_KEY)
        if seq is not None:
            self.state.requests.update(seq, fault=fault.kind)


Handler = Callable[[Ctx], Awaitable[Response]]


def authenticate(header: str | None, state: EmulatorState) -> EmulatedApp:
    """``validate_and_get_api_token``: three distinct 401 messages (dify-api.md section 2)."""
    if header is None or " " not in header:
        raise DifyError(401, "unauthorized", "Authorization header must be provided and start with 'Bearer'")
    parts = header.split(None, 1)
    if len(parts) < 2:  # "Bearer " passes the space check, then fails to unpack: Dify's 400.
        raise invalid_param("not enough values to unpack (expected 2, got 1)")
    if parts[0].lower() != "bearer":
        raise DifyError(401, "unauthorized", "Authorization scheme must be 'Bearer'")
    app = state.app_for_header(header)
    if app is None:
        raise DifyError(401, "unauthorized", "Access token is invalid")
    return app


async def _before_faults(ctx: Ctx) -> Response | None:
    app_name = ctx.key_app.name if ctx.key_app else None
    fault = ctx.state.faults.take(ctx.endpoint, app_name, "before")
    if fault is None:
        return None
    ctx.fired(fault)
    if fault.kind == "http_error":
        return error_response(fault)
    if fault.kind == "reset":
        return ResetResponse()
    if fault.kind == "delay":
        await ctx.request.body()  # read it now: a disconnect check must not swallow it
        if not await ctx.state.sleep(fault.seconds or 0) or await ctx.request.is_disconnected():
            return Response(status_code=204)  # nobody is listening; nothing was processed
        return None
    if ctx.endpoint in RUN_ENDPOINTS:
        # Rejected before any run exists, so the body is invented.
        invented = {"task_id": str(uuid.uuid4()), "workflow_run_id": str(uuid.uuid4()), "data": {}}
        return mangle(fault, JSONResponse(invented))
    ctx.response_fault = fault
    return None


def _route(state: EmulatorState, method: str, path: str, handler: Handler, *, auth: bool = True) -> Route:
    key = normalize_endpoint(f"{method} {path}")
    assert key in SERVICE_ENDPOINTS, key

    async def endpoint(request: Request) -> Response:
        ctx = Ctx(request, state, key, state.app_for_header(request.headers.get("authorization")))
        try:
            early = await _before_faults(ctx)
            if early is not None:
                return early
            if auth:
                ctx.key_app = authenticate(request.headers.get("authorization"), state)
            response = await handler(ctx)
        except DifyError as exc:
            response = exc.response()
        except NoSuchRoute:
            response = not_found_page()
        if ctx.response_fault is not None and not isinstance(response, EventStream):
            response = mangle(ctx.response_fault, response)
        return response

    return Route(path, endpoint, methods=[method], name=key)


def _require_mode(app: EmulatedApp, *modes: str) -> None:
    if app.mode not in modes:
        raise not_workflow_app()


# -- handlers ---------------------------------------------------------------------------------


async def index(ctx: Ctx) -> Response:
    config = ctx.state.config
    if not config.index_route:
        raise NoSuchRoute  # 1.13.2 has no index resource: GET /v1/ is Flask's 404 page
    return JSONResponse({"welcome": "Dify OpenAPI", "api_version": "v1", "server_version": config.server_version})


async def info(ctx: Ctx) -> Response:
    return JSONResponse(payloads.app_info(ctx.app))


async def parameters(ctx: Ctx) -> Response:
    return JSONResponse(payloads.app_parameters(ctx.app))


async def site(ctx: Ctx) -> Response:
    return JSONResponse(payloads.app_site(ctx.app))


async def meta(ctx: Ctx) -> Response:
    return JSONResponse(payloads.app_meta(ctx.app))


async def run_workflow(ctx: Ctx) -> Response:
    return await _start_run(ctx, None)


async def run_workflow_by_id(ctx: Ctx) -> Response:
    return await _start_run(ctx, ctx.request.path_params["workflow_id"])


async def _start_run(ctx: Ctx, workflow_id: str | None) -> Response:
    state, app = ctx.state, ctx.app
    body = await json_body(ctx.request)
    user = required_user(body.get("user"))
    _require_mode(app, "workflow")
    payload = parse(WorkflowRunPayload, body)
    if workflow_id is not None:
        try:
            uuid.UUID(workflow_id)
        except ValueError:
            raise DifyError.http(400, f"Invalid workflow_id format: '{workflow_id}'. ") from None
        if workflow_id != app.workflow_id:
            raise not_found(f"Workflow not found with id: {workflow_id}")
    streaming = payload.response_mode == "streaming"
    try:
        inputs = validate_inputs(app, payload.inputs)
    except DifyError as exc:
        # 1.13.2 validates inputs in the Celery worker of a streaming run: nothing comes back.
        mode = state.config.streaming_input_errors
        if not streaming or mode == "http":
            raise
        return _input_error_stream(state, exc, mode == "event")
    run = state.create_run(app, user, inputs, payload.files or [])
    queue = state.subscribe(run)
    state.launch(run)

    def closed(outcome: Outcome) -> None:
        state.unsubscribe(run, queue)
        if streaming and outcome != "complete":
            state.client_gone(run)

    stream_fault: Fault | None = None
    late = state.faults.take(ctx.endpoint, app.name, "after")
    if late is not None:
        ctx.fired(late)
        if late.kind in ("http_error", "reset"):
            closed("disconnected")
            return error_response(late) if late.kind == "http_error" else ResetResponse()
        if late.kind == "delay":
            if not await state.sleep(late.seconds or 0):
                closed("disconnected")
                return Response(status_code=204)
        elif streaming:  # drop / malformed: the client gets half the first frame
            stream_fault = Fault.cut_stream(0)
        else:
            ctx.response_fault = late
    if streaming:
        stream_fault = stream_fault or state.faults.take(ctx.endpoint, app.name, "stream")
        if stream_fault is not None:
            ctx.fired(stream_fault)

        def failed_in_stream(fault: Fault) -> dict[str, Any]:
            state.fail(run, fault.message or "Internal Server Error")
            return error_event(fault, run.id if fault.after_events else None)

        return EventStream(queue, **_stream_timing(state, lambda: run.executing), fault=stream_fault,
                           on_close=closed, on_error=failed_in_stream)
    try:
        while True:
            item = await queue.get()
            if item is None or item["event"] in ("workflow_finished", "workflow_paused"):
                break
    finally:
        state.unsubscribe(run, queue)
    return JSONResponse(payloads.blocking_body(run), media_type=RUN_JSON)


def _stream_timing(state: EmulatorState, executing: Callable[[], bool] | None) -> dict[str, Any]:
    """Ping and idle-timeout settings of a stream, from the config. ``executing`` says whether
    the run still executes (1.13.2 pings only then)."""
    config = state.config
    fixed = config.stream_pings == "fixed"
    return {
        "ping_interval": config.ping_interval,
        "ping_at_open": not fixed,
        "executing": None if fixed else executing,
        "idle_timeout": config.stream_idle_timeout,
    }


def _input_error_stream(state: EmulatorState, error: DifyError, as_event: bool) -> Response:
    """A streaming start whose inputs are invalid: no run. 1.13.2: the opening ping, then silence
    until the idle timeout; later Dify: an ``error`` event before ``workflow_started``."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    if as_event:
        queue.put_nowait(in_stream_error(error.status, error.code, error.message))
    return EventStream(queue, **_stream_timing(state, lambda: False))


def _own_run(ctx: Ctx, run_id: str) -> Run | None:
    run = ctx.state.runs.get(run_id)
    return run if run is not None and run.app.name == ctx.app.name else None


async def run_detail(ctx: Ctx) -> Response:
    _require_mode(ctx.app, "workflow", "advanced-chat")
    run_id = ctx.request.path_params["workflow_run_id"]
    run = _own_run(ctx, run_id)
    if run is None:
        if not _is_uuid(run_id):  # checked only here, off the polled path
            raise DifyError(500, "unknown", "Internal Server Error")  # Postgres rejects the uuid cast
        raise not_found("Workflow run not found.")
    return JSONResponse(payloads.run_detail(run))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def stop_task(ctx: Ctx) -> Response:
    body = await json_body(ctx.request)
    required_user(body.get("user"))
    _require_mode(ctx.app, "workflow")
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
    _require_mode(ctx.app, "workflow", "advanced-chat")
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


def _require_events_api(ctx: Ctx) -> None:
    if not ctx.state.config.has_events_api:
        raise NoSuchRoute  # the routes arrive with Dify 1.14


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


async def workflow_events(ctx: Ctx) -> Response:
    _require_events_api(ctx)
    state, request = ctx.state, ctx.request
    user = required_user(request.query_params.get("user"))
    _require_mode(ctx.app, "workflow", "advanced-chat")
    run = _own_run(ctx, request.path_params["workflow_run_id"])
    if run is None or run.user != user:
        raise not_found("Workflow run not found")
    headers = {"Cache-Control": "no-cache", "Connection": "keep-alive"}
    fault = state.faults.take(ctx.endpoint, ctx.app.name, "stream")
    if fault is not None:
        ctx.fired(fault)
    # Dify's events stream pings after every ping_interval of silence and counts only events
    # towards its idle timeout (workflow_event_snapshot_service.build_workflow_event_stream).
    timing = {**_stream_timing(state, None), "pings_keep_alive": False}
    if run.terminal:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        queue.put_nowait(payloads.workflow_finished(run, task_id=run.id))
        return EventStream(queue, **timing, fault=fault, encoder=encode_stored, headers=headers)
    replay_from = 0 if _flag(request, "include_state_snapshot") else run.segment_start
    live = state.subscribe(run, replay_from=replay_from)
    return EventStream(
        live,
        **timing,
        close_on_pause=not _flag(request, "continue_on_pause"),
        fault=fault,
        headers=headers,
        on_close=lambda outcome: state.unsubscribe(run, live),
    )


async def upload_file(ctx: Ctx) -> Response:
    async with ctx.request.form() as form:
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise DifyError(400, "no_file_uploaded", "Please upload your file.")
        if len(uploads) > 1:
            raise DifyError(400, "too_many_files", "Only one file is allowed.")
        if not upload.filename:
            raise DifyError(400, "filename_not_exists_error", "The specified filename does not exist.")
        user = str(form.get("user") or "DEFAULT-USER")
        content = await upload.read()
    name = upload.filename
    file_id = str(uuid.uuid4())
    meta = {  # no "reference" key on 1.13.2 (checked against the real server)
        "id": file_id,
        "name": name,
        "size": len(content),
        "extension": name.rsplit(".", 1)[-1].lower() if "." in name else "",
        "mime_type": upload.content_type or mimetypes.guess_type(name)[0] or "application/octet-stream",
        "created_by": end_user_id(ctx.app, user),
        "created_at": int(time.time()),
        "preview_url": None,
        "source_url": f"{ctx.request.base_url}files/{file_id}/file-preview?sign=emulator",
        "original_url": None,
        "user_id": None,
        "tenant_id": ctx.app.app_id,
        "conversation_id": None,
        "file_key": None,
    }
    ctx.state.files[file_id] = meta
    return JSONResponse(meta, status_code=201)


def _pending_form(ctx: Ctx) -> Run:
    _require_events_api(ctx)
    run = ctx.state.run_by_form(ctx.request.path_params["form_token"])
    if run is None or run.app.name != ctx.app.name or run.form is None:
        raise not_found("Form not found")
    form = run.form
    if form.submitted:
        raise DifyError(
            412,
            "human_input_form_submitted",
            f"This form has already been submitted by another user, form_id={form.form_id}",
        )
    if form.expired:
        raise DifyError(412, "human_input_form_expired", f"This form has expired, form_id={form.form_id}")
    return run


async def get_form(ctx: Ctx) -> Response:
    run = _pending_form(ctx)
    assert run.form is not None
    return JSONResponse(payloads.form_definition(run.form))


async def submit_form(ctx: Ctx) -> Response:
    _require_events_api(ctx)
    body = await json_body(ctx.request)
    required_user(body.get("user"))
    payload = parse(FormSubmitPayload, body)
    run = _pending_form(ctx)
    actions = {action["id"] for action in FORM_ACTIONS}
    if payload.action not in actions:
        raise DifyError(400, "invalid_form_data", f"Invalid action: {payload.action}")
    ctx.state.resume(run, payload.action, payload.inputs)
    return JSONResponse({})


def service_routes(state: EmulatorState) -> list[BaseRoute]:
    return [
        _route(state, "GET", "/", index, auth=False),
        _route(state, "GET", "/info", info),
        _route(state, "GET", "/parameters", parameters),
        _route(state, "GET", "/site", site),
        _route(state, "GET", "/meta", meta),
        _route(state, "POST", "/workflows/run", run_workflow),
        _route(state, "GET", "/workflows/run/{workflow_run_id}", run_detail),
        _route(state, "POST", "/workflows/tasks/{task_id}/stop", stop_task),
        _route(state, "GET", "/workflows/logs", workflow_logs),
        _route(state, "POST", "/workflows/{workflow_id}/run", run_workflow_by_id),
        _route(state, "GET", "/workflow/{workflow_run_id}/events", workflow_events),
        _route(state, "POST", "/files/upload", upload_file),
        _route(state, "GET", "/form/human_input/{form_token}", get_form),
        _route(state, "POST", "/form/human_input/{form_token}", submit_form),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths get Flask's HTML 404 page; a known path with the wrong method, and crashes,
    the JSON envelope of Dify's error handler."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404 and not request.url.path.startswith("/_emulator"):
        return not_found_page()
    return DifyError.http(status).response()


class VersionHeader:
    """``X-Version: <server_version>`` on every service-API response (Dify's ``after_request``),
    errors, 404 pages and streams included; not on the admin API."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self.state.config
        if scope["type"] != "http" or not config.version_header or scope["path"].startswith("/_emulator"):
            await self.app(scope, receive, send)
            return
        header = (b"x-version", config.server_version.encode())

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_version)


async def _to_index(request: Request) -> Response:
    """``GET /v1`` -> 308 ``/v1/`` (Werkzeug's strict-slashes redirect)."""
    return RedirectResponse(str(request.url.replace(path=f"{request.url.path}/")), status_code=308)


def create_app(state: EmulatorState) -> ASGIApp:
    # No slash redirects inside /v1: Werkzeug answers /v1/info/ with 404, not a redirect.
    service = Router(routes=service_routes(state), redirect_slashes=False)
    app = Starlette(
        routes=[
            Route("/v1", _to_index, methods=["GET", "HEAD"]),
            Mount("/v1", app=service),
            Mount("/_emulator", routes=admin_routes(state)),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
    )
    app.router.redirect_slashes = False
    return RecordingMiddleware(VersionHeader(app, state), state.requests, state.app_name_for_header)
