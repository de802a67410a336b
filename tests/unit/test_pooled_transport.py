"""The triggerer's fast path (``PooledTransport.fetch`` under ``AsyncServiceClient``) against a real
loopback server: it must answer exactly as httpx's generic path would (decoding, headers, errors)."""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from dify_provider.client import AsyncDifyClient, ClientConfig, DifyConnectionError, DifyNotFoundError
from dify_provider.client._aiohttp import PooledTransport, aiohttp_timeout
from dify_provider.client._core import NO_RETRY, Call
from dify_provider.client._transport import fast_transport

from . import _bodies as b
from ._harness import RUN_ID

Server = tuple[str, list[dict[str, Any]]]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    seen: list[dict[str, Any]] = []

    async def run_detail(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "path": request.path, "headers": dict(request.headers)})
        if request.match_info["run_id"] != RUN_ID:
            return web.json_response({"code": "not_found", "message": "Workflow run not found.", "status": 404},
                                     status=404)
        body = gzip.compress(json.dumps(b.RUN_DETAIL_RUNNING).encode())  # as a proxy with gzip on sends it
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    async def echo(request: web.Request) -> web.Response:
        seen.append({"method": request.method, "path": request.path_qs, "headers": dict(request.headers)})
        return web.json_response(dict(request.query))

    app = web.Application()
    app.router.add_get("/v1/workflows/run/{run_id}", run_detail)
    app.router.add_get("/v1/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1", seen
    await runner.cleanup()


def config(base_url: str) -> ClientConfig:
    return ClientConfig(api_key="app-secret-key", base_url=base_url, timeout=5)


@pytest.mark.asyncio
async def test_fetch_decodes_the_body_as_httpx_would(server: Server) -> None:
    base_url, _ = server
    transport = PooledTransport()
    try:
        response = await transport.fetch(httpx.Request("GET", f"{base_url}/workflows/run/{RUN_ID}"), {},
                                         aiohttp_timeout(httpx.Timeout(5)))
    finally:
        await transport.aclose()
    assert response.status_code == 200
    assert response.json()["id"] == b.RUN_DETAIL_RUNNING["id"]
    assert response.headers["content-type"] == "application/json"


@pytest.mark.asyncio
async def test_polls_reuse_one_request_and_send_the_key_and_user_agent(server: Server) -> None:
    base_url, seen = server
    cfg = config(base_url)
    async with AsyncDifyClient(cfg, transport=fast_transport(cfg)) as client:
        first = await client.get_workflow_run(RUN_ID)
        second = await client.get_workflow_run(RUN_ID)
        assert len(client._bodiless) == 1  # the second poll reused the first one's request
    assert first.status == second.status == "running"
    assert [s["path"] for s in seen] == [f"/v1/workflows/run/{RUN_ID}"] * 2
    for request in seen:
        assert request["headers"]["Authorization"] == "Bearer app-secret-key"
        assert request["headers"]["User-Agent"].startswith("airflow-provider-dify/")


@pytest.mark.asyncio
async def test_fast_path_errors_are_the_clients_typed_errors(server: Server) -> None:
    base_url, _ = server
    cfg = config(base_url)
    async with AsyncDifyClient(cfg, transport=fast_transport(cfg)) as client:
        with pytest.raises(DifyNotFoundError):
            await client.get_workflow_run("b8e2c8a0-3c5e-4d6f-9a1b-2c3d4e5f6a7b")
    nobody = ClientConfig(api_key="app-secret-key", base_url="http://127.0.0.1:9/v1", retry=NO_RETRY)  # discard port
    async with AsyncDifyClient(nobody, transport=fast_transport(nobody)) as client:
        with pytest.raises(DifyConnectionError) as refused:  # not "did not answer in time"
            await client.get_workflow_run(RUN_ID)
    assert refused.value.sent is False
    assert "could not reach Dify" in str(refused.value)


@pytest.mark.asyncio
async def test_a_dropped_connection_is_a_broken_connection_not_a_timeout() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request arrived; the server dies before answering
        writer.close()

    tcp = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    cfg = ClientConfig(api_key="app-secret-key", base_url=f"http://127.0.0.1:{port}/v1", retry=NO_RETRY)
    try:
        async with AsyncDifyClient(cfg, transport=fast_transport(cfg)) as client:  # a poll: the fast path
            with pytest.raises(DifyConnectionError) as broken:
                await client.get_workflow_run(RUN_ID)
        assert broken.value.sent is True  # the request may have arrived
        transport = PooledTransport()  # the generic path, which streams take
        try:
            with pytest.raises(httpx.ReadError):
                await transport.handle_async_request(httpx.Request("GET", f"{cfg.base_url}/workflows/run/{RUN_ID}"))
        finally:
            await transport.aclose()
    finally:
        tcp.close()


@pytest.mark.asyncio
async def test_a_query_is_part_of_the_reused_request(server: Server) -> None:
    """Chenyu's progress poll names its run in the query string, not the path."""
    base_url, seen = server
    cfg = config(base_url)
    echo = functools.partial(Call, "GET", "/echo", lambda response: response.json())
    async with AsyncDifyClient(cfg, transport=fast_transport(cfg)) as client:
        assert await client._call(echo(params={"run_order_id": "wfrun_1"})) == {"run_order_id": "wfrun_1"}
        assert await client._call(echo(params={"run_order_id": "wfrun_2"})) == {"run_order_id": "wfrun_2"}
        assert await client._call(echo(params={"run_order_id": "wfrun_1"})) == {"run_order_id": "wfrun_1"}
        assert len(client._bodiless) == 2
    assert [s["path"] for s in seen] == ["/v1/echo?run_order_id=wfrun_1", "/v1/echo?run_order_id=wfrun_2",
                                         "/v1/echo?run_order_id=wfrun_1"]
