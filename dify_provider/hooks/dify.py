"""``DifyHook``: turns an Airflow connection of type ``dify`` into ready clients.

The hook holds no HTTP logic of its own: everything that talks to Dify is in
:mod:`dify_provider.client`, so this file is only about reading the connection correctly.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import BaseHook, Connection

from dify_provider.client import AsyncDifyClient, ClientConfig, DifyClient, DifyConfigError, DifyError
from dify_provider.client._core import NO_RETRY
from dify_provider.client.async_ import fast_transport
from dify_provider.client.version import ServerVersion, VersionSource, parse_version
from dify_provider.hooks.base import (
    AsyncClientPool,
    extra_value,
    field_behaviour,
    for_connection,
    form_widgets,
    read_connection_async,
    transport_kwargs,
)
from dify_provider.provider_info import CONNECTION_EXTRAS, DIFY_DEFAULT_CONN_ID, FIELD_BEHAVIOUR


@dataclass(frozen=True)
class DifySettings:
    """A ``dify`` connection, parsed and checked. ``config`` carries the key as a SecretStr."""

    config: ClientConfig
    console_url: str
    app_id: str | None
    #: The ``server_version`` extra: what the user says the server is, for when it cannot tell.
    stated_version: str | None = None


#: Dify Cloud's console, for its API (``api.dify.ai``).
CLOUD_CONSOLE_URL = "https://cloud.dify.ai"


def default_console_url(base_url: str) -> str:
    """Where the console is when the connection does not say: Dify Cloud's for ``api.dify.ai``,
    else the API's own origin and path without ``/v1`` (a self-hosted Dify serves the console and
    ``/v1`` behind one nginx), so the link of a local or company Dify never points at the cloud."""
    parts = urlsplit(base_url)
    if (parts.hostname or "").lower() == "api.dify.ai":
        return CLOUD_CONSOLE_URL
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/').removesuffix('/v1')}"


def settings_from_connection(conn: Connection, extras: Mapping[str, Any] | None = None) -> DifySettings:
    """Every mistake here is reported with the connection field to fix, before any request.
    ``extras``: the connection's, when already read (see ``read_connection_async``)."""
    extras = conn.extra_dejson if extras is None else extras
    transport = transport_kwargs(
        conn, CONNECTION_EXTRAS, key_hint="put the Dify app API key (app-...) in the Password field", extras=extras)
    try:
        config = ClientConfig(**transport, user=str(extra_value(extras, "default_user", CONNECTION_EXTRAS)))
    except DifyConfigError as exc:
        raise for_connection(conn.conn_id, exc) from None
    stated = str(extra_value(extras, "server_version", CONNECTION_EXTRAS) or "").strip() or None
    if stated is not None and parse_version(stated) is None:
        raise DifyConfigError(f"connection {conn.conn_id!r}.extra.server_version",
                              f"{stated!r} is not a version: write it as Dify shows it, e.g. 1.13.2, or leave it empty")
    return DifySettings(
        config=config,
        console_url=(str(extra_value(extras, "console_url", CONNECTION_EXTRAS) or "").rstrip("/")
                     or default_console_url(config.base_url)),
        app_id=str(extras.get("app_id") or "") or None,
        stated_version=stated,
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

    # Airflow < 3.2 reads these two only where the hook class itself defines them
    # (``name in hook_class.__dict__``): they cannot come from a shared base class.
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's extra fields, for Airflow < 3.2 (3.2+ reads provider info instead)."""
        return form_widgets(CONNECTION_EXTRAS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The standard fields' labels and placeholders, for Airflow < 3.2."""
        return field_behaviour(FIELD_BEHAVIOUR["dify"])

    def __init__(self, dify_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dify_conn_id = dify_conn_id
        self._learned: ServerVersion | None = None

    def __repr__(self) -> str:
        return f"DifyHook(dify_conn_id={self.dify_conn_id!r})"

    @cached_property
    def settings(self) -> DifySettings:
        return settings_from_connection(self.get_connection(self.dify_conn_id))

    async def asettings(self) -> DifySettings:
        """Connection lookup without blocking the event loop (for triggers)."""
        return await read_connection_async(self.dify_conn_id, self, settings_from_connection)

    def get_client(self, *, headers: Mapping[str, str] | None = None) -> DifyClient:
        """``headers`` go with every request of this client (a task's trace headers)."""
        config = self.settings.config
        if headers:  # the config was checked when built; only the headers change
            config = copy.copy(config)
            object.__setattr__(config, "extra_headers", tuple(headers.items()))
        return DifyClient(config)

    def get_async_client(self, *, fast: bool = True) -> AsyncDifyClient:
        config = self.settings.config
        return AsyncDifyClient(config, transport=fast_transport(config) if fast else None)

    def server_version(self, client: DifyClient) -> ServerVersion:
        """The server's version, asked of the server at most once by this hook (one connection).

        In order: the ``X-Version`` header of an answer this client already got (every real
        answer has one, so this is usually free), what this hook learned earlier, the
        connection's ``server_version`` extra, then one ``GET /``. The server's own word wins
        over the extra; a disagreement is logged, since it means the extra is stale. Nothing
        outlives the hook: a long-lived process must not keep a version across an upgrade.
        """
        stated = self.settings.stated_version
        if client.server_version:
            found = ServerVersion(client.server_version, VersionSource.HEADER)
        elif self._learned is not None:
            return self._learned
        elif stated:
            return ServerVersion(stated, VersionSource.STATED)
        else:
            found = client.detect_version()
        if found != self._learned:
            self._learned = found
            if found.known and stated and parse_version(stated) != found.numbers:
                self.log.warning("Connection %r states server_version %s, but the server says %s; using the "
                                 "server's (update or clear the extra)", self.dify_conn_id, stated, found)
        return found

    def test_connection(self) -> tuple[bool, str]:
        """Read-only check: the key (``GET /info``) and the server version, learned from that
        answer's header, else from ``GET /`` (no key), else from the connection's extra."""
        try:
            # One attempt each: a person pressing "Test" wants the answer now, not after backoff.
            with DifyClient(dataclasses.replace(self.settings.config, retry=NO_RETRY)) as client:
                info = client.get_info()
                version = self.server_version(client)
        except DifyError as exc:
            return False, str(exc)
        if version.source is VersionSource.STATED:
            said = f"Dify {version.text} (as the connection's server_version extra states; the server did not say)"
        elif version.known:
            said = f"Dify {version.text}"
        else:
            said = ("Dify (version unknown: no X-Version header and no answer to GET /; if a proxy strips the "
                    "header, state the version in the connection's server_version extra)")
        note = "" if info.mode == "workflow" else (
            f"; note: workflow operators need a 'workflow' app, this key's app is '{info.mode}'"
        )
        return True, f"Connected to {said}: app {info.name!r} (mode {info.mode}){note}"


class SharedAsyncClients(AsyncClientPool[ClientConfig, AsyncDifyClient]):
    """One pooled :class:`AsyncDifyClient` per (event loop, Dify connection) for the whole
    triggerer process; see :class:`~dify_provider.hooks.base.AsyncClientPool`."""

    @classmethod
    async def load_config(cls, conn_id: str) -> ClientConfig:
        return (await DifyHook(dify_conn_id=conn_id).asettings()).config

    @classmethod
    def make_client(cls, config: ClientConfig) -> AsyncDifyClient:
        return AsyncDifyClient(config, transport=fast_transport(config))
