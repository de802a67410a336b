"""Human-input forms on the service API: ``GET /v1/form/human_input/{form_token}`` (the form a
paused run waits on) and ``POST /v1/form/human_input/{form_token}`` (submit it: the run goes on), a
Dify 1.14 API (Flask's HTML 404 page before, see
:func:`~dify_provider.testing.routes._core.require_events_api`). Dify 1.13.2 serves the same forms
without a key under ``/api`` (:mod:`.web`); both share the lookups and checks here.

Each form of a run has its own token; on this API a form is found only with a key of its run's
app. As in Dify (``HumanInputService.ensure_form_active``), a form already submitted (by token, or
"in the web app" through :meth:`DifyEmulator.resume`) answers 412 ``human_input_form_submitted``,
an expired one (timed out by :meth:`DifyEmulator.expire_form`, past its ``expiration_time``, or
its run ended) 412 ``human_input_form_expired``, both naming the form id; then an answer the form
refuses is a 400 ``invalid_form_data`` with ``validate_human_input_submission``'s message. A
successful submit answers ``{}``. Scripting the forms: :class:`~dify_provider.testing.forms.FormSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from dify_provider.testing import payloads
from dify_provider.testing.errors import DifyError, not_found
from dify_provider.testing.forms import InvalidFormData
from dify_provider.testing.routes._core import Ctx, require_events_api, route
from dify_provider.testing.runs import PendingForm, Run
from dify_provider.testing.state import EmulatorState
from dify_provider.testing.validation import FormSubmitPayload, json_body, parse, required_user


def find_form(state: EmulatorState, token: str) -> tuple[Run, PendingForm]:
    found = state.form_by_token(token)
    if found is None:
        raise not_found("Form not found")
    return found


def ensure_active(form: PendingForm) -> None:
    """``ensure_form_active``: submitted first, then expired (by status, then by the clock)."""
    if form.submitted:
        raise DifyError(
            412,
            "human_input_form_submitted",
            f"This form has already been submitted by another user, form_id={form.form_id}",
        )
    if not form.answerable():
        raise DifyError(412, "human_input_form_expired", f"This form has expired, form_id={form.form_id}")


def submit(state: EmulatorState, run: Run, form: PendingForm, action: str, inputs: Mapping[str, Any]) -> None:
    ensure_active(form)
    try:
        state.human_input.submit(run, form, action, inputs)
    except InvalidFormData as exc:
        raise DifyError(400, "invalid_form_data", str(exc)) from None


def _own_form(ctx: Ctx) -> tuple[Run, PendingForm]:
    require_events_api(ctx)
    run, form = find_form(ctx.state, ctx.request.path_params["form_token"])
    if run.app.name != ctx.app.name:
        raise not_found("Form not found")
    return run, form


async def get_form(ctx: Ctx) -> Response:
    _, form = _own_form(ctx)
    ensure_active(form)
    return JSONResponse(payloads.form_definition(form))


async def submit_form(ctx: Ctx) -> Response:
    require_events_api(ctx)
    body = await json_body(ctx.request)
    required_user(body.get("user"))
    payload = parse(FormSubmitPayload, body)
    run, form = _own_form(ctx)
    submit(ctx.state, run, form, payload.action, payload.inputs)
    return JSONResponse({})


def routes(state: EmulatorState) -> list[BaseRoute]:
    return [
        route(state, "GET", "/form/human_input/{form_token}", get_form),
        route(state, "POST", "/form/human_input/{form_token}", submit_form),
    ]
