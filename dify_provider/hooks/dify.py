"""``DifyHook``: turns an Airflow connection of type ``dify`` into ready clients.

The hook holds no HTTP logic of its own: everything that talks to Dify is in
:mod:`dify_provider.client`, so this file is only about reading the connection correctly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from airflow.sdk import BaseHook, Connection
from pydantic import SecretStr

from dify_provider.client import AsyncDifyClient, ClientConfig, DifyClient, DifyConfigError, DifyError
from dify_provider.client._core import NO_RETRY
from dify_provider.client.async_ import fast_transport
from dify_provider.provider_info import CONNECTION_EXTRAS


@dataclass(frozen=True)
class DifySettings:
    """A ``dify`` connection, parsed and checked. ``config`` carries the key as a SecretStr."""

    config: ClientConfig
    console_url: str
    app_id: str | None


def _extra(extras: dict[str, Any], name: str) -> Any:
    value = extras.get(name)
    if value is None or value == "":
        return CONNECTION_EXTRAS[name]["schema"]["default"]
    return value


def settings_from_connection(conn: Connection) -> DifySettings:
    """Every mistake here is reported with the connection field to fix, before any request."""
    conn_id = conn.conn_id
    key = conn.password or ""
    if not key.strip():
        raise DifyConfigError(
            f"connection {conn_id!r}.password", "is empty: put the Dify app API key (app-...) in the Password field"
        )
    extras = conn.extra_dejson
    try:
        timeout = float(_extra(extras, "timeout"))
    except (TypeError, ValueError):
        raise DifyConfigError(f"connection {conn_id!r}.extra.timeout", "must be a number of seconds") from None
    verify: bool | str = bool(_extra(extras, "verify_ssl"))
    ca_bundle = str(_extra(extras, "ca_bundle") or "")
    if ca_bundle and verify:
        verify = ca_bundle
    host = conn.host or ""
    if host and conn.port and "://" in host and host.count(":") == 1:
        host = f"{host.rstrip('/')}:{conn.port}"
    try:
        config = ClientConfig(
            api_key=SecretStr(key),
            base_url=host,
            timeout=timeout,
            verify=verify,
            proxy=str(_extra(extras, "proxy") or "") or None,
            user=str(_extra(extras, "default_user")),
        )
    except DifyConfigError as exc:
        raise DifyConfigError(f"connection {conn_id!r}.{exc.field}", str(exc).split(": ", 1)[-1]) from None
    return DifySettings(
        config=config,
        console_url=str(_extra(extras, "console_url")).rstrip("/"),
        app_id=str(extras.get("app_id") or "") or None,
    )


class DifyHook(BaseHook):
    """Interact with one Dify app through its app API key.

    :param dify_conn_id: connection of type ``dify``: host = API base URL (default
        ``https://api.dify.ai/v1``), password = app API key, extras as in the connection form.
    """

    conn_name_attr = "dify_conn_id"
    default_conn_name = "dify_default"
    conn_type = "dify"
    hook_name = "Dify"

    def __init__(self, dify_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dify_conn_id = dify_conn_id

    def __repr__(self) -> str:
        return f"DifyHook(dify_conn_id={self.dify_conn_id!r})"

    @cached_property
    def settings(self) -> DifySettings:
        return settings_from_connection(self.get_connection(self.dify_conn_id))

    async def asettings(self) -> DifySettings:
        """Connection lookup without blocking the event loop (for triggers)."""
        from airflow.providers.common.compat.connection import get_async_connection

        return settings_from_connection(await get_async_connection(self.dify_conn_id, hook=self))

    def get_client(self) -> DifyClient:
        return DifyClient(self.settings.config)

    def get_async_client(self, *, fast: bool = True) -> AsyncDifyClient:
        config = self.settings.config
        return AsyncDifyClient(config, transport=fast_transport(config) if fast else None)

    def test_connection(self) -> tuple[bool, str]:
        """Read-only check: server version (``GET /``, no key), then the key (``GET /info``)."""
        try:
            # One attempt each: a person pressing "Test" wants the answer now, not after backoff.
            with DifyClient(dataclasses.replace(self.settings.config, retry=NO_RETRY)) as client:
                try:
                    version = f"Dify {client.get_server_version().server_version}"
                except DifyError:
                    version = "Dify (version unknown)"
                info = client.get_info()
        except DifyError as exc:
            return False, str(exc)
        note = "" if info.mode == "workflow" else (
            f"; note: workflow operators need a 'workflow' app, this key's app is '{info.mode}'"
        )
        return True, f"Connected to {version}: app {info.name!r} (mode {info.mode}){note}"


class SharedAsyncClients:
    """One pooled async client per (event loop, connection) for the whole triggerer process.

    A triggerer may hold thousands of waiting triggers; a client each (or, worse, one per poll)
    costs a handshake and a pool per trigger. Sharing one per connection bounds sockets by the
    pool size. Keyed by the loop object (weakly), because a client is bound to the loop that
    created it. The connection is re-read every ``refresh_seconds`` so a rotated key is picked up
    without restarting the triggerer.
    """

    refresh_seconds: ClassVar[float] = 300.0
    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Entry]]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    async def get(cls, conn_id: str) -> AsyncDifyClient:
        entries = cls._by_loop.setdefault(asyncio.get_running_loop(), {})
        entry = entries.get(conn_id)
        if entry is None:
            entry = entries[conn_id] = _Entry()
        if entry.client is not None and time.monotonic() - entry.fetched < cls.refresh_seconds:
            return entry.client
        async with entry.lock:
            if entry.client is None or time.monotonic() - entry.fetched >= cls.refresh_seconds:
                settings = await DifyHook(dify_conn_id=conn_id).asettings()
                if entry.client is None or entry.client.config != settings.config:
                    old, entry.client = entry.client, AsyncDifyClient(
                        settings.config, transport=fast_transport(settings.config)
                    )
                    if old is not None:
                        await old.aclose()
                entry.fetched = time.monotonic()
            return entry.client

    @classmethod
    async def close_all(cls) -> None:
        """For tests and benchmarks; a triggerer simply exits."""
        entries = cls._by_loop.pop(asyncio.get_running_loop(), {})
        for entry in entries.values():
            if entry.client is not None:
                await entry.client.aclose()


@dataclass
class _Entry:
    client: AsyncDifyClient | None = None
    fetched: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
