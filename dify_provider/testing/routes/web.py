"""Dify's web API (``/api``, what its web app calls), as far as a test needs it: the human-input
form by token, ``GET`` and ``POST /api/form/human_input/{form_token}``
(``controllers/web/human_input_form.py``). It exists in 1.13.2, so it is served on every server
version, while the service API's ``/v1/form/human_input`` waits for 1.14 (:mod:`.human_input`).

As recorded against a real 1.13.2 (``tests/contract/recordings-hitl``, 50-60, 91): no key ("unauthenticated
on purpose"; a key sent anyway is ignored), any app's form, the token is the secret. GET answers the
service API's form definition plus ``site`` (``serialize_app_site_payload``: the app's WebApp
settings) and refuses a form no longer active as POST does; POST takes
``{"inputs": {...}, "action": "..."}`` with no ``user``. Its errors: an unknown token is Flask-RESTX's
404 with its "did you mean" tail, a missing field is ``reqparse``'s bare
``{"errors", "message"}`` 400 (no ``code``), the rest are the service API's
(:func:`.human_input.ensure_active`, ``invalid_form_data``).

These routes skip the service API's machinery (no key, no scripted faults: :func:`web_route`), but
the request log records them like every request (``RecordedRequest.app`` is None).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dify_provider.testing import payloads
from dify_provider.testing.errors import DifyError
from dify_provider.testing.models import EmulatedApp
from dify_provider.testing.routes.human_input import ensure_active, submit
from dify_provider.testing.runs import PendingForm, Run
from dify_provider.testing.state import EmulatorState

WebHandler = Callable[[EmulatorState, Request], Awaitable[Response]]


class _ParseError(Exception):
    """``reqparse``'s 400: ``{"errors": {field: why}, "message": ...}``, without Dify's envelope."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.response = JSONResponse({"errors": {name: message}, "message": "Input payload validation failed"}, 400)


def web_route(state: EmulatorState, method: str, path: str, handler: WebHandler) -> Route:
    """A route of the web API: Dify's error envelope for what the handler raises, nothing else."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(state, request)
        except DifyError as exc:
            return exc.response()
        except _ParseError as exc:
            return exc.response

    return Route(path, endpoint, methods=[method], name=f"web {method} {path}")


#: ``AppSiteApi.site_fields`` of 1.13.2, in order (recording hitl/50).
_SITE_FIELDS = ("title", "chat_color_theme", "chat_color_theme_inverted", "icon_type", "icon", "icon_background",
                "icon_url", "description", "copyright", "privacy_policy", "custom_disclaimer", "default_language",
                "prompt_public", "show_workflow_steps", "use_icon_as_answer_icon")


def site_payload(app: EmulatedApp) -> dict[str, Any]:
    """``AppSiteApi.app_fields`` marshalled for a new app's site on a self-hosted tenant."""
    site = {**payloads.app_site(app), "prompt_public": False}
    return {
        "app_id": app.app_id,
        "end_user_id": None,
        "enable_site": True,
        "site": {name: site[name] for name in _SITE_FIELDS},
        "model_config": None,
        "plan": "basic",
        "can_replace_logo": False,
        "custom_config": None,
    }


def _find(state: EmulatorState, request: Request) -> tuple[Run, PendingForm]:
    found = state.form_by_token(request.path_params["form_token"])
    if found is None:
        # NotFoundError("Form not found") through Flask-RESTX, which appends its route suggestions.
        message = (f"Form not found. You have requested this URI [{request.url.path}] but did you mean "
                   "/api/form/human_input/<string:form_token> or /console/api/form/human_input/<string:form_token> ?")
        raise DifyError(404, "not_found", message)
    return found


def _required(body: Any, name: str) -> Any:
    """``reqparse`` with ``location="json"``: a missing field, or one its type cannot convert, is
    a 400 without Dify's envelope (``inputs`` is ``type=dict``: ``dict(value)``'s own error)."""
    if not isinstance(body, dict) or name not in body:
        raise _ParseError(name, "Missing required parameter in the JSON body")
    value = body[name]
    if name == "inputs" and value is not None:
        try:
            return dict(value)
        except (TypeError, ValueError) as exc:
            raise _ParseError(name, str(exc)) from None
    return value


async def get_form(state: EmulatorState, request: Request) -> Response:
    run, form = _find(state, request)
    ensure_active(form)
    payload = {**payloads.form_definition(form), "site": site_payload(run.app)}
    # json.dumps with its default separators, as _jsonify_form_definition writes it.
    return Response(json.dumps(payload, ensure_ascii=False), media_type="application/json")


async def submit_form(state: EmulatorState, request: Request) -> Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None  # reqparse reads the JSON silently: as if no field was sent
    inputs, action = _required(body, "inputs"), _required(body, "action")
    run, form = _find(state, request)
    if inputs is None:  # null passes reqparse (nullable); the service trips over it once the form is active
        ensure_active(form)
        raise DifyError(500, "unknown", "Internal Server Error")
    submit(state, run, form, str(action), inputs)  # type=str: str(value), a null action included
    return JSONResponse({})


def routes(state: EmulatorState) -> list[BaseRoute]:
    return [
        web_route(state, "GET", "/form/human_input/{form_token}", get_form),
        web_route(state, "POST", "/form/human_input/{form_token}", submit_form),
    ]
