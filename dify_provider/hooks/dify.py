"""``DifyHook``: turns an Airflow connection of type ``dify`` into ready clients.

The hook holds no HTTP logic of its own: everything that talks to Dify is in
:mod:`dify_provider.client`, so this file is only about reading the connection correctly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook, Connection

from dify_provider.client import AsyncDifyClient, ClientConfig, DifyClient, DifyConfigError, DifyError
from dify_provider.client._core import NO_RETRY
from dify_provider.client.async_ import fast_transport
from dify_provider.hooks.base import AsyncClientPool, extra_value, for_connection, transport_kwargs
from dify_provider.provider_info import CONNECTION_EXTRAS, DIFY_DEFAULT_CONN_ID


@dataclass(frozen=True)
class DifySettings:
    """A ``dify`` connection, parsed and checked. ``config`` carries the key as a SecretStr."""

    config: ClientConfig
    console_url: str
    app_id: str | None


def settings_from_connection(conn: Connection) -> DifySettings:
    """Every mistake here is reported with the connection field to fix, before any request."""
    transport = transport_kwargs(
        conn, CONNECTION_EXTRAS, key_hint="put the Dify app API key (app-...) in the Password field")
    extras = conn.extra_dejson
    try:
        config = ClientConfig(**transport, user=str(extra_value(extras, "default_user", CONNECTION_EXTRAS)))
    except DifyConfigError as exc:
        raise for_connection(conn.conn_id, exc) from None
    return DifySettings(
        config=config,
        console_url=str(extra_value(extras, "console_url", CONNECTION_EXTRAS)).rstrip("/"),
        app_id=str(extras.get("app_id") or "") or None,
    )


class DifyHook(BaseHook):
    """Interact with one Dify app through its app API key.

    :param dify_conn_id: connection of type ``dify``: host = API base URL (default
        ``https://api.dify.ai/v1``), password = app API key, extras as in the connection form.
    """

    conn_name_attr = "dify_conn_id"
    default_conn_name = DIFY_DEFAULT_CONN_ID
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


class SharedAsyncClients(AsyncClientPool[ClientConfig, AsyncDifyClient]):
    """One pooled :class:`AsyncDifyClient` per (event loop, Dify connection) for the whole
    triggerer process; see :class:`~dify_provider.hooks.base.AsyncClientPool`."""

    @classmethod
    async def load_config(cls, conn_id: str) -> ClientConfig:
        return (await DifyHook(dify_conn_id=conn_id).asettings()).config

    @classmethod
    def make_client(cls, config: ClientConfig) -> AsyncDifyClient:
        return AsyncDifyClient(config, transport=fast_transport(config))
