"""``ChenyuHook``: turns an Airflow connection of type ``chenyu`` into ready clients.

Like :class:`~dify_provider.hooks.dify.DifyHook` it holds no HTTP logic: the connection's
transport fields are read by the shared code in :mod:`dify_provider.hooks.base`, the requests
are made by :mod:`dify_provider.client.chenyu`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseHook, Connection

from dify_provider.client._core import NO_RETRY
from dify_provider.client._transport import fast_transport
from dify_provider.client.chenyu import AsyncChenyuClient, ChenyuClient, ChenyuConfig
from dify_provider.client.errors import DifyConfigError, DifyError, DifyNotFoundError
from dify_provider.hooks.base import (
    AsyncClientPool,
    field_behaviour,
    for_connection,
    form_widgets,
    read_connection_async,
    transport_kwargs,
)
from dify_provider.provider_info import CHENYU_CONNECTION_EXTRAS, CHENYU_DEFAULT_CONN_ID, FIELD_BEHAVIOUR

#: A run order id that cannot exist: "Test" reads its progress to prove the key is accepted.
PROBE_RUN_ORDER_ID = "airflow-connection-test"


def chenyu_config_from_connection(conn: Connection, extras: Mapping[str, Any] | None = None) -> ChenyuConfig:
    """Every mistake is reported with the connection field to fix, before any request.
    ``extras``: the connection's, when already read (see ``read_connection_async``)."""
    transport = transport_kwargs(conn, CHENYU_CONNECTION_EXTRAS,
                                 key_hint="put the Chenyu open-API key in the Password field",
                                 extras=conn.extra_dejson if extras is None else extras)
    try:
        return ChenyuConfig(**transport)
    except DifyConfigError as exc:
        raise for_connection(conn.conn_id, exc) from None


class ChenyuHook(BaseHook):
    """Read Chenyu run progress with one open-API key.

    :param chenyu_conn_id: connection of type ``chenyu``: host = API base URL (default
        ``https://www.chenyu.cn``), password = API key, extras: ``timeout``, ``verify_ssl``,
        ``ca_bundle``, ``proxy``.
    """

    conn_name_attr = "chenyu_conn_id"
    default_conn_name = CHENYU_DEFAULT_CONN_ID
    conn_type = "chenyu"
    hook_name = "Chenyu"

    # Airflow < 3.2 reads these two only where the hook class itself defines them
    # (``name in hook_class.__dict__``): they cannot come from a shared base class.
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's extra fields, for Airflow < 3.2 (3.2+ reads provider info instead)."""
        return form_widgets(CHENYU_CONNECTION_EXTRAS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The standard fields' labels and placeholders, for Airflow < 3.2."""
        return field_behaviour(FIELD_BEHAVIOUR["chenyu"])

    def __init__(self, chenyu_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chenyu_conn_id = chenyu_conn_id

    def __repr__(self) -> str:
        return f"ChenyuHook(chenyu_conn_id={self.chenyu_conn_id!r})"

    @cached_property
    def config(self) -> ChenyuConfig:
        return chenyu_config_from_connection(self.get_connection(self.chenyu_conn_id))

    async def aconfig(self) -> ChenyuConfig:
        """Connection lookup without blocking the event loop (for triggers)."""
        return await read_connection_async(self.chenyu_conn_id, self, chenyu_config_from_connection)

    def get_client(self) -> ChenyuClient:
        return ChenyuClient(self.config)

    def get_async_client(self, *, fast: bool = True) -> AsyncChenyuClient:
        return AsyncChenyuClient(self.config, transport=fast_transport(self.config) if fast else None)

    def test_connection(self) -> tuple[bool, str]:
        """Read-only check. Chenyu documents no "who am I" endpoint, so this reads the progress
        of a run order that cannot exist: "not found" proves the server answered and accepted
        the key; a refused key or an unreachable server is reported as such."""
        try:
            with ChenyuClient(dataclasses.replace(self.config, retry=NO_RETRY)) as client:
                client.get_run_progress(PROBE_RUN_ORDER_ID)
        except DifyNotFoundError:
            return True, f"Connected to Chenyu at {self.config.base_url}: the API key was accepted"
        except DifyError as exc:
            return False, str(exc)
        return True, f"Connected to Chenyu at {self.config.base_url}"


class SharedChenyuClients(AsyncClientPool[ChenyuConfig, AsyncChenyuClient]):
    """One pooled :class:`AsyncChenyuClient` per (event loop, Chenyu connection) for the whole
    triggerer process; see :class:`~dify_provider.hooks.base.AsyncClientPool`."""

    @classmethod
    async def load_config(cls, conn_id: str) -> ChenyuConfig:
        return await ChenyuHook(chenyu_conn_id=conn_id).aconfig()

    @classmethod
    def make_client(cls, config: ChenyuConfig) -> AsyncChenyuClient:
        return AsyncChenyuClient(config, transport=fast_transport(config))
