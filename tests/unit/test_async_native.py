"""Async-only behaviour, in a real running loop (pytest-asyncio, strict mode)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx

from dify_provider.client import AsyncDifyClient, DifyServerError, WorkflowFinishedEvent, WorkflowRun

from . import _bodies as b
from ._harness import RUN_ID, frame, make_config, sse_response, url


@pytest.mark.asyncio
async def test_max_in_flight_bounds_concurrent_requests(router: respx.MockRouter) -> None:
    in_flight = peak = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)  # let every other caller try to get in
        await asyncio.sleep(0)
        in_flight -= 1
        return httpx.Response(200, json=b.RUN_DETAIL_RUNNING)

    route = router.get(url(f"/workflows/run/{RUN_ID}")).mock(side_effect=answer)
    async with AsyncDifyClient(make_config(), max_in_flight=3) as client:
        runs = await asyncio.gather(*(client.get_workflow_run(RUN_ID) for _ in range(20)))
    assert all(isinstance(run, WorkflowRun) for run in runs)
    assert route.call_count == 20
    assert peak == 3


@pytest.mark.asyncio
async def test_gate_is_released_while_backing_off(router: respx.MockRouter) -> None:
    # A caller sleeping between retries must not hold an in-flight slot.
    sleeping = asyncio.Event()
    release = asyncio.Event()

    async def sleep(seconds: float) -> None:
        sleeping.set()
        await release.wait()

    router.get(url("/info")).mock(side_effect=[httpx.Response(503, text="busy"), httpx.Response(200, json=b.APP_INFO)])
    router.get(url("/parameters")).respond(200, json=b.APP_PARAMETERS)
    async with AsyncDifyClient(make_config(), sleep=sleep, max_in_flight=1) as client:
        first = asyncio.create_task(client.get_info())
        await sleeping.wait()
        params = await asyncio.wait_for(client.get_parameters(), timeout=2)  # the slot is free
        release.set()
        info = await first
    assert params.required_variables == ["query", "tone"]
    assert info.mode == "workflow"


@pytest.mark.asyncio
async def test_async_stream_in_a_running_loop(router: respx.MockRouter) -> None:
    router.post(url("/workflows/run")).mock(return_value=sse_response(
        frame(b.WORKFLOW_STARTED), frame(b.WORKFLOW_FINISHED), chunk_size=5))
    async with AsyncDifyClient(make_config()) as client:
        stream = await client.run_workflow({"query": "hello"}, response_mode="streaming")
        events = [event async for event in stream]
    assert isinstance(events[-1], WorkflowFinishedEvent)
    assert stream.finished


@pytest.mark.asyncio
async def test_injected_sleep_is_awaited(router: respx.MockRouter) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    route = router.get(url("/info")).respond(504, text="Gateway Timeout", headers={"Retry-After": "1.5"})
    async with AsyncDifyClient(make_config(), sleep=sleep) as client:
        with pytest.raises(DifyServerError):
            await client.get_info()
    assert slept == [1.5, 1.5]
    assert route.call_count == 3
