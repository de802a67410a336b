"""What every backend's hook shares: reading the transport part of a connection, and the
triggerer-wide pool of async clients.

A backend's hook adds only its own connection fields and its client classes; the rules for the
key, base URL, timeout, TLS and proxy (and their error messages naming the field to fix) are the
same for all backends, so they are written here once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from airflow.providers.common.compat.sdk import Connection
from pydantic import SecretStr

from dify_provider.client.errors import DifyConfigError

ParsedT = TypeVar("ParsedT")


async def read_connection_async(conn_id: str, hook: Any,
                                parse: Callable[[Connection, Mapping[str, Any] | None], ParsedT]) -> ParsedT:
    """A connection read and parsed without blocking the event loop, for triggers.

    Reading the extras registers them with the secrets masker, which in a triggerer talks to the
    supervisor. Airflow 3.3's connection has ``aextra_dejson()`` for that: awaited on the loop,
    and ``parse`` gets the extras and sends nothing, instead of the synchronous ``extra_dejson``
    sending the masker's messages from another thread while other triggers await their own (the
    pattern behind apache/airflow#65286's stalls). Before 3.3 the parse runs in asgiref's
    ``sync_to_async`` thread, not on the loop: there ``extra_dejson`` goes through
    ``async_to_sync``, which raises "You cannot use AsyncToSync in the same thread as an async
    event loop" on the loop in Airflow 3.0 (apache/airflow#63760; 3.1 routes it through greenback)."""
    from airflow.providers.common.compat.connection import get_async_connection
    from asgiref.sync import sync_to_async

    conn = await get_async_connection(conn_id, hook=hook)
    aextra_dejson = getattr(conn, "aextra_dejson", None)
    if aextra_dejson is not None:
        extras = await aextra_dejson()
        return parse(conn, extras)
    return await sync_to_async(parse)(conn, None)


def extra_value(extras: Mapping[str, Any], name: str, fields: Mapping[str, Mapping[str, Any]]) -> Any:
    """An extra's value, or its declared default when missing or empty (the UI stores "").

    A value of only asterisks is the UI's mask for a field it considers sensitive (Airflow masks
    any extra whose name contains "proxy"): the Add form saves that mask, not a value.
    """
    value = extras.get(name)
    if value is None or value == "" or (isinstance(value, str) and set(value) == {"*"}):
        return fields[name]["schema"]["default"]
    return value


def transport_kwargs(conn: Connection, fields: Mapping[str, Mapping[str, Any]], *, key_hint: str,
                     extras: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for a :class:`~dify_provider.client._core.ServiceConfig` subclass, read
    from the connection's password, host, port and the transport ``extras`` (``timeout``,
    ``verify_ssl``, ``ca_bundle``, ``proxy``). Every mistake names the connection field to fix."""
    conn_id = conn.conn_id
    key = conn.password or ""
    if not key.strip():
        raise DifyConfigError(f"connection {conn_id!r}.password", f"is empty: {key_hint}")
    try:
        timeout = float(extra_value(extras, "timeout", fields))
    except (TypeError, ValueError):
        raise DifyConfigError(f"connection {conn_id!r}.extra.timeout", "must be a number of seconds") from None
    verify: bool | str = bool(extra_value(extras, "verify_ssl", fields))
    ca_bundle = str(extra_value(extras, "ca_bundle", fields) or "")
    if ca_bundle and verify:
        verify = ca_bundle
    host = conn.host or ""
    if host and conn.port and "://" in host and host.count(":") == 1:
        host = f"{host.rstrip('/')}:{conn.port}"
    return {
        "api_key": SecretStr(key),
        "base_url": host,
        "timeout": timeout,
        "verify": verify,
        "proxy": str(extra_value(extras, "proxy", fields) or "") or None,
    }


def form_widgets(fields: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The connection form's extra fields as the WTForms fields Airflow < 3.2 asks a hook for
    (3.2+ reads ``conn-fields`` from provider info and never calls this), built from the same
    declaration.

    Airflow 3.0/3.1's UI stands mock classes in for the WTForms fields, which it can only do where
    WTForms is importable: hence our ``wtforms`` dependency. Flask-Babel and Flask-AppBuilder come
    with the FAB provider (always there on 2.11, optional on 3.x); without them the labels stay plain
    strings and the fields keep WTForms' default widget, which the 3.x UI ignores anyway."""
    from wtforms import BooleanField, PasswordField, StringField

    try:
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
    except ImportError:  # Airflow 3.0/3.1 without the FAB provider
        BS3PasswordFieldWidget = BS3TextFieldWidget = None
        lazy_gettext = str

    widgets: dict[str, Any] = {}
    for name, spec in fields.items():
        schema = spec["schema"]
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        label, description, default = lazy_gettext(spec["label"]), spec.get("description", ""), schema.get("default")
        if "boolean" in types:
            widgets[name] = BooleanField(label, description=description, default=default)
            continue
        secret = schema.get("format") == "password"
        field, widget = (PasswordField, BS3PasswordFieldWidget) if secret else (StringField, BS3TextFieldWidget)
        widgets[name] = field(label, widget=None if widget is None else widget(), description=description,
                              default=None if default is None else str(default))
    return widgets


def field_behaviour(behaviour: Mapping[str, Any]) -> dict[str, Any]:
    """Provider info's ``ui-field-behaviour`` (kebab-case keys, which 3.2+ reads) as a hook's
    ``get_ui_field_behaviour`` must return it: Airflow < 3.2 validates snake_case keys
    (``hidden_fields`` is required) and drops the whole behaviour otherwise."""
    return {key.replace("-", "_"): value for key, value in behaviour.items()}


def for_connection(conn_id: str | None, exc: DifyConfigError) -> DifyConfigError:
    """Re-address a config error to the connection field it came from."""
    return DifyConfigError(f"connection {conn_id!r}.{exc.field}", str(exc).split(": ", 1)[-1])


class _AsyncClient(Protocol):
    async def aclose(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_AsyncClient)
ConfigT = TypeVar("ConfigT")

log = logging.getLogger(__name__)


@dataclass
class _Entry(Generic[ConfigT, ClientT]):
    client: ClientT | None = None
    config: ConfigT | None = None
    fetched: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # only for the first load
    refresh: asyncio.Task[None] | None = None  # referenced here so it is neither collected nor doubled


class AsyncClientPool(ABC, Generic[ConfigT, ClientT]):
    """One pooled async client per (event loop, connection) for the whole triggerer process.

    A triggerer may hold thousands of waiting triggers; a client each (or, worse, one per poll)
    costs a handshake and a pool per trigger. Sharing one per connection bounds sockets by the
    pool size. Keyed by the loop object (weakly), because a client is bound to the loop that
    created it.

    The connection is re-read every ``refresh_seconds`` so a rotated key is picked up without
    restarting the triggerer. That lookup may take seconds (a secrets backend), so it runs in a
    background task while every poll keeps using the current client: otherwise all triggers
    would stall together at each refresh. A failed re-read keeps the current client (a backend
    hiccup must not fail triggers that were fine) and is retried a period later. A client
    replaced because its config changed is closed only after ``retire_seconds``, since triggers
    may have requests in flight on it; keep that above the request timeout, and below
    ``refresh_seconds`` (the same task retires it, and the next refresh waits for that task).
    Only the first lookup of a connection is awaited by its callers, and its errors are theirs:
    a trigger must fail visibly on a missing connection.

    A backend subclasses this with :meth:`load_config` (async connection lookup) and
    :meth:`make_client`; each subclass keeps its own clients.
    """

    refresh_seconds: ClassVar[float] = 300.0
    retire_seconds: ClassVar[float] = 120.0
    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Entry[Any, Any]]]]

    _keepers: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._by_loop = weakref.WeakKeyDictionary()
        cls._keepers = weakref.WeakKeyDictionary()

    @classmethod
    @abstractmethod
    async def load_config(cls, conn_id: str) -> ConfigT:
        """Read the connection without blocking the loop; the config must compare by value."""

    @classmethod
    @abstractmethod
    def make_client(cls, config: ConfigT) -> ClientT:
        """A new pooled async client for ``config``."""

    @classmethod
    async def get(cls, conn_id: str) -> ClientT:
        loop = asyncio.get_running_loop()
        if loop not in cls._keepers:
            cls._keepers[loop] = loop.create_task(cls._close_when_loop_ends(), name=f"{cls.__name__} closer")
        entries = cls._by_loop.setdefault(loop, {})
        entry: _Entry[ConfigT, ClientT] | None = entries.get(conn_id)
        if entry is None:
            entry = entries[conn_id] = _Entry()
        client = entry.client
        if client is None:
            return await cls._first_load(conn_id, entry)
        if time.monotonic() - entry.fetched >= cls.refresh_seconds and (entry.refresh is None or entry.refresh.done()):
            entry.refresh = asyncio.create_task(cls._refresh(conn_id, entry), name=f"refresh connection {conn_id}")
        return client

    @classmethod
    async def _first_load(cls, conn_id: str, entry: _Entry[ConfigT, ClientT]) -> ClientT:
        async with entry.lock:  # concurrent first callers share one lookup
            if entry.client is None:
                config = await cls.load_config(conn_id)
                entry.client, entry.config, entry.fetched = cls.make_client(config), config, time.monotonic()
            return entry.client

    @classmethod
    async def _refresh(cls, conn_id: str, entry: _Entry[ConfigT, ClientT]) -> None:
        try:
            config = await cls.load_config(conn_id)
            new = None if config == entry.config else cls.make_client(config)
        except Exception as exc:
            # The connection id and the error only, no config and no traceback: the key must never reach the log.
            log.warning(
                "Could not re-read connection %r (%s: %s); keeping its current client, retrying in %.0f s",
                conn_id,
                type(exc).__name__,
                exc,
                cls.refresh_seconds,
            )
            entry.fetched = time.monotonic()
            return
        entry.fetched = time.monotonic()
        if new is None:
            return
        old, entry.client, entry.config = entry.client, new, config
        try:
            await asyncio.sleep(cls.retire_seconds)
        finally:  # also on cancellation (close_all, loop shutdown): the old client is closed either way
            if old is not None:
                await old.aclose()

    @classmethod
    async def _close_when_loop_ends(cls) -> None:
        """Close this loop's clients when the loop ends. ``asyncio.run`` cancels the tasks still
        pending when its coroutine returns, and ``dag.test()`` runs each deferral in an
        ``asyncio.run`` of its own: without this, every deferred task tested that way printed
        aiohttp's "Unclosed client session" errors. A triggerer's loop never ends: it waits."""
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await cls.close_all()

    @classmethod
    async def close_all(cls) -> None:
        """Close this loop's clients now (tests, benchmarks); see :meth:`_close_when_loop_ends`."""
        loop = asyncio.get_running_loop()
        keeper = cls._keepers.pop(loop, None)
        entries = cls._by_loop.pop(loop, {})
        tasks = [entry.refresh for entry in entries.values() if entry.refresh is not None]
        if keeper is not None and keeper is not asyncio.current_task():
            tasks.append(keeper)
        for task in tasks:
            task.cancel()  # a cancelled refresh closes the client it was retiring
        await asyncio.gather(*tasks, return_exceptions=True)
        for entry in entries.values():
            if entry.client is not None:
                await entry.client.aclose()
