"""The server version: read off the ``X-Version`` header of answers the client gets anyway (a
real 1.13.2 sends it on every answer, while its ``GET /v1/`` is a 404 page), ``GET /`` only as
a fallback, never retried."""

from __future__ import annotations

import httpx
import pytest
import respx

from dify_provider.client import DifyAuthError, DifyNotFoundError
from dify_provider.client.version import ServerVersion, VersionSource, parse_version

from . import _bodies as b
from ._harness import BASE, PING, RUN_ID, Harness, frame, sse_response, url

HTML_404 = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
VERSIONED = {"X-Version": "1.13.2"}


@pytest.mark.parametrize(("text", "numbers"), [
    ("1.13.2", (1, 13, 2)), ("v1.14", (1, 14)), ("1.13.0-rc1", (1, 13, 0)), ("2", (2,)),
    (" 1.9.10 ", (1, 9, 10)), ("main", None), ("", None), (None, None),
])
def test_parse_version(text: str | None, numbers: tuple[int, ...] | None) -> None:
    assert parse_version(text) == numbers


def test_an_unknown_version_answers_none_so_the_caller_must_choose() -> None:
    unknown = ServerVersion.unknown()
    assert not unknown.known
    assert unknown.at_least(1, 13) is None
    assert str(unknown) == "Dify (version unknown)"
    known = ServerVersion("1.12.1", VersionSource.STATED)
    assert known.at_least(1, 13) is False
    assert str(known) == "Dify 1.12.1 (the connection's server_version extra)"


def test_the_version_comes_with_any_answer(harness: Harness, router: respx.MockRouter) -> None:
    router.get(url("/info")).respond(200, json=b.APP_INFO, headers=VERSIONED)
    (info,), version = harness.calls(("get_info", ()))
    assert info.mode == "workflow"
    assert version == "1.13.2"


def test_an_error_answer_tells_the_version_too(harness: Harness, router: respx.MockRouter) -> None:
    router.get(url(f"/workflows/run/{RUN_ID}")).respond(401, json=b.envelope(401, "unauthorized", "bad"),
                                                          headers=VERSIONED)
    (error,), version = harness.calls(("get_workflow_run", (RUN_ID,)))
    assert isinstance(error, DifyAuthError)
    assert version == "1.13.2"


def test_no_header_no_version(harness: Harness, router: respx.MockRouter) -> None:
    router.get(url("/info")).respond(200, json=b.APP_INFO)
    _, version = harness.calls(("get_info", ()))
    assert version is None


def test_a_known_version_costs_no_probe(harness: Harness, router: respx.MockRouter) -> None:
    router.get(url("/parameters")).respond(200, json=b.APP_PARAMETERS, headers=VERSIONED)
    root = router.get(BASE + "/")
    (_, detected), _ = harness.calls(("get_parameters", ()), ("detect_version", ()))
    assert detected == ServerVersion("1.13.2", VersionSource.HEADER)
    assert root.call_count == 0


def test_probe_reads_the_404_page_header(harness: Harness, router: respx.MockRouter) -> None:
    # Dify 1.13.2: GET /v1/ is Werkzeug's 404 page, with the version in its header.
    root = router.get(BASE + "/").respond(404, text=HTML_404, headers={"content-type": "text/html", **VERSIONED})
    (detected,), _ = harness.calls(("detect_version", ()))
    assert detected == ServerVersion("1.13.2", VersionSource.HEADER)
    assert detected.at_least(1, 13)
    assert root.call_count == 1


def test_probe_reads_the_index_body(harness: Harness, router: respx.MockRouter) -> None:
    router.get(BASE + "/").respond(200, json={**b.SERVER_INFO, "server_version": "1.12.1"})
    (detected,), _ = harness.calls(("detect_version", ()))
    assert detected == ServerVersion("1.12.1", VersionSource.ROOT)


@pytest.mark.parametrize("answer", [
    httpx.Response(404, text=HTML_404, headers={"content-type": "text/html"}),
    httpx.Response(502, text="<html>Bad Gateway</html>"),
    httpx.ConnectError("refused"),
], ids=["404-without-header", "proxy-502", "refused"])
def test_probe_that_learns_nothing_says_unknown_after_one_request(harness: Harness, router: respx.MockRouter,
                                                                  answer: object) -> None:
    root = router.get(BASE + "/").mock(side_effect=[answer, httpx.Response(200, json=b.SERVER_INFO)])
    (detected,), _ = harness.calls(("detect_version", ()))
    assert detected == ServerVersion.unknown()
    assert root.call_count == 1
    assert harness.sleeps == []


def test_get_server_version_still_raises_on_a_404(harness: Harness, router: respx.MockRouter) -> None:
    router.get(BASE + "/").respond(404, text=HTML_404, headers={"content-type": "text/html", **VERSIONED})
    (error,), version = harness.calls(("get_server_version", ()))
    assert isinstance(error, DifyNotFoundError)
    assert "404 Not Found (HTML page, not a Dify API answer)" in str(error)
    assert version == "1.13.2"


def test_a_stream_tells_the_version_when_it_opens(harness: Harness, router: respx.MockRouter) -> None:
    started = {"event": "workflow_started", "task_id": "t", "workflow_run_id": RUN_ID,
               "data": {"id": RUN_ID, "workflow_id": "w", "inputs": {}, "created_at": 1}}
    response = sse_response(PING, frame(started), frame({**started, "event": "workflow_finished",
                                                          "data": {"id": RUN_ID, "status": "succeeded"}}))
    response.headers["X-Version"] = "1.13.2"
    router.post(url("/workflows/run")).mock(return_value=response)

    if harness.kind == "sync":
        from dify_provider.client import DifyClient

        with DifyClient(harness.config) as client:
            list(client.run_workflow({"query": "x"}, response_mode="streaming"))
            assert client.server_version == "1.13.2"
    else:
        import asyncio

        from dify_provider.client import AsyncDifyClient

        async def go() -> str | None:
            async with AsyncDifyClient(harness.config) as client:
                stream = await client.run_workflow({"query": "x"}, response_mode="streaming")
                async for _ in stream:
                    pass
                return client.server_version

        assert asyncio.run(go()) == "1.13.2"
