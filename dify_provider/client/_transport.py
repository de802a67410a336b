"""The pooled, retrying HTTP plumbing every backend's client is built on.

A backend's client subclasses :class:`SyncServiceClient` / :class:`AsyncServiceClient` and
supplies two things: which service it is (for messages) and how an answer that is not a success
is turned into a typed error. Connection pooling, timeouts, TLS, proxies, the retry policy and
the transport-error mapping are written here once, so a second backend cannot get them subtly
different from Dify's.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

import httpx
import tenacity

from dify_provider.client import errors as e
from dify_provider.client._core import (
    Call,
    ServiceConfig,
    request_args,
    retryable,
    tenacity_args,
    transport_error,
)

if TYPE_CHECKING:
    from dify_provider.client._aiohttp import PooledTransport

T = TypeVar("T")
ConfigT = TypeVar("ConfigT", bound=ServiceConfig)


def fast_transport(config: ServiceConfig) -> httpx.AsyncBaseTransport:
    """httpx's API over aiohttp's connection pool: measured several times cheaper per request
    than httpx's own async pool at triggerer scale (see the README's Performance section)."""
    from dify_provider.client._aiohttp import PooledTransport

    return PooledTransport(verify=config.verify, limits=config.limits(),  # type: ignore[no-any-return]
                           proxy=httpx.Proxy(config.proxy) if config.proxy else None)


class _ServiceClient(ABC, Generic[ConfigT]):
    """What the sync and async clients share: the config, and the rules they apply to answers."""

    #: Who answers, as messages name it ("Dify", "Chenyu").
    service: ClassVar[str]
    #: The response header in which the server names its version (Dify: ``X-Version``).
    version_header: ClassVar[str | None] = None

    config: ConfigT
    _sleep: Callable[[float], Any]
    #: The version the server last named in ``version_header``; None until an answer said.
    server_version: str | None = None

    def __repr__(self) -> str:
        # The config (and so the key) is deliberately left out.
        return f"{type(self).__name__}(base_url={self.config.base_url!r})"

    @abstractmethod
    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        """Raise the backend's typed error for an answer that is not a success."""

    def _note_version(self, response: httpx.Response) -> None:
        """Learn the server's version from any answer, errors included: it costs no request."""
        if self.version_header is not None:
            value = response.headers.get(self.version_header)
            if value:
                self.server_version = value

    def _transport_error(self, exc: httpx.TransportError, path: str) -> e.DifyTransportError:
        return transport_error(exc, path, service=self.service)

    def _retry_args(self, call: Call[Any]) -> dict[str, Any]:
        return tenacity_args(self.config.retry, call.retry, self._sleep)


class SyncServiceClient(_ServiceClient[ConfigT]):
    """Blocking base: one ``httpx.Client`` pool per client. Use as a context manager, or call
    :meth:`close` yourself: the pool holds sockets."""

    def __init__(self, config: ConfigT, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        self.http = httpx.Client(
            timeout=config.httpx_timeout(), limits=config.limits(), verify=config.verify,
            proxy=None if transport else config.proxy, transport=transport, follow_redirects=False,
        )

    def _call(self, call: Call[T]) -> T:
        def once() -> T:
            try:
                response = self.http.send(self.http.build_request(**request_args(self.config, call)))
            except httpx.TransportError as exc:
                raise self._transport_error(exc, call.path) from exc
            self._note_version(response)
            self._raise_for_status(response, call.path)
            return call.parse(response)

        result: T = tenacity.Retrying(**self._retry_args(call))(once)
        return result

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncServiceClient(_ServiceClient[ConfigT]):
    """Non-blocking base, for triggers. ``max_in_flight`` bounds concurrent requests so that
    thousands of callers queue in memory instead of thrashing the pool.

    Built for a triggerer polling thousands of runs, where each poll's CPU is the cost. Given the
    :func:`fast_transport`, body-less calls (polls) go straight to it with the request, its
    headers and timeouts built once, skipping ``httpx.AsyncClient.send`` (auth
    flows, cookies, redirects, event hooks: none used here), and retries are set up only after a
    first attempt failed; measured at 1,000 waiting runs, that is most of a poll's CPU (see
    ``bench/``). With another transport or none, requests take httpx's normal path (its pool,
    environment proxies); streams always do.
    """

    def __init__(self, config: ConfigT, *, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 max_in_flight: int | None = None) -> None:
        self.config = config
        self._sleep = sleep
        self._gate = asyncio.Semaphore(max_in_flight or config.max_connections)
        self.http = httpx.AsyncClient(
            timeout=config.httpx_timeout(), limits=config.limits(), verify=config.verify,
            proxy=None if transport else config.proxy, transport=transport, follow_redirects=False,
        )
        self._pooled: PooledTransport | None = None
        if transport is not None:
            from dify_provider.client._aiohttp import PooledTransport, aiohttp_timeout

            if isinstance(transport, PooledTransport):
                self._pooled = transport
                # What build_request would produce for a body-less call: httpx's default headers
                # overlaid with ours, with and without the key (some calls are unauthenticated).
                with_key = httpx.Headers(self.http.headers)
                with_key.update(config.headers())
                without_key = httpx.Headers(with_key)
                del without_key["Authorization"]
                self._headers = {True: with_key, False: without_key}
                self._plain_headers = {auth: dict(h.items()) for auth, h in self._headers.items()}
                self._timeouts = {"timeout": config.httpx_timeout().as_dict()}
                self._aiohttp_timeout = aiohttp_timeout(config.httpx_timeout())
                self._bodiless: dict[tuple[Any, ...], httpx.Request] = {}

    async def _call(self, call: Call[T]) -> T:
        started = time.monotonic()
        try:
            return await self._attempt(call)
        except Exception as exc:
            if not retryable(exc, call.retry):
                raise
            first = exc
        # Rare: hand over to the one retry policy (tenacity), replaying the first failure so it is
        # counted as attempt 1 and its time against the time limit.
        replay = [first]

        async def attempt() -> T:
            if replay:
                raise replay.pop()
            return await self._attempt(call)

        retrying = tenacity.AsyncRetrying(**tenacity_args(self.config.retry, call.retry, self._sleep,
                                                          elapsed=time.monotonic() - started))
        result: T = await retrying(attempt)
        return result

    async def _attempt(self, call: Call[T]) -> T:
        async with self._gate:
            try:
                response = await self._send(call)
            except httpx.TransportError as exc:
                raise self._transport_error(exc, call.path) from exc
        if self.server_version is None:  # once is enough: this is a triggerer's hot path
            self._note_version(response)
        self._raise_for_status(response, call.path)
        return call.parse(response)

    async def _send(self, call: Call[Any]) -> httpx.Response:
        bodiless = call.json is None and call.files is None and call.data is None
        if self._pooled is None or not bodiless:  # polls are body-less GETs; the rest is rare
            return await self.http.send(self.http.build_request(**request_args(self.config, call)))
        if self.http.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        url = call.url or self.config.base_url + call.path
        key = (call.method, url, tuple(call.params.items()) if call.params else (), call.auth)
        request = self._bodiless.get(key)
        if request is None:  # a request without a body is never changed by sending it: keep it
            if len(self._bodiless) >= 4096:  # a triggerer's runs come and go: keep the recent ones
                self._bodiless.clear()
            request = self._bodiless[key] = httpx.Request(call.method, url, params=call.params,
                                                          headers=self._headers[call.auth], extensions=self._timeouts)
        return await self._pooled.fetch(request, self._plain_headers[call.auth], self._aiohttp_timeout)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
