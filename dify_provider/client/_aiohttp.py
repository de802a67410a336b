"""The triggerer's transport: httpx's API over aiohttp's connection pool (``httpx-aiohttp``),
plus a direct path for the small, fully read answers that polling is made of.

Imported only when an async client is given this transport (triggers), so a worker that only
runs the blocking client never loads aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterator, Mapping

import aiohttp
import httpx
import yarl
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

#: aiohttp re-parses a URL given as text at every request; a triggerer asks for the same few
#: thousand run URLs over and over, and ``yarl.URL`` is immutable.
_yarl = functools.lru_cache(maxsize=4096)(functools.partial(yarl.URL, encoded=True))


def aiohttp_timeout(timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
    """httpx's four timeouts as ``httpx-aiohttp`` maps them, built once rather than per request."""
    return aiohttp.ClientTimeout(sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool)


@contextlib.contextmanager
def _precise_errors() -> Iterator[None]:
    """``httpx-aiohttp`` reports every aiohttp connection error that is not a timeout (refused,
    DNS failure, server disconnect, reset) as ``httpx.ConnectTimeout``: its table's first match
    wins. Users then read "did not answer in time" about a server that is down. Re-map those by
    their cause: a failed connect is a ``ConnectError`` (nothing was sent), a broken connection
    a ``ReadError`` (the request may have arrived)."""
    try:
        yield
    except httpx.ConnectTimeout as exc:
        cause = exc.__cause__
        if cause is None or isinstance(cause, asyncio.TimeoutError):
            raise
        if isinstance(cause, aiohttp.ClientConnectorError):
            raise httpx.ConnectError(str(exc)) from cause
        raise httpx.ReadError(str(exc)) from cause


class PooledTransport(AiohttpTransport):  # type: ignore[misc]  # httpx-aiohttp ships no type hints
    """``httpx-aiohttp``'s transport; streams (SSE) go through it unchanged.

    :meth:`fetch` sends a request and reads its whole answer in one step. The generic path wraps
    aiohttp's body in an httpx stream that the caller then iterates chunk by chunk, and converts
    httpx's header object to aiohttp's at every request; for a poll (a GET with a body of a few
    KB) that wrapping cost about a quarter of the poll's CPU at 1,000 waiting runs (``bench/``).
    Both paths raise httpx's exceptions, mapped more precisely than ``httpx-aiohttp`` does.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _precise_errors():
            response: httpx.Response = await super().handle_async_request(request)
        return response

    async def fetch(self, request: httpx.Request, headers: Mapping[str, str],
                    timeouts: aiohttp.ClientTimeout) -> httpx.Response:
        """Send ``request`` with ``headers`` (plain strings, for aiohttp) and read the answer."""
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        proxy: httpx.Proxy | None = self.proxy
        with _precise_errors(), map_aiohttp_exceptions():
            async with self.client.request(
                request.method, _yarl(str(request.url)), headers=headers, data=request.content or None,
                allow_redirects=False, auto_decompress=False, compress=False, timeout=timeouts,
                proxy=str(proxy.url) if proxy else None,
                proxy_auth=aiohttp.BasicAuth(*proxy.auth) if proxy and proxy.auth else None,
                proxy_headers=proxy.headers if proxy else None,
            ) as answer:
                body = await answer.read()
        return httpx.Response(answer.status, headers=answer.raw_headers, content=body, request=request)
