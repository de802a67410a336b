"""Configuration: URL normalisation, defaults, what goes on the wire, and transports."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr

from dify_provider.client import (
    DEFAULT_BASE_URL,
    AsyncDifyClient,
    ClientConfig,
    DifyAPIError,
    DifyClient,
    RetryPolicy,
    normalize_base_url,
)
from dify_provider.client._core import USER_AGENT, Call, request_args

from . import _bodies as b
from ._harness import API_KEY


@pytest.mark.parametrize(("given", "expected"), [
    ("api.dify.ai", "https://api.dify.ai/v1"),
    ("api.dify.ai/v1", "https://api.dify.ai/v1"),
    ("https://api.dify.ai/v1", "https://api.dify.ai/v1"),
    ("https://api.dify.ai/v1/", "https://api.dify.ai/v1"),
    ("https://api.dify.ai/v1///", "https://api.dify.ai/v1"),
    ("https://api.dify.ai", "https://api.dify.ai/v1"),
    ("https://api.dify.ai/", "https://api.dify.ai/v1"),
    ("  https://api.dify.ai/v1  \n", "https://api.dify.ai/v1"),
    ("http://localhost", "http://localhost/v1"),
    ("http://localhost/", "http://localhost/v1"),
    ("http://localhost:5001", "http://localhost:5001/v1"),
    ("localhost:5001", "https://localhost:5001/v1"),
    ("http://10.0.0.5/v1", "http://10.0.0.5/v1"),
    ("http://[::1]:8080", "http://[::1]:8080/v1"),
    ("https://dify.example.com/dify/v1", "https://dify.example.com/dify/v1"),
    ("https://dify.example.com/api/service/", "https://dify.example.com/api/service"),
    ("https://dify.example.com/v1?token=x#frag", "https://dify.example.com/v1"),
    ("HTTPS://API.DIFY.AI/v1", "https://api.dify.ai/v1"),
    (None, DEFAULT_BASE_URL),
    ("", DEFAULT_BASE_URL),
    ("   ", DEFAULT_BASE_URL),
])
def test_normalize_base_url(given: str | None, expected: str) -> None:
    assert normalize_base_url(given) == expected
    assert normalize_base_url(expected) == expected  # idempotent


def test_config_defaults_and_normalisation() -> None:
    config = ClientConfig(api_key=API_KEY, base_url="http://localhost/")  # type: ignore[arg-type]
    assert config.base_url == "http://localhost/v1"
    assert isinstance(config.api_key, SecretStr)
    assert config.api_key.get_secret_value() == API_KEY
    assert config.verify is True
    assert config.user == "airflow"
    assert config.stream_idle_timeout > 10
    assert config.retry == RetryPolicy()
    assert ClientConfig(api_key=SecretStr(API_KEY)).base_url == "https://api.dify.ai/v1"


def test_headers_and_timeouts_on_the_wire() -> None:
    config = ClientConfig(api_key=SecretStr(API_KEY), timeout=12.0, connect_timeout=3.0, stream_idle_timeout=50.0)
    call: Call[object] = Call("GET", "/info", parse=lambda r: r)
    plain = request_args(config, call)
    assert plain["url"] == "https://api.dify.ai/v1/info"
    assert plain["headers"] == {"Authorization": f"Bearer {API_KEY}", "User-Agent": USER_AGENT}
    assert plain["extensions"]["timeout"] == {"connect": 3.0, "read": 12.0, "write": 12.0, "pool": 12.0}
    streamed = request_args(config, call, stream=True)
    assert streamed["headers"]["Accept"] == "text/event-stream"
    assert streamed["extensions"]["timeout"]["read"] == 50.0
    anonymous = request_args(config, Call("GET", "/", parse=lambda r: r, auth=False, url="https://h/v1/"))
    assert "Authorization" not in anonymous["headers"]
    assert anonymous["url"] == "https://h/v1/"


def _handler(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=b.APP_INFO)

    return httpx.MockTransport(handle)


def test_sync_client_uses_the_given_transport_even_with_a_proxy_configured() -> None:
    seen: list[httpx.Request] = []
    config = ClientConfig(api_key=SecretStr(API_KEY), proxy="http://127.0.0.1:9", verify=False,
                          retry=RetryPolicy(max_attempts=1))
    with DifyClient(config, transport=_handler(seen)) as client:
        assert client.get_info().name == "Summarise tickets"
    assert len(seen) == 1


def test_async_client_uses_the_given_transport_even_with_a_proxy_configured() -> None:
    seen: list[httpx.Request] = []
    config = ClientConfig(api_key=SecretStr(API_KEY), proxy="http://127.0.0.1:9", verify=False,
                          retry=RetryPolicy(max_attempts=1))

    async def scenario() -> None:
        async with AsyncDifyClient(config, transport=_handler(seen)) as client:
            assert (await client.get_info()).mode == "workflow"

    asyncio.run(scenario())
    assert len(seen) == 1


def test_clients_do_not_follow_redirects() -> None:
    # A redirect would re-send the Authorization header to wherever Location points.
    hosts: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(302, headers={"Location": "https://evil.example/steal"})

    config = ClientConfig(api_key=SecretStr(API_KEY), verify=False, retry=RetryPolicy(max_attempts=1))
    with DifyClient(config, transport=httpx.MockTransport(handle)) as client, pytest.raises(DifyAPIError) as info:
        client.get_info()
    assert info.value.status == 302
    assert hosts == ["api.dify.ai"]
