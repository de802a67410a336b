"""``ChenyuEmulator``: a local Chenyu progress API for tests, served from a background thread.

::

    with ChenyuEmulator() as emu:
        run_order_id = emu.create_run(ChenyuScenario(queue_polls=1, steps=3, status="failed"))
        emu.inject(ChenyuFault.http_error(503), ChenyuFault.task_not_found())
        ...point a ``chenyu`` connection at emu.base_url with emu.api_key...

Runs move one step per progress read (see :mod:`dify_provider.testing.chenyu_state`), so tests
control progress by polling, or with ``hold=True`` and :meth:`ChenyuEmulator.finish`. Requests are
recorded with the key redacted; :meth:`ChenyuEmulator.wait_for_requests` blocks on the server's
notifications instead of sleeping. ``/_emulator/...`` offers the same control over HTTP for an
emulator in another process. In pytest, use the ``chenyu_emulator`` fixture.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from dify_provider.testing.chenyu_state import (
    ChenyuFault,
    ChenyuFinal,
    ChenyuScenario,
    ChenyuState,
    envelope_error,
)
from dify_provider.testing.faults import ResetResponse
from dify_provider.testing.models import RecordedRequest
from dify_provider.testing.recording import RECORD_KEY, RecordingMiddleware
from dify_provider.testing.serving import LoopbackServer

PROGRESS_PATH = "/api/open/v2/workflow/run/execution"
DEFAULT_API_KEY = "cy-emulator-key-0123456789"
#: ``msg`` of a successful answer, as in Chenyu's documented example.
OK_MESSAGE = "查询成功"


# --- the app ---------------------------------------------------------------------------------


def _fault_response(fault: ChenyuFault) -> Response:
    if fault.kind == "reset":
        return ResetResponse()
    if fault.kind == "malformed_json":
        return Response(b'{"code": 0, "msg": "ok", "data": {"status": "runn', 200, media_type="application/json")
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    if fault.body is not None:
        return Response(fault.body, fault.status, headers=headers, media_type="text/html")
    return JSONResponse(fault.error_body(), fault.status, headers=headers)


def _progress_route(state: ChenyuState) -> Callable[[Request], Any]:
    async def progress(request: Request) -> Response:
        fault = state.take_fault()
        if fault is not None:
            seq = request.scope.get(RECORD_KEY)
            if seq is not None:
                state.requests.update(seq, fault=fault.kind)
            return _fault_response(fault)
        if request.headers.get("authorization") != f"Bearer {state.api_key}":
            return JSONResponse(envelope_error(401, "Unauthorized.", reason="Unauthorized.",
                                               detail="missing or invalid API key", engine_code="UNAUTHORIZED",
                                               status_code=401), 401)
        run_order_id = request.query_params.get("run_order_id", "")
        if not run_order_id:
            return JSONResponse(envelope_error(400, "run_order_id is required.", reason="run_order_id is required.",
                                               detail=None, engine_code="INVALID_PARAM", status_code=400), 400)
        data = state.read(run_order_id)
        if data is None:  # the documented answer, with HTTP 200: only ``code`` says it failed
            return JSONResponse(envelope_error(1, "Task not found.", reason="Task not found.",
                                               detail=f"execution task {run_order_id} does not exist",
                                               engine_code="TASK_NOT_FOUND", status_code=404))
        return JSONResponse({"code": 0, "msg": OK_MESSAGE, "data": data})

    return progress


class _FinishBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: ChenyuFinal = "succeeded"
    outputs: dict[str, Any] | None = None
    error: str | None = None


_FAULTS = TypeAdapter(list[ChenyuFault] | ChenyuFault)


def _admin_routes(state: ChenyuState) -> list[Route]:
    """``/_emulator``: create run orders, finish them, inject faults, reset. No auth (loopback)."""

    async def body(request: Request) -> Any:
        raw = await request.body()
        return json.loads(raw) if raw.strip() else {}

    def bad(exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, 400)

    async def create(request: Request) -> Response:
        try:
            scenario = ChenyuScenario.model_validate(await body(request))
        except (ValidationError, ValueError) as exc:
            return bad(exc)
        run = state.create_run(scenario)
        return JSONResponse({"run_order_id": run.run_order_id, "data": state.peek(run.run_order_id)}, 201)

    async def show(request: Request) -> Response:
        try:
            return JSONResponse(state.peek(request.path_params["run_order_id"]))
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, 404)

    async def finish(request: Request) -> Response:
        run_order_id = request.path_params["run_order_id"]
        try:
            done = _FinishBody.model_validate(await body(request))
            state.finish(run_order_id, done.status, done.outputs, done.error)
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, 404)
        except (ValidationError, ValueError) as exc:
            return bad(exc)
        return JSONResponse(state.peek(run_order_id))

    async def faults(request: Request) -> Response:
        try:
            parsed = _FAULTS.validate_python(await body(request))
        except (ValidationError, ValueError) as exc:
            return bad(exc)
        for fault in parsed if isinstance(parsed, list) else [parsed]:
            state.add_fault(fault)
        return JSONResponse({"ok": True})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"ok": True})

    return [
        Route("/_emulator/runs", create, methods=["POST"]),
        Route("/_emulator/runs/{run_order_id}", show, methods=["GET"]),
        Route("/_emulator/runs/{run_order_id}/finish", finish, methods=["POST"]),
        Route("/_emulator/faults", faults, methods=["POST"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
    ]


def create_chenyu_app(state: ChenyuState) -> ASGIApp:
    app = Starlette(routes=[Route(PROGRESS_PATH, _progress_route(state), methods=["GET"]), *_admin_routes(state)])
    key_header = f"Bearer {state.api_key}"
    return RecordingMiddleware(app, state.requests, lambda auth: "chenyu" if auth == key_header else None)


# --- the handle tests hold -------------------------------------------------------------------


class ChenyuEmulator:
    """A local Chenyu progress API on loopback: ``with ChenyuEmulator() as emu: ...``.

    ``port=0`` picks a free port; ``api_key`` is the only key it accepts.
    """

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = ChenyuState(api_key, media_url="")
        self._server = LoopbackServer("chenyu-emulator", host, port, backlog=512)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        def make_app() -> ASGIApp:
            self.state.media_url = f"{self.base_url}/media"  # the port is known by now
            return create_chenyu_app(self.state)

        self._server.start(make_app)
        return self

    def close(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- addresses ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What a ``chenyu`` connection's host should be."""
        return self._server.url

    @property
    def admin_url(self) -> str:
        return f"{self.base_url}/_emulator"

    @property
    def api_key(self) -> str:
        return self.state.api_key

    def airflow_connection(self) -> dict[str, Any]:
        """An Airflow connection (``AIRFLOW_CONN_*`` JSON form) pointing at this emulator."""
        return {"conn_type": "chenyu", "host": self.base_url, "password": self.api_key}

    def airflow_connection_json(self) -> str:
        return json.dumps(self.airflow_connection())

    # -- control --------------------------------------------------------------------------------

    def create_run(self, scenario: ChenyuScenario | None = None) -> str:
        """Create a run order as something outside Airflow would (Chenyu documents no start
        endpoint, so this is test-side only); returns its ``run_order_id``."""
        return self.state.create_run(scenario).run_order_id

    def finish(self, run_order_id: str, status: ChenyuFinal = "succeeded", *,
               outputs: dict[str, Any] | None = None, error: str | None = None) -> dict[str, Any]:
        """End an unfinished (typically held) run now; returns what the API now answers."""
        self.state.finish(run_order_id, status, outputs, error)
        return self.state.peek(run_order_id)

    def inject(self, *faults: ChenyuFault) -> None:
        """Queue faults: the next progress requests get them, in order."""
        for fault in faults:
            self.state.add_fault(fault)

    def reset(self) -> None:
        """Forget run orders, faults and recorded requests."""
        self.state.reset()

    # -- inspection -----------------------------------------------------------------------------

    def run(self, run_order_id: str) -> dict[str, Any]:
        """The ``data`` the progress API would answer now, without advancing the run."""
        return self.state.peek(run_order_id)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.state.requests.snapshot()

    def progress_reads(self, run_order_id: str | None = None) -> list[RecordedRequest]:
        """Recorded progress requests (for one run order, or all)."""
        return [r for r in self.requests if r.path == PROGRESS_PATH
                and (run_order_id is None or r.query.get("run_order_id") == run_order_id)]

    def wait_for(self, run_order_id: str, status: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """Block until the run order has ``status`` (any, if None); returns its current data."""

        def check() -> dict[str, Any] | None:
            run = self.state.runs.get(run_order_id)
            if run is None or (status is not None and run.status != status):
                return None
            return run.data()

        found = self.state.wait(check, timeout)
        if found is None:
            raise TimeoutError(f"run order {run_order_id!r} did not reach {status or 'existence'} in {timeout}s")
        return found

    def wait_for_requests(self, run_order_id: str | None = None, count: int = 1, timeout: float = 5.0,
                          where: Callable[[RecordedRequest], bool] | None = None) -> list[RecordedRequest]:
        """Block until at least ``count`` progress requests (for ``run_order_id``, if given, and
        matching ``where``) were received; returns them all."""

        def check() -> list[RecordedRequest] | None:
            found = [r for r in self.progress_reads(run_order_id) if where is None or where(r)]
            return found if len(found) >= count else None

        found = self.state.wait(check, timeout)
        if found is None:
            raise TimeoutError(f"fewer than {count} progress requests for {run_order_id or 'any run order'} "
                               f"after {timeout}s")
        return found

