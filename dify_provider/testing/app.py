"""The emulator's ASGI app: the ``/v1`` service API (dify-api.md section 1), the few ``/api`` web-API
routes a test needs (the human-input form by token, :mod:`~dify_provider.testing.routes.web`) and
the ``/_emulator`` admin API on Starlette.

The service routes are in :mod:`dify_provider.testing.routes`, one module per API area; this
module puts them together: ``/v1`` without slash redirects (Werkzeug answers ``/v1/info/`` with
404), ``GET /v1`` redirected to ``/v1/``, Flask's 404 page and Dify's JSON error envelope
(:func:`~dify_provider.testing.routes._core.http_error`), the ``X-Version`` header, and the
request log.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dify_provider.testing.admin import admin_routes
from dify_provider.testing.recording import RecordingMiddleware
from dify_provider.testing.routes import app_info, chat, conversations, events, files, human_input, web, workflows
from dify_provider.testing.routes._core import http_error
from dify_provider.testing.state import EmulatorState


def service_routes(state: EmulatorState) -> list[BaseRoute]:
    """Every ``/v1`` route, area by area (the order Starlette tries them in)."""
    return [
        *app_info.routes(state),
        *workflows.routes(state),
        *chat.routes(state),
        *conversations.routes(state),
        *events.routes(state),
        *files.routes(state),
        *human_input.routes(state),
    ]


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
    web_api = Router(routes=web.routes(state), redirect_slashes=False)
    app = Starlette(
        routes=[
            Route("/v1", _to_index, methods=["GET", "HEAD"]),
            Mount("/v1", app=service),
            Mount("/api", app=web_api),
            Mount("/_emulator", routes=admin_routes(state)),
        ],
        exception_handlers={HTTPException: http_error, Exception: http_error},
    )
    app.router.redirect_slashes = False
    return RecordingMiddleware(VersionHeader(app, state), state.requests, state.app_name_for_header)
