"""``/_emulator/...``: the control methods of :class:`DifyEmulator` over HTTP, for tests that drive
a separately started emulator (Airflow running as its own processes in an end-to-end test).

Runs (``/runs``, a chatflow message's run included: its snapshot names ``message_id`` and
``conversation_id``) and chat messages (``/messages``: every mode's, a chatflow's with its
``workflow_run_id``) each have their list, detail, ``wait``, ``finish``, ``release`` and ``stop``;
a paused run also ``resume`` (its form answered in the web app; 400 for an answer the form refuses)
and ``expire-form`` (its form timed out).

No auth: the server only listens on loopback unless told otherwise. Handlers run on the server
loop, which owns run state, so they call the state directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing.chats import ChatMessage, MessageSnapshot
from dify_provider.testing.forms import InvalidFormData
from dify_provider.testing.models import Fault, FinalStatus, RunSnapshot, Scenario
from dify_provider.testing.runs import Run
from dify_provider.testing.state import EmulatorState


class ScriptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: str
    scenarios: list[Scenario]


class FinishBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: FinalStatus = "succeeded"
    outputs: dict[str, Any] | None = None
    error: str | None = None


class ResumeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = "approve"
    inputs: dict[str, Any] = {}


_FAULTS = TypeAdapter(list[Fault] | Fault)


def _snapshot(run: Run) -> dict[str, Any]:
    return _jsonable(run.snapshot())


def _jsonable(snapshot: RunSnapshot | MessageSnapshot) -> dict[str, Any]:
    return dataclasses.asdict(snapshot)


def _statuses(raw: str | None) -> set[str] | None:
    return None if not raw else {part.strip() for part in raw.split(",") if part.strip()}


def admin_routes(state: EmulatorState) -> list[BaseRoute]:
    def handler(fn: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                result = await fn(request)
            except KeyError as exc:
                return JSONResponse({"error": str(exc.args[0] if exc.args else exc)}, 404)
            except (ValidationError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, 422)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 409)
            return result if isinstance(result, Response) else JSONResponse(result)

        return endpoint

    def run_of(request: Request) -> Run:
        run_id = request.path_params["run_id"]
        run = state.runs.get(run_id)
        if run is None:
            raise KeyError(f"no run {run_id}")
        return run

    async def apps(request: Request) -> Any:
        return [
            {
                "name": a.name,
                "mode": a.mode,
                "api_key": a.api_key,
                "app_id": a.app_id,
                "workflow_id": a.workflow_id,
                "description": a.description,
            }
            for a in state.apps.values()
        ]

    async def runs(request: Request) -> Any:
        app, statuses = request.query_params.get("app"), _statuses(request.query_params.get("status"))
        with state.cond:
            return [
                _snapshot(run)
                for run in state.runs.values()
                if (app is None or run.app.name == app) and (statuses is None or run.status in statuses)
            ]

    async def run(request: Request) -> Any:
        return _snapshot(run_of(request))

    async def wait(request: Request) -> Any:
        run_id = request.path_params["run_id"]
        statuses = _statuses(request.query_params.get("status"))
        timeout = float(request.query_params.get("timeout", "5"))

        def check() -> RunSnapshot | None:
            found = state.runs.get(run_id)
            if found is None or (statuses is not None and found.status not in statuses):
                return None
            return found.snapshot()

        snapshot = await state.wait_async(check, timeout)
        if snapshot is None:
            return JSONResponse({"error": f"timed out waiting for run {run_id}"}, 408)
        return _jsonable(snapshot)

    async def finish(request: Request) -> Any:
        target = run_of(request)
        body = FinishBody.model_validate(await _json(request))
        state.finish(target, WorkflowRunStatus(body.status), body.outputs, body.error)
        return _snapshot(target)

    async def resume(request: Request) -> Any:
        target = run_of(request)
        body = ResumeBody.model_validate(await _json(request))
        try:
            state.resume(target, body.action, body.inputs)
        except InvalidFormData as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return _snapshot(target)

    async def expire_form(request: Request) -> Any:
        target = run_of(request)
        state.expire_form(target)
        return _snapshot(target)

    async def stop(request: Request) -> Any:
        target = run_of(request)
        state.stop(target)
        return _snapshot(target)

    async def release(request: Request) -> Any:
        target = run_of(request)
        state.release(target)
        return _snapshot(target)

    def message_of(request: Request) -> ChatMessage:
        message_id = request.path_params["message_id"]
        message = state.chats.messages.get(message_id)
        if message is None:
            raise KeyError(f"no message {message_id}")
        return message

    async def messages(request: Request) -> Any:
        """Every chat message (a chatflow's has its run's ``workflow_run_id``), filtered by ``app``,
        ``conversation_id``, ``status``."""
        params = request.query_params
        app, conversation, statuses = params.get("app"), params.get("conversation_id"), _statuses(params.get("status"))
        with state.cond:
            return [
                _jsonable(m.snapshot())
                for m in state.chats.messages.values()
                if (app is None or m.app.name == app)
                and (conversation is None or m.conversation.id == conversation)
                and (statuses is None or m.state in statuses)
            ]

    async def message(request: Request) -> Any:
        return _jsonable(message_of(request).snapshot())

    async def message_wait(request: Request) -> Any:
        message_id = request.path_params["message_id"]
        statuses = _statuses(request.query_params.get("status"))
        timeout = float(request.query_params.get("timeout", "5"))

        def check() -> MessageSnapshot | None:
            found = state.chats.messages.get(message_id)
            if found is None or (statuses is not None and found.state not in statuses):
                return None
            return found.snapshot()

        snapshot = await state.wait_async(check, timeout)
        if snapshot is None:
            return JSONResponse({"error": f"timed out waiting for message {message_id}"}, 408)
        return _jsonable(snapshot)

    async def message_finish(request: Request) -> Any:
        target = message_of(request)
        body = FinishBody.model_validate(await _json(request))
        state.chat.finish(target, WorkflowRunStatus(body.status), body.error)
        return _jsonable(target.snapshot())

    async def message_release(request: Request) -> Any:
        target = message_of(request)
        state.chat.release(target)
        return _jsonable(target.snapshot())

    async def message_stop(request: Request) -> Any:
        target = message_of(request)
        state.chat.stop(target)
        return _jsonable(target.snapshot())

    async def requests(request: Request) -> Any:
        method, path = request.query_params.get("method"), request.query_params.get("path")
        return [
            dataclasses.asdict(r)
            for r in state.requests.snapshot()
            if (method is None or r.method == method.upper()) and (path is None or r.path.endswith(path))
        ]

    async def script(request: Request) -> Any:
        body = ScriptBody.model_validate(await _json(request))
        state.script(body.app, body.scenarios)
        return {"scripted": len(body.scenarios)}

    async def faults(request: Request) -> Any:
        if request.method == "POST":
            parsed = _FAULTS.validate_python(await _json(request))
            for fault in parsed if isinstance(parsed, list) else [parsed]:
                state.faults.add(fault)
        return [fault.model_dump(exclude_defaults=True) for fault in state.faults.pending()]

    async def config(request: Request) -> Any:
        """GET: the switches in force; POST ``{switch: value, ...}``: change some (as configure())."""
        if request.method == "POST":
            changes = await _json(request)
            if not isinstance(changes, dict):
                raise TypeError("the body must be a JSON object of switches")
            with state.cond:
                state.config = state.config.changed(**changes)
        return state.config.model_dump()

    async def reset(request: Request) -> Any:
        state.reset()
        return {"reset": True}

    return [
        Route("/apps", handler(apps), methods=["GET"]),
        Route("/config", handler(config), methods=["GET", "POST"]),
        Route("/runs", handler(runs), methods=["GET"]),
        Route("/runs/{run_id}", handler(run), methods=["GET"]),
        Route("/runs/{run_id}/wait", handler(wait), methods=["GET"]),
        Route("/runs/{run_id}/finish", handler(finish), methods=["POST"]),
        Route("/runs/{run_id}/resume", handler(resume), methods=["POST"]),
        Route("/runs/{run_id}/expire-form", handler(expire_form), methods=["POST"]),
        Route("/runs/{run_id}/stop", handler(stop), methods=["POST"]),
        Route("/runs/{run_id}/release", handler(release), methods=["POST"]),
        Route("/messages", handler(messages), methods=["GET"]),
        Route("/messages/{message_id}", handler(message), methods=["GET"]),
        Route("/messages/{message_id}/wait", handler(message_wait), methods=["GET"]),
        Route("/messages/{message_id}/finish", handler(message_finish), methods=["POST"]),
        Route("/messages/{message_id}/release", handler(message_release), methods=["POST"]),
        Route("/messages/{message_id}/stop", handler(message_stop), methods=["POST"]),
        Route("/requests", handler(requests), methods=["GET"]),
        Route("/script", handler(script), methods=["POST"]),
        Route("/faults", handler(faults), methods=["GET", "POST"]),
        Route("/reset", handler(reset), methods=["POST"]),
    ]


async def _json(request: Request) -> Any:
    body = await request.body()
    return {} if not body.strip() else await request.json()
