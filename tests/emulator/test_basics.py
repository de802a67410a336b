"""Unauthenticated index, app info/parameters, auth failures and unknown routes, byte-exact bodies."""

from __future__ import annotations

import httpx
import pytest

from dify_provider.testing import DifyEmulator

from .conftest import auth

NOT_FOUND = {
    "code": "not_found",
    "message": "The requested URL was not found on the server. "
    "If you entered the URL manually please check your spelling and try again.",
    "status": 404,
}


def test_index_needs_no_auth_and_reports_the_version(anon: httpx.Client) -> None:
    response = anon.get("/")
    assert response.status_code == 200
    assert response.json() == {"welcome": "Dify OpenAPI", "api_version": "v1", "server_version": "1.13.0"}


def test_configure_changes_version_until_reset(anon: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(server_version="1.12.3")
    assert anon.get("/").json()["server_version"] == "1.12.3"
    emu.reset()
    assert anon.get("/").json()["server_version"] == "1.13.0"


def test_info_has_mode_and_no_app_id(client: httpx.Client, emu: DifyEmulator) -> None:
    assert client.get("/info").json() == {
        "name": "echo",
        "description": "Upper-cases `text`; outputs echo the inputs.",
        "tags": [],
        "mode": "workflow",
        "author_name": "Dify Emulator",
    }
    assert client.get("/info", headers=auth(emu, "chat")).json()["mode"] == "advanced-chat"


def test_parameters_list_the_input_form_with_required_flags(client: httpx.Client) -> None:
    body = client.get("/parameters").json()
    assert body["user_input_form"] == [
        {"text-input": {"label": "Text", "variable": "text", "required": True, "default": "", "max_length": 256}},
        {"number": {"label": "Count", "variable": "count", "required": False, "default": ""}},
    ]
    assert body["system_parameters"]["workflow_file_upload_limit"] == 10
    assert {"opening_statement", "file_upload", "text_to_speech", "suggested_questions"} <= body.keys()


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


def test_unknown_route_and_wrong_method_use_the_envelope(client: httpx.Client) -> None:
    missing = client.get("/chat-nonsense")
    assert missing.status_code == 404
    assert missing.json() == NOT_FOUND
    wrong = client.delete("/workflows/run")
    assert wrong.status_code == 405
    assert wrong.json() == {
        "code": "method_not_allowed",
        "message": "The method is not allowed for the requested URL.",
        "status": 405,
    }
