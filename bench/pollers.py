"""The ways of waiting on a Dify run that the benchmark compares (imported by child processes only).

``provider`` is this package's :class:`~dify_provider.triggers.workflow_run.WorkflowRunTrigger`,
run exactly as a triggerer runs it (``async for event in trigger.run()``). The peers are what a
user writes without this provider, each as a fixed-interval loop "GET the run, stop on a terminal
status, sleep": ``http_async_hook`` with the HTTP provider's ``HttpAsyncHook`` (a session per poll,
as the HTTP provider's own triggers do), ``httpx_per_poll`` with a new ``httpx.AsyncClient`` per
poll, and ``httpx_shared`` with one shared ``httpx.AsyncClient`` and httpx's default pool (the
"obvious" httpx design). The peers do the minimum (no logging, no model validation), so any
advantage the provider shows is despite doing more per poll.

``aiohttp_shared`` is not a peer but the floor: one shared ``aiohttp.ClientSession`` with the
provider's pool size (20), the cheapest way to poll with the library the provider polls through.
The provider's distance to it is what its httpx API, validation, logging and retries cost.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "stopped", "partial-succeeded"})


@dataclass
class WaitResult:
    """One waited-on run, as the waiter saw it."""

    run_id: str
    poller: str
    polls: int = 0
    errors: int = 0
    started: float | None = None
    detected: float | None = None
    status: str | None = None
    #: Wall time of each poll (request and handling), for diagnosis: queueing shows up here.
    poll_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WaitSpec:
    run_id: str
    poller: str
    interval: float
    max_interval: float | None = None
    #: Override of the trigger's PollSchedule (grace, ratio), for the time-scaled cost check.
    grace: float | None = None
    ratio: float | None = None


class Context:
    """What every waiter of one child shares: where the emulator is, and the peers' clients."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self._shared_httpx: Any = None
        self._shared_aiohttp: Any = None

    def shared_httpx(self) -> Any:
        import httpx

        if self._shared_httpx is None:
            self._shared_httpx = httpx.AsyncClient(timeout=30.0)  # httpx's defaults: a pool of 100
        return self._shared_httpx

    def shared_aiohttp(self) -> Any:
        import aiohttp

        if self._shared_aiohttp is None:  # the provider's pool size, so sockets compare too
            self._shared_aiohttp = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20),
                                                         timeout=aiohttp.ClientTimeout(total=30.0))
        return self._shared_aiohttp

    async def aclose(self) -> None:
        if self._shared_httpx is not None:
            await self._shared_httpx.aclose()
        if self._shared_aiohttp is not None:
            await self._shared_aiohttp.close()
        if "provider" in POLLERS_USED:
            from dify_provider.hooks.dify import SharedAsyncClients

            await SharedAsyncClients.close_all()


POLLERS_USED: set[str] = set()


def preload(pollers: set[str]) -> None:
    """Import everything the pollers need before the idle baseline is taken."""
    POLLERS_USED.update(pollers)
    import httpx  # noqa: F401

    # every waiter lives in an Airflow process (this loads airflow.sdk on Airflow 3)
    from airflow.providers.common.compat.sdk import BaseOperator  # noqa: F401

    if "provider" in pollers:
        import httpx_aiohttp  # noqa: F401  - imported by the first shared client; not per waiter

        import dify_provider.triggers.workflow_run
    if pollers & {"http_async_hook", "aiohttp_shared"}:
        import aiohttp  # noqa: F401
    if "http_async_hook" in pollers:
        from airflow.providers.http.hooks.http import HttpAsyncHook  # noqa: F401
    if "stream" in pollers:
        import dify_provider.client.sync
        import dify_provider.operators.workflow  # noqa: F401


@functools.cache
def _counting_trigger() -> type[Any]:
    """The real trigger; counting its polls is the only addition (one class for all waiters)."""
    from dify_provider.client.status import Reason
    from dify_provider.client.waiting import Snapshot
    from dify_provider.triggers.workflow_run import WorkflowRunTrigger

    class CountingTrigger(WorkflowRunTrigger):
        bench_result: WaitResult

        async def poll(self) -> Snapshot:
            self.bench_result.polls += 1
            began = time.monotonic()
            snapshot = await super().poll()
            self.bench_result.poll_seconds.append(time.monotonic() - began)
            if snapshot.reason is Reason.ERROR:
                self.bench_result.errors += 1
            return snapshot

    return CountingTrigger


async def wait_provider(ctx: Context, spec: WaitSpec, result: WaitResult) -> None:
    from dify_provider.client.waiting import PollSchedule

    trigger = _counting_trigger()(spec.run_id, "dify_default", poll_interval=spec.interval,
                                  max_poll_interval=spec.max_interval, started_at=time.time())
    trigger.bench_result = result
    if spec.grace is not None or spec.ratio is not None:
        defaults = PollSchedule(spec.interval, spec.max_interval)
        trigger.schedule = PollSchedule(spec.interval, spec.max_interval,
                                        grace=defaults.grace if spec.grace is None else spec.grace,
                                        ratio=defaults.ratio if spec.ratio is None else spec.ratio)
    async for event in trigger.run():
        result.detected = time.monotonic()
        result.status = event.payload.get("status")
        return


async def _fixed_loop(spec: WaitSpec, result: WaitResult, get_status: Callable[[], Awaitable[str | None]]) -> None:
    while True:
        result.polls += 1
        began = time.monotonic()
        try:
            status = await get_status()
        except Exception:  # a hand-written loop that survives errors, as a careful user writes it
            result.errors += 1
            status = None
        result.poll_seconds.append(time.monotonic() - began)
        if status in TERMINAL:
            result.detected = time.monotonic()
            result.status = status
            return
        await asyncio.sleep(spec.interval)


async def wait_http_async_hook(ctx: Context, spec: WaitSpec, result: WaitResult) -> None:
    import aiohttp
    from airflow.providers.http.hooks.http import HttpAsyncHook

    hook = HttpAsyncHook(method="GET", http_conn_id="dify_http")
    endpoint = f"v1/workflows/run/{spec.run_id}"

    async def get_status() -> str | None:
        # The HTTP provider's own triggers (HttpTrigger, HttpSensorTrigger) open a session per call.
        async with aiohttp.ClientSession() as session:
            response = await hook.run(session=session, endpoint=endpoint, headers=ctx.headers)
            body = await response.json()
        return str(body["status"])

    await _fixed_loop(spec, result, get_status)


async def wait_httpx_per_poll(ctx: Context, spec: WaitSpec, result: WaitResult) -> None:
    import httpx

    url = f"{ctx.base_url}/workflows/run/{spec.run_id}"

    async def get_status() -> str | None:
        async with httpx.AsyncClient(timeout=30.0) as client:
            response = await client.get(url, headers=ctx.headers)
        response.raise_for_status()
        return str(response.json()["status"])

    await _fixed_loop(spec, result, get_status)


async def wait_httpx_shared(ctx: Context, spec: WaitSpec, result: WaitResult) -> None:
    url = f"{ctx.base_url}/workflows/run/{spec.run_id}"
    client = ctx.shared_httpx()

    async def get_status() -> str | None:
        response = await client.get(url, headers=ctx.headers)
        response.raise_for_status()
        return str(response.json()["status"])

    await _fixed_loop(spec, result, get_status)


async def wait_aiohttp_shared(ctx: Context, spec: WaitSpec, result: WaitResult) -> None:
    url = f"{ctx.base_url}/workflows/run/{spec.run_id}"
    session = ctx.shared_aiohttp()

    async def get_status() -> str | None:
        async with session.get(url, headers=ctx.headers) as response:
            response.raise_for_status()
            body = await response.json()
        return str(body["status"])

    await _fixed_loop(spec, result, get_status)


Waiter = Callable[[Context, WaitSpec, WaitResult], Awaitable[None]]

POLLERS: dict[str, Waiter] = {
    "provider": wait_provider,
    "http_async_hook": wait_http_async_hook,
    "httpx_per_poll": wait_httpx_per_poll,
    "httpx_shared": wait_httpx_shared,
    "aiohttp_shared": wait_aiohttp_shared,
}

LABELS = {
    "provider": "this provider: WorkflowRunTrigger (shared client)",
    "http_async_hook": "HttpAsyncHook, a session per poll",
    "httpx_per_poll": "httpx.AsyncClient per poll",
    "httpx_shared": "one shared httpx.AsyncClient (default pool)",
    "aiohttp_shared": "floor: one shared aiohttp session (pool 20), no validation or logging",
    "stream": "operator streaming path",
}
