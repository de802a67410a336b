"""AsyncClientPool: one lookup per connection, refreshes that never stall polls, a grace period
before a replaced client is closed, and refresh failures that keep the current client."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import ClassVar, TypeVar

import pytest
from pydantic import SecretStr

from dify_provider.hooks import base
from dify_provider.hooks.base import AsyncClientPool

KEY = "app-rotating-secret"
T = TypeVar("T")


@dataclass(frozen=True)
class Config:
    api_key: SecretStr
    base_url: str = "http://dify/v1"


class FakeClient:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.closed_at: float | None = None

    async def aclose(self) -> None:
        assert self.closed_at is None, "closed twice"
        self.closed_at = asyncio.get_running_loop().time()


class Pool(AsyncClientPool[Config, FakeClient]):
    """``load_config`` returns (or raises) what the test gave with :func:`answer` for that
    connection; until then the lookup waits, as a slow secrets backend would."""

    results: ClassVar[defaultdict[str, asyncio.Queue[Config | Exception]]]
    loads: ClassVar[int]

    @classmethod
    async def load_config(cls, conn_id: str) -> Config:
        cls.loads += 1
        result = await cls.results[conn_id].get()
        if isinstance(result, Exception):
            raise result
        return result

    @classmethod
    def make_client(cls, config: Config) -> FakeClient:
        return FakeClient(config)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The pool's monotonic clock, only the module's (the event loop keeps the real one)."""
    now = [1000.0]
    monkeypatch.setattr(base, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(Pool, "refresh_seconds", 300.0)
    monkeypatch.setattr(Pool, "retire_seconds", 3600.0)
    Pool.results = defaultdict(asyncio.Queue)
    Pool.loads = 0
    yield now
    assert not Pool._by_loop, "a test left clients open: end it with Pool.close_all()"


def cfg(key: str = KEY) -> Config:
    return Config(SecretStr(key))


def answer(result: Config | Exception, conn_id: str = "c") -> None:
    Pool.results[conn_id].put_nowait(result)


async def soon(awaitable: Awaitable[T]) -> T:
    """Safety net only: what is awaited must finish without waiting for anything slow."""
    return await asyncio.wait_for(awaitable, 0.5)


async def settle() -> None:
    """Let background tasks run as far as they can without more input."""
    for _ in range(20):
        await asyncio.sleep(0)


async def refreshed(pool_client: FakeClient, clock: list[float]) -> None:
    """Make a refresh due and start it with one poll, which must still get the current client."""
    clock[0] += Pool.refresh_seconds
    assert await soon(Pool.get("c")) is pool_client


@pytest.mark.asyncio
async def test_concurrent_first_gets_share_one_lookup(clock: list[float]) -> None:
    waiters = [asyncio.create_task(Pool.get("c")) for _ in range(50)]
    await settle()
    assert Pool.loads == 1
    answer(cfg())
    clients = await soon(asyncio.gather(*waiters))
    assert all(client is clients[0] for client in clients)
    assert Pool.loads == 1
    assert await Pool.get("c") is clients[0]  # not due yet: no second lookup
    await settle()
    assert Pool.loads == 1
    await soon(Pool.close_all())


@pytest.mark.asyncio
async def test_polls_do_not_wait_for_a_slow_refresh(clock: list[float]) -> None:
    answer(cfg())
    client = await soon(Pool.get("c"))
    await refreshed(client, clock)
    await settle()
    assert Pool.loads == 2  # the refresh is blocked in load_config (nothing in the queue)
    for _ in range(100):
        assert await soon(Pool.get("c")) is client
    await settle()
    assert Pool.loads == 2  # one refresh, not one per poll
    answer(cfg())  # unchanged: the client stays, the next refresh is a period away
    await settle()
    clock[0] += Pool.refresh_seconds - 1
    assert await Pool.get("c") is client
    await settle()
    assert Pool.loads == 2
    assert client.closed_at is None
    await soon(Pool.close_all())


@pytest.mark.asyncio
async def test_changed_config_swaps_client_and_retires_old_after_grace(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Pool, "retire_seconds", 0.05)
    answer(cfg())
    old = await soon(Pool.get("c"))
    await refreshed(old, clock)
    answer(cfg("app-rotated"))
    await settle()
    swapped_at = asyncio.get_running_loop().time()
    new = await Pool.get("c")
    assert new is not old
    assert new.config == cfg("app-rotated")
    assert old.closed_at is None  # requests already sent on it may still be running
    while old.closed_at is None:
        await soon(asyncio.sleep(0.01))  # bounded by soon(): the grace is 0.05 s
    assert old.closed_at - swapped_at >= Pool.retire_seconds - 0.01  # loop clock granularity
    assert new.closed_at is None
    assert await Pool.get("c") is new
    await soon(Pool.close_all())
    assert new.closed_at is not None


@pytest.mark.asyncio
async def test_failed_refresh_keeps_client_warns_and_retries(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    answer(cfg())
    client = await soon(Pool.get("c"))
    await refreshed(client, clock)
    with caplog.at_level(logging.WARNING, logger=base.__name__):
        answer(ConnectionError("secrets backend timed out"))
        await settle()
    assert await Pool.get("c") is client
    assert client.closed_at is None
    [record] = [r for r in caplog.records if r.name == base.__name__]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "'c'" in message
    assert "ConnectionError: secrets backend timed out" in message
    assert KEY not in message
    await settle()
    assert Pool.loads == 2  # no retry before the next period
    clock[0] += Pool.refresh_seconds
    assert await Pool.get("c") is client
    answer(cfg("app-rotated"))
    await settle()
    assert Pool.loads == 3
    assert (await Pool.get("c")).config == cfg("app-rotated")
    await soon(Pool.close_all())
    assert client.closed_at is not None


@pytest.mark.asyncio
async def test_first_load_failure_reaches_the_caller(clock: list[float]) -> None:
    answer(LookupError("The conn_id `c` isn't defined"))
    with pytest.raises(LookupError, match="isn't defined"):
        await soon(Pool.get("c"))
    answer(cfg())  # the next call tries again
    assert (await soon(Pool.get("c"))).config == cfg()
    await soon(Pool.close_all())


@pytest.mark.asyncio
async def test_close_all_closes_current_and_retiring_clients_and_cancels_tasks(clock: list[float]) -> None:
    answer(cfg())
    answer(cfg(), "d")
    retiring = await soon(Pool.get("c"))
    pending = await soon(Pool.get("d"))
    await refreshed(retiring, clock)  # "c": swapped, the old client in its (one-hour) grace
    assert await soon(Pool.get("d")) is pending  # "d": refresh stuck in load_config
    answer(cfg("app-rotated"))
    await settle()
    current = await Pool.get("c")
    assert current is not retiring
    assert retiring.closed_at is None
    tasks = [entry.refresh for entry in Pool._by_loop[asyncio.get_running_loop()].values()]
    assert all(task is not None and not task.done() for task in tasks)
    await soon(Pool.close_all())
    assert all(c.closed_at is not None for c in (retiring, current, pending))
    assert all(task is not None and task.cancelled() for task in tasks)
    assert asyncio.all_tasks() == {asyncio.current_task()}


def test_clients_are_closed_when_their_loop_ends(clock: list[float]) -> None:
    """Without close_all: what dag.test() does, one asyncio.run per deferral."""

    async def one_deferral() -> FakeClient:
        answer(cfg())
        return await soon(Pool.get("c"))

    client = asyncio.run(one_deferral())
    assert client.closed_at is not None
    again = asyncio.run(one_deferral())  # the next loop gets a client (and a closer) of its own
    assert again is not client
    assert again.closed_at is not None
