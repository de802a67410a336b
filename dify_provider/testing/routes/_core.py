"""The routing machinery every ``/v1`` route shares: :class:`Ctx`, auth, faults, the 404 page.

Every route is built by :func:`route`, which applies, in Dify's order: scripted faults that fire
before the endpoint (so a rejected ``POST /workflows/run`` creates no run), bearer auth, the
handler, then any fault that mangles the handler's response. Handlers return plain
``JSONResponse``s: the detail endpoint is polled by a thousand waiters at once and must stay cheap
(the only per-request extra is the ``X-Version`` header, added by
:class:`~dify_provider.testing.app.VersionHeader`).

Paths the server does not have answer Werkzeug's HTML 404 page, as Flask does outside its API
error handler (``GET /v1/`` on 1.13.2, the 1.14 events/form API on older versions: a handler
raises :class:`NoSuchRoute`); a known path with the wrong method answers the JSON 405 envelope
(:func:`http_error`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from dify_provider.testing.errors import DifyError, invalid_param, not_chat_app, not_workflow_app
from dify_provider.testing.faults import (
    RUN_ENDPOINTS,
    ResetResponse,
    error_response,
    invented_start,
    mangle,
    normalize_endpoint,
)
from dify_provider.testing.models import EmulatedApp, Fault
from dify_provider.testing.recording import RECORD_KEY
from dify_provider.testing.registry import SERVICE_ENDPOINTS
from dify_provider.testing.runs import Run
from dify_provider.testing.sse import EventStream, Outcome
from dify_provider.testing.state import EmulatorState

#: Werkzeug's NotFound page, byte for byte (what Flask sends for a path no route knows).
NOT_FOUND_HTML = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please check "
    "your spelling and try again.</p>\n"
)


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
        return mangle(fault, JSONResponse(invented_start(ctx.endpoint)))
    ctx.response_fault = fault
    return None


def route(state: EmulatorState, method: str, path: str, handler: Handler, *, auth: bool = True) -> Route:
    """The Starlette route of one service endpoint (its key must be in ``SERVICE_ENDPOINTS``)."""
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


def require_mode(app: EmulatedApp, *modes: str) -> None:
    if app.mode not in modes:
        raise not_workflow_app()


def require_chat_mode(app: EmulatedApp) -> None:
    """The chat endpoints' check: ``chat``, ``agent-chat`` or ``advanced-chat``."""
    if app.mode not in ("chat", "agent-chat", "advanced-chat"):
        raise not_chat_app()


async def faults_after_start(ctx: Ctx, streaming: bool, closed: Callable[[Outcome], None]) -> Response | Fault | None:
    """The faults of a run endpoint once the run (or message) exists, in the order a client meets
    them: an ``after_run_created`` one (an error or reset instead of the answer, a delay before it,
    half an answer), then a stream fault. Returns the response to send instead, or the stream's fault."""
    state = ctx.state
    stream_fault: Fault | None = None
    late = state.faults.take(ctx.endpoint, ctx.app.name, "after")
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
        stream_fault = stream_fault or state.faults.take(ctx.endpoint, ctx.app.name, "stream")
        if stream_fault is not None:
            ctx.fired(stream_fault)
    return stream_fault


def require_events_api(ctx: Ctx) -> None:
    """The events and human-input form routes arrive with Dify 1.14."""
    if not ctx.state.config.has_events_api:
        raise NoSuchRoute


def own_run(ctx: Ctx, run_id: str) -> Run | None:
    """The run, if it belongs to the app of the request's key."""
    run = ctx.state.runs.get(run_id)
    return run if run is not None and run.app.name == ctx.app.name else None


def stream_timing(state: EmulatorState, executing: Callable[[], bool] | None) -> dict[str, Any]:
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


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths get Flask's HTML 404 page; a known path with the wrong method, and crashes,
    the JSON envelope of Dify's error handler."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404 and not request.url.path.startswith("/_emulator"):
        return not_found_page()
    return DifyError.http(status).response()
