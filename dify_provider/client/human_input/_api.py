"""The human-input calls as :class:`~dify_provider.client._core.Call` specs, checked before
anything is sent.

Two routes answer a form, by server version (read in Dify's source and docs):

- Dify >= 1.14: the service API, ``/v1/form/human_input/{token}`` with the app key; a submit
  names the end ``user``. The run's events (``/v1/workflow/{id}/events``) replay a later pause.
- Dify 1.13: only the web app's route, ``/api/form/human_input/{token}`` beside ``/v1``,
  unauthenticated (``controllers/web/human_input_form.py``: "unauthenticated on purpose for now"),
  no ``user``. The service API then has no way to learn a later pause's token.

The service route is tried first; Flask's HTML 404 page (no such route) switches a client to the
web route for good.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from dify_provider.client import errors as e
from dify_provider.client._checks import check_user, check_uuid
from dify_provider.client._core import Call, ClientConfig, Retry, parser
from dify_provider.client.human_input.models import HumanInputForm
from dify_provider.client.models import DifyModel

_TOKEN = re.compile(r"^[A-Za-z0-9_\-.~]{1,255}$")
#: What errors and retry log lines name: the route, never the token (a capability: 1.13's web
#: route answers anyone who holds it).
ROUTE = "/form/human_input/{form_token}"
T = TypeVar("T")


class SubmitResult(DifyModel):
    """Dify answers a submit with ``{}``."""


def check_token(token: Any) -> str:
    text = str(token).strip() if token is not None else ""
    if not _TOKEN.match(text):
        raise e.DifyConfigError("form_token", f"{text!r} is not a form token (the form_token of a human_input_required "
                                              "event: letters, digits, '-' and '_')")
    return text


def web_url(config: ClientConfig, path: str) -> str:
    """``https://host[/prefix]/v1`` -> ``https://host[/prefix]/api<path>``: where Dify mounts its
    web-app API beside the service API."""
    base = config.base_url
    root = base[: -len("/v1")] if base.endswith("/v1") else base
    return f"{root}/api{path}"


def _url(config: ClientConfig, token: str, web: bool) -> str:
    path = f"/form/human_input/{check_token(token)}"
    return web_url(config, path) if web else config.base_url + path


def _redacted(parse: Callable[[httpx.Response], T], token: str) -> Callable[[httpx.Response], T]:
    """A body that does not parse is reported with the request's path: not this one's token."""
    def checked(response: httpx.Response) -> T:
        try:
            return parse(response)
        except e.DifyResponseError as exc:
            raise e.DifyResponseError(str(exc).replace(token, "{form_token}")) from None

    return checked


def get_form(config: ClientConfig, token: str, *, web: bool) -> Call[HumanInputForm]:
    return Call("GET", ROUTE, _redacted(parser(HumanInputForm), token), auth=not web, url=_url(config, token, web))


def submit_form(config: ClientConfig, token: str, inputs: Any, action: Any, user: str | None, *,
                web: bool) -> Call[SubmitResult]:
    url = _url(config, token, web)
    if not isinstance(inputs, dict) or not all(isinstance(k, str) for k in inputs):
        raise e.DifyConfigError("inputs", "must be a dict of the form's input names to values")
    if not isinstance(action, str) or not action:
        raise e.DifyConfigError("action", "must be the id of one of the form's user_actions")
    body: dict[str, Any] = {"inputs": inputs, "action": action}
    # A form takes one answer: re-sending one whose first attempt may have landed would turn it
    # into a 412 "already submitted" that hides who answered. Re-send only what provably did not.
    if not web:  # 1.13's web route takes no user: the form knows its run
        body["user"] = check_user(user, config.user)
    return Call("POST", ROUTE, _redacted(parser(SubmitResult), token), retry=Retry.START, json=body, auth=not web,
                url=url)


def run_events(config: ClientConfig, run_id: str, user: str | None) -> Call[Any]:
    """``GET /workflow/{id}/events`` from the start (``include_state_snapshot``): the stream
    closes at the current pause, so the last unanswered ``human_input_required`` is the one."""
    params = {"user": check_user(user, config.user), "include_state_snapshot": "true"}
    return Call("GET", f"/workflow/{check_uuid('workflow_run_id', run_id)}/events", parser(SubmitResult),
                params=params)


def route_missing(exc: e.DifyError) -> bool:
    """A 404 that is Flask's page for an unknown route, not Dify's "Form not found" envelope."""
    return isinstance(exc, e.DifyNotFoundError) and exc.code == "unknown"
