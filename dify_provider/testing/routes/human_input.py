"""Human-input forms: ``GET /form/human_input/{form_token}`` (the form a paused run waits on) and
``POST /form/human_input/{form_token}`` (submit it: the run resumes), a Dify 1.14 API (Flask's HTML
404 page before, see :func:`~dify_provider.testing.routes._core.require_events_api`).

A form is found by its token, and only with a key of its run's app. As in Dify, a form already
submitted, or expired (its run ended), answers 412 naming the form id; an unknown action is a 400
``invalid_form_data``; a successful submit answers ``{}``.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from dify_provider.testing import payloads
from dify_provider.testing.errors import DifyError, not_found
from dify_provider.testing.routes._core import Ctx, require_events_api, route
from dify_provider.testing.runs import FORM_ACTIONS, Run
from dify_provider.testing.state import EmulatorState
from dify_provider.testing.validation import FormSubmitPayload, json_body, parse, required_user


def _pending_form(ctx: Ctx) -> Run:
    require_events_api(ctx)
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
    require_events_api(ctx)
    body = await json_body(ctx.request)
    required_user(body.get("user"))
    payload = parse(FormSubmitPayload, body)
    run = _pending_form(ctx)
    actions = {action["id"] for action in FORM_ACTIONS}
    if payload.action not in actions:
        raise DifyError(400, "invalid_form_data", f"Invalid action: {payload.action}")
    ctx.state.resume(run, payload.action, payload.inputs)
    return JSONResponse({})


def routes(state: EmulatorState) -> list[BaseRoute]:
    return [
        route(state, "GET", "/form/human_input/{form_token}", get_form),
        route(state, "POST", "/form/human_input/{form_token}", submit_form),
    ]
