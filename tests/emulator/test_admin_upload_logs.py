"""The /_emulator admin API, POST /files/upload and GET /workflows/logs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from dify_provider.testing import DifyEmulator, EmulatorConfig, Scenario

from .conftest import SSL, auth, run_body, start_streaming_run


@pytest.fixture
def admin(emu: DifyEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.admin_url, verify=SSL, timeout=5) as c:
        yield c


def test_admin_lists_apps_and_is_not_recorded(admin: httpx.Client, emu: DifyEmulator) -> None:
    apps = {a["name"]: a for a in admin.get("/apps").json()}
    assert set(apps) == {"echo", "chat", "basic-chat", "agent", "completion", "slow", "approval"}
    assert apps["echo"]["api_key"] == emu.api_key()
    assert apps["echo"]["app_id"] == emu.app_id()
    assert apps["chat"]["mode"] == "advanced-chat"
    assert emu.requests == []


def test_admin_script_faults_and_requests(admin: httpx.Client, client: httpx.Client) -> None:
    assert admin.post("/script", json={"app": "echo", "scenarios": [{"status": "failed"}]}).status_code == 200
    pending = admin.post("/faults", json=[{"kind": "http_error", "status": 503, "endpoint": "GET /info"}]).json()
    assert pending == [{"kind": "http_error", "status": 503, "endpoint": "GET /info"}]
    assert client.get("/info").status_code == 503
    assert client.post("/workflows/run", json=run_body()).json()["data"]["status"] == "failed"
    recorded = admin.get("/requests", params={"method": "POST", "path": "/workflows/run"}).json()
    assert len(recorded) == 1
    assert recorded[0]["headers"]["authorization"] == "Bearer ***"
    bad = admin.post("/faults", json={"kind": "explode"})
    assert bad.status_code == 422
    assert admin.post("/script", json={"app": "nope", "scenarios": []}).status_code == 404


def test_admin_drives_held_and_paused_runs(admin: httpx.Client, client: httpx.Client, emu: DifyEmulator) -> None:
    admin.post("/script", json={"app": "echo", "scenarios": [{"hold": True}]})
    run_id, _ = start_streaming_run(client)
    waited = admin.get(f"/runs/{run_id}/wait", params={"status": "running", "timeout": 2}).json()
    assert waited["id"] == run_id
    assert waited["status"] == "running"
    assert admin.get(f"/runs/{run_id}/wait", params={"status": "succeeded", "timeout": 0.05}).status_code == 408
    finished = admin.post(f"/runs/{run_id}/finish", json={"status": "partial-succeeded"}).json()
    assert finished["status"] == "partial-succeeded"
    assert admin.post(f"/runs/{run_id}/finish", json={}).status_code == 409
    assert [r["id"] for r in admin.get("/runs", params={"app": "echo"}).json()] == [run_id]

    paused = client.post("/workflows/run", json=run_body(), headers=auth(emu, "approval")).json()
    resumed = admin.post(f"/runs/{paused['workflow_run_id']}/resume", json={"action": "approve"}).json()
    assert resumed["status"] == "running"
    assert admin.get(f"/runs/{paused['workflow_run_id']}/wait", params={"status": "succeeded"}).status_code == 200
    assert admin.get("/runs/missing").status_code == 404


def test_admin_config_and_reset(admin: httpx.Client, client: httpx.Client, emu: DifyEmulator) -> None:
    assert admin.get("/config").json() == EmulatorConfig().model_dump()  # every switch, 1.13.2 defaults
    changed = admin.post("/config", json={"server_version": "1.11.1", "index_route": True}).json()
    assert (changed["server_version"], changed["index_route"], changed["stream_idle_timeout"]) == ("1.11.1", True, 300)
    assert client.get("/").json()["server_version"] == "1.11.1"
    assert client.get("/info").headers["x-version"] == "1.11.1"
    client.post("/workflows/run", json=run_body())
    assert admin.post("/reset").json() == {"reset": True}
    assert emu.runs == {}
    assert client.get("/info").headers["x-version"] == "1.13.2"


def test_admin_config_rejects_unknown_switches_and_bad_values(admin: httpx.Client, emu: DifyEmulator) -> None:
    unknown = admin.post("/config", json={"server_version": "1.14.0", "ping_intervall": 1})
    assert unknown.status_code == 422
    assert "ping_intervall" in unknown.json()["error"]
    bad = admin.post("/config", json={"stopped_run_record": "gone"})
    assert (bad.status_code, "stopped_run_record" in bad.json()["error"]) == (422, True)
    assert emu.config == EmulatorConfig()  # nothing applied from either


def test_upload_is_201_with_a_file_object(client: httpx.Client, emu: DifyEmulator) -> None:
    response = client.post("/files/upload", files={"file": ("notes.txt", b"hello", "text/plain")}, data={"user": "u"})
    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["size"], body["extension"], body["mime_type"]) == ("notes.txt", 5, "txt", "text/plain")
    assert uuid.UUID(body["id"])
    assert isinstance(body["created_at"], int)
    assert {"created_by", "preview_url", "source_url", "tenant_id", "conversation_id", "file_key"} <= set(body)
    assert "reference" not in body  # not on the live 1.13.2 server
    anonymous = client.post("/files/upload", files={"file": ("a.png", b"x", "image/png")}).json()
    assert anonymous["created_by"] != body["created_by"]  # the shared DEFAULT-USER end user
    recorded = emu.requests[0]
    assert recorded.form == {"file": {"filename": "notes.txt", "content_type": "text/plain", "size": 5}, "user": "u"}


def test_upload_errors(client: httpx.Client) -> None:
    missing = client.post("/files/upload", files={"other": ("a.txt", b"x")}, data={"user": "u"})
    assert missing.json() == {"code": "no_file_uploaded", "message": "Please upload your file.", "status": 400}
    two = client.post("/files/upload", files=[("file", ("a.txt", b"x")), ("file", ("b.txt", b"y"))])
    assert (two.status_code, two.json()["code"]) == (400, "too_many_files")


@pytest.fixture
def logged_runs(client: httpx.Client, emu: DifyEmulator) -> list[str]:
    """Five runs, oldest first: alice ok, bob ok, alice failed, alice ok, carol still running."""
    emu.script("echo", Scenario(), Scenario(), Scenario(status="failed"), Scenario(), Scenario(hold=True))
    ids = [
        client.post("/workflows/run", json=run_body(text, user=user)).json()["workflow_run_id"]
        for text, user in [("alpha", "alice"), ("beta", "bob"), ("gamma", "alice"), ("delta", "alice")]
    ]
    ids.append(start_streaming_run(client, run_body("epsilon", user="carol", mode="streaming"))[0])
    return ids


def test_logs_newest_first_with_pagination(client: httpx.Client, logged_runs: list[str]) -> None:
    page1 = client.get("/workflows/logs", params={"limit": 2}).json()
    assert (page1["page"], page1["limit"], page1["total"], page1["has_more"]) == (1, 2, 5, True)
    assert [item["workflow_run"]["id"] for item in page1["data"]] == logged_runs[::-1][:2]
    exact = client.get("/workflows/logs", params={"limit": 5}).json()
    assert (exact["total"], len(exact["data"]), exact["has_more"]) == (5, 5, False)  # total > page*limit
    page3 = client.get("/workflows/logs", params={"limit": 2, "page": 3}).json()
    assert (len(page3["data"]), page3["has_more"]) == (1, False)
    item = page1["data"][1]
    assert item["created_from"] == "service-api"
    assert item["created_by_role"] == "end_user"
    assert item["created_by_end_user"]["session_id"] == "alice"
    assert set(item["workflow_run"]) >= {"id", "version", "status", "total_tokens", "finished_at", "exceptions_count"}
    running = page1["data"][0]["workflow_run"]
    assert (running["status"], running["total_tokens"], running["finished_at"]) == ("running", 0, None)


def test_logs_filters(client: httpx.Client, logged_runs: list[str]) -> None:
    def ids(**params: str | int) -> list[str]:
        return [item["workflow_run"]["id"] for item in client.get("/workflows/logs", params=params).json()["data"]]

    assert ids(status="failed") == [logged_runs[2]]
    assert ids(status="succeeded", created_by_end_user_session_id="alice") == [logged_runs[3], logged_runs[0]]
    assert ids(keyword="BETA") == [logged_runs[1]]
    assert ids(keyword=logged_runs[4]) == [logged_runs[4]]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert ids(created_at__after=future) == []
    assert len(ids(created_at__before=future)) == 5


@pytest.mark.parametrize(
    "params",
    [
        {"status": "running"},
        {"status": "paused"},
        {"page": 0},
        {"page": 100000},
        {"limit": 0},
        {"limit": 101},
        {"created_at__before": "yesterday"},
        {"created_by_account": "ops@example.com"},
    ],
)
def test_logs_reject_bad_filters(client: httpx.Client, params: dict[str, str | int]) -> None:
    response = client.get("/workflows/logs", params=params)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_param")


def test_logs_bounds_are_inclusive(client: httpx.Client) -> None:
    ok = client.get("/workflows/logs", params={"page": 99999, "limit": 100}).json()
    assert (ok["total"], ok["has_more"], ok["data"]) == (0, False, [])
