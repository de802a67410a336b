"""App metadata: ``GET /`` (the index), ``GET /info``, ``GET /parameters``, ``GET /site`` and
``GET /meta``.

The index needs no key and is off by default: 1.13.2 has no index resource, so ``GET /v1/`` is
Flask's HTML 404 page there; the ``index_route`` switch serves the body Dify's docs describe. The
other four describe the app of the request's key; their bodies are built in
:mod:`~dify_provider.testing.payloads`.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from dify_provider.testing import payloads
from dify_provider.testing.routes._core import Ctx, NoSuchRoute, route
from dify_provider.testing.state import EmulatorState


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


def routes(state: EmulatorState) -> list[BaseRoute]:
    return [
        route(state, "GET", "/", index, auth=False),
        route(state, "GET", "/info", info),
        route(state, "GET", "/parameters", parameters),
        route(state, "GET", "/site", site),
        route(state, "GET", "/meta", meta),
    ]
