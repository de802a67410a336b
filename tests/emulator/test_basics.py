"""The index, X-Version, app info/parameters/site/meta, auth failures and unknown routes, byte-exact
bodies. What 1.13.2 answers is pinned by the contract test's recordings; these tests check the same
defaults directly, and the switches that change them."""

from __future__ import annotations

import httpx
import pytest

from dify_provider.testing import DifyEmulator

from .conftest import auth

#: Werkzeug's 404 page, which Flask sends for paths no route knows (recording 01).
NOT_FOUND_PAGE = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please check "
    "your spelling and try again.</p>\n"
)


def _is_not_found_page(response: httpx.Response) -> bool:
    return (response.status_code, response.headers["content-type"], response.text) == (
        404, "text/html; charset=utf-8", NOT_FOUND_PAGE,
    )  # fmt: skip


def test_index_is_flasks_404_page_on_1132(anon: httpx.Client) -> None:
    response = anon.get("/")
    assert _is_not_found_page(response)
    assert response.headers["x-version"] == "1.13.2"


def test_index_route_switch_answers_the_documented_json(anon: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(index_route=True)
    response = anon.get("/")
    assert response.status_code == 200
    assert response.json() == {"welcome": "Dify OpenAPI", "api_version": "v1", "server_version": "1.13.2"}


def test_v1_without_slash_redirects_like_werkzeug(anon: httpx.Client, emu: DifyEmulator) -> None:
    response = anon.get(f"{emu.root_url}/v1", params={"x": "1"})
    assert (response.status_code, response.headers["location"]) == (308, f"{emu.root_url}/v1/?x=1")
    assert _is_not_found_page(anon.get("/info/"))  # no slash redirects inside /v1 either


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/", None),
        ("GET", "/info", {"Authorization": "Bearer app-wrong"}),  # a 401
        ("GET", "/workflows/run/not-a-uuid", None),  # a 500
        ("GET", "/no/such/path", None),  # the HTML 404
        ("DELETE", "/workflows/run", None),  # a 405
    ],
)
def test_every_service_answer_carries_x_version(
    client: httpx.Client, method: str, path: str, headers: dict[str, str] | None
) -> None:
    response = client.request(method, path, headers=headers)
    assert response.headers["x-version"] == "1.13.2"


def test_x_version_on_streams_and_not_on_the_admin_api(client: httpx.Client, emu: DifyEmulator) -> None:
    body = {"inputs": {"text": "x"}, "user": "u", "response_mode": "streaming"}
    with client.stream("POST", "/workflows/run", json=body) as response:
        assert response.headers["x-version"] == "1.13.2"
        response.read()
    assert "x-version" not in httpx.get(f"{emu.admin_url}/apps").headers


def test_version_header_switch(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(version_header=False)
    assert "x-version" not in client.get("/info").headers


def test_configure_changes_version_until_reset(anon: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(server_version="1.12.3")
    assert anon.get("/").headers["x-version"] == "1.12.3"
    emu.reset()
    assert anon.get("/").headers["x-version"] == "1.13.2"


def test_info_has_mode_and_no_app_id(client: httpx.Client, emu: DifyEmulator) -> None:
    assert client.get("/info").json() == {
        "name": "echo",
        "description": "Upper-cases `text`; outputs echo the inputs.",
        "tags": [],
        "mode": "workflow",
        "author_name": "Dify Emulator",
    }
    assert client.get("/info", headers=auth(emu, "chat")).json()["mode"] == "advanced-chat"


def test_parameters_list_the_input_form_as_the_dsl_has_it(client: httpx.Client) -> None:
    """1.13.2 passes the start node's variables through (recordings 03, 03b): their ``type``,
    ``options`` always, no ``default`` unless set; file upload off is ``{"enabled": false}``."""
    body = client.get("/parameters").json()
    assert body["user_input_form"] == [
        {"text-input": {"variable": "text", "label": "Text", "type": "text-input", "required": True,
                        "max_length": 256, "options": []}},
        {"number": {"variable": "count", "label": "Count", "type": "number", "required": False, "options": []}},
    ]
    assert body["system_parameters"]["workflow_file_upload_limit"] == 10
    assert body["file_upload"] == {"enabled": False}
    assert body["text_to_speech"] == {"enabled": False, "language": "", "voice": ""}
    assert {"opening_statement", "suggested_questions", "sensitive_word_avoidance"} <= body.keys()


def test_site_and_meta(client: httpx.Client) -> None:
    site = client.get("/site").json()
    assert (site["title"], site["icon_type"], site["default_language"]) == ("echo", "emoji", "en-US")
    assert client.get("/meta").json() == {"tool_icons": {}}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Authorization header must be provided and start with 'Bearer'"),
        ("Bearer", "Authorization header must be provided and start with 'Bearer'"),
        ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Authorization scheme must be 'Bearer'"),
        ("Bearer app-not-a-key", "Access token is invalid"),
    ],
)
@pytest.mark.parametrize("method_path", ["GET /info", "POST /workflows/run", "GET /workflows/run/x"])
def test_401_bodies_and_www_authenticate(
    anon: httpx.Client, header: str | None, message: str, method_path: str
) -> None:
    method, path = method_path.split(" ")
    headers = {} if header is None else {"Authorization": header}
    response = anon.request(method, path, headers=headers, json={})
    assert response.status_code == 401
    assert response.json() == {"code": "unauthorized", "message": message, "status": 401}
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'


def test_scheme_is_case_insensitive(anon: httpx.Client, emu: DifyEmulator) -> None:
    response = anon.get("/info", headers={"Authorization": f"bEaReR {emu.api_key()}"})
    assert response.status_code == 200


def test_unknown_route_is_the_html_page_and_wrong_method_the_envelope(client: httpx.Client) -> None:
    """As the live 1.13.2 server answers (Flask's router vs flask-restx's 405 handler)."""
    assert _is_not_found_page(client.get("/chat-nonsense"))
    wrong = client.delete("/workflows/run")
    assert wrong.status_code == 405
    assert wrong.json() == {
        "code": "method_not_allowed",
        "message": "The method is not allowed for the requested URL.",
        "status": 405,
    }
