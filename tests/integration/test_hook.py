"""DifyHook: reading the connection, and the "Test" button's answers."""

from __future__ import annotations

import asyncio
import json

import pytest
from airflow.providers.common.compat.sdk import Connection

from dify_provider.client import DifyConfigError
from dify_provider.hooks.dify import DifyHook, SharedAsyncClients, settings_from_connection
from dify_provider.testing import DifyEmulator


def conn(**fields: object) -> Connection:
    extra = fields.pop("extra", {})
    return Connection(conn_id="c", conn_type="dify", extra=json.dumps(extra), **fields)  # type: ignore[arg-type]


def test_defaults_and_normalisation() -> None:
    s = settings_from_connection(conn(password="app-k"))
    assert s.config.base_url == "https://api.dify.ai/v1"
    assert s.console_url == "https://cloud.dify.ai"
    assert s.config.user == "airflow"
    assert s.app_id is None
    s = settings_from_connection(conn(host="dify.internal:8080/", password="app-k",
                                      extra={"timeout": "12", "ca_bundle": "/etc/ca.pem", "default_user": "etl"}))
    assert s.config.base_url == "https://dify.internal:8080/v1"
    assert s.config.timeout == 12
    assert s.config.verify == "/etc/ca.pem"
    assert s.config.user == "etl"
    assert settings_from_connection(conn(host="http://h", port=5001, password="k")).config.base_url == \
        "http://h:5001/v1"


@pytest.mark.parametrize(("host", "console"), [
    (None, "https://cloud.dify.ai"),
    ("https://api.dify.ai/v1", "https://cloud.dify.ai"),
    ("API.dify.ai", "https://cloud.dify.ai"),
    ("http://127.0.0.1:5001/v1", "http://127.0.0.1:5001"),  # self-hosted: the API's own origin
    ("dify.internal", "https://dify.internal"),
    ("https://tools.example.com/dify/v1/", "https://tools.example.com/dify"),  # behind a path prefix
])
def test_console_url_defaults_from_the_api_base_url(host: str | None, console: str) -> None:
    assert settings_from_connection(conn(host=host, password="app-k")).console_url == console
    stated = settings_from_connection(conn(host=host, password="app-k", extra={"console_url": "https://c.example/"}))
    assert stated.console_url == "https://c.example"  # what the connection says wins


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "connection 'c'.password: is empty"),
        ({"password": "k", "extra": {"timeout": "soon"}}, "connection 'c'.extra.timeout: must be a number"),
        ({"password": "k", "extra": {"timeout": -1}}, "connection 'c'.timeout: must be a positive number"),
        ({"password": "k", "host": "ftp://x"}, "connection 'c'.base_url:"),
    ],
)
def test_bad_connections_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(DifyConfigError) as info:
        settings_from_connection(conn(**fields))
    assert message in str(info.value)


def test_repr_and_settings_hide_the_key() -> None:
    s = settings_from_connection(conn(password="app-very-secret"))
    assert "app-very-secret" not in repr(s) + repr(DifyHook("c")) + str(s)


def test_test_connection_reports_version_and_mode(dify_emulator: DifyEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = DifyHook().test_connection()
    assert ok, message
    assert message.startswith("Connected to Dify 1.13.2: app ")
    # From the X-Version header of GET /info's answer: no probe of GET / (a 404 page on 1.13.2).
    assert [r.path for r in dify_emulator.requests] == ["/v1/info"]
    chat = dify_emulator.airflow_connection("chat")
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_CHAT", json.dumps(chat))
    ok, message = DifyHook("dify_chat").test_connection()
    assert ok
    assert "workflow operators need a 'workflow' app, this key's app is 'advanced-chat'" in message


def test_test_connection_without_a_version_header(dify_emulator: DifyEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    dify_emulator.configure(version_header=False)
    ok, message = DifyHook().test_connection()
    assert ok, message
    assert "Dify (version unknown: no X-Version header and no answer to GET /" in message
    assert "state the version in the connection's server_version extra" in message
    assert [r.path for r in dify_emulator.requests] == ["/v1/info", "/v1/"]  # one probe, one attempt
    dify_emulator.configure(index_route=True, server_version="1.12.3")
    ok, message = DifyHook().test_connection()
    assert message.startswith("Connected to Dify 1.12.3: app ")
    conn = dify_emulator.airflow_connection()
    conn["extra"]["server_version"] = "1.13.2"
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_DEFAULT", json.dumps(conn))
    ok, message = DifyHook().test_connection()
    assert "Dify 1.13.2 (as the connection's server_version extra states; the server did not say)" in message


def test_stated_version_must_be_a_version() -> None:
    with pytest.raises(DifyConfigError) as info:
        settings_from_connection(conn(password="k", extra={"server_version": "newest"}))
    assert "connection 'c'.extra.server_version: 'newest' is not a version" in str(info.value)
    assert settings_from_connection(conn(password="k", extra={"server_version": " v1.13 "})).stated_version == "v1.13"
    assert settings_from_connection(conn(password="k", extra={"server_version": ""})).stated_version is None


def test_test_connection_unreachable_is_false_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DIFY_DOWN", json.dumps(
        {"conn_type": "dify", "host": "http://127.0.0.1:9/v1", "password": "app-k"}))
    ok, message = DifyHook("dify_down").test_connection()
    assert not ok
    assert "could not reach Dify" in message


def test_shared_async_client_is_one_per_loop_and_connection(dify_emulator: DifyEmulator) -> None:
    async def two_lookups() -> tuple[object, object]:
        first = await SharedAsyncClients.get("dify_default")
        second = await SharedAsyncClients.get("dify_default")
        await SharedAsyncClients.close_all()
        return first, second

    a, b = asyncio.run(two_lookups())
    assert a is b
    c, _ = asyncio.run(two_lookups())
    assert c is not a  # a new loop gets its own client: clients are bound to their loop


def test_ui_mask_placeholder_is_not_a_value() -> None:
    """The UI's Add form saves a sensitive-looking extra (any name with "proxy") as "***"."""
    s = settings_from_connection(conn(password="app-k", extra={"proxy": "***", "timeout": "", "console_url": ""}))
    assert s.config.proxy is None
    assert s.config.timeout == 30
    assert s.console_url == "https://cloud.dify.ai"


def test_a_trigger_reads_the_extras_through_the_async_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 3.3's triggerer: ``aextra_dejson()`` on the loop, never ``extra_dejson`` in a thread
    (its masker messages would cross the triggerer's comms from another thread)."""
    from airflow.providers.common.compat import connection as compat_connection

    from dify_provider.hooks.base import read_connection_async

    class AsyncOnlyConnection:  # the fields the parse reads, as Airflow 3.3's SDK connection has them
        awaited = False

        def __init__(self, **fields: object) -> None:
            self.__dict__.update(fields)

        @property
        def extra_dejson(self) -> dict[str, object]:
            raise AssertionError("extra_dejson read in a trigger")

        async def aextra_dejson(self) -> dict[str, object]:
            type(self).awaited = True
            return json.loads(self.extra or "{}")

    found = AsyncOnlyConnection(conn_id="c", conn_type="dify", password="app-k", host="http://h/v1", port=None,
                                extra=json.dumps({"timeout": "7"}))

    async def get_async_connection(conn_id: str, hook: object = None) -> AsyncOnlyConnection:
        return found

    monkeypatch.setattr(compat_connection, "get_async_connection", get_async_connection)
    settings = asyncio.run(read_connection_async("c", None, settings_from_connection))
    assert AsyncOnlyConnection.awaited
    assert settings.config.timeout == 7
