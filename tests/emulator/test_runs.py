"""Starting runs: blocking bodies, validation errors, scripted outcomes, run detail."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing import DifyEmulator, Scenario

from .conftest import auth, run_body, start_streaming_run

INVALID_PARAM_USER = {"code": "invalid_param", "message": "Arg user must be provided.", "status": 400}


def _is_uuid(value: str) -> bool:
    return str(uuid.UUID(value)) == value


def test_blocking_is_the_default_mode(client: httpx.Client, emu: DifyEmulator) -> None:
    response = client.post("/workflows/run", json=run_body("hello"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"  # recordings 10, 13
    body = response.json()
    assert set(body) == {"task_id", "workflow_run_id", "data"}
    assert _is_uuid(body["task_id"])
    assert _is_uuid(body["workflow_run_id"])
    assert body["task_id"] != body["workflow_run_id"]
    data = body["data"]
    assert set(data) == {
        "id", "workflow_id", "status", "outputs", "error", "elapsed_time",
        "total_tokens", "total_steps", "created_at", "finished_at",
    }  # fmt: skip
    assert data["id"] == body["workflow_run_id"]
    assert data["workflow_id"] == emu.apps["echo"].workflow_id
    assert data["status"] == "succeeded"
    assert data["outputs"] == {"text": "HELLO", "length": 5, "echo": {"text": "hello", "count": None}}
    assert data["error"] is None
    assert (data["total_steps"], data["total_tokens"]) == (3, 30)
    assert isinstance(data["created_at"], int)
    assert data["finished_at"] >= data["created_at"]
    assert isinstance(data["elapsed_time"], float)
    assert data["elapsed_time"] > 0


def test_explicit_blocking_and_input_conversion(client: httpx.Client) -> None:
    body = run_body("abc", mode="blocking", count="5", unknown="dropped")
    data = client.post("/workflows/run", json=body).json()["data"]
    assert data["outputs"]["echo"] == {"text": "abc", "count": 5}  # numbers parsed, unknown keys dropped


def test_failed_run_is_http_200(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(status="failed", error="LLM quota blew up"))
    response = client.post("/workflows/run", json=run_body())
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["status"], data["error"], data["outputs"]) == ("failed", "LLM quota blew up", {})  # recording 80
    assert data["total_steps"] == 3  # the failed node counts
    assert emu.runs[data["id"]].outputs is None
    detail = client.get(f"/workflows/run/{data['id']}").json()
    assert (detail["status"], detail["error"], detail["outputs"]) == ("failed", "LLM quota blew up", {})


@pytest.mark.parametrize("status", ["partial-succeeded", "stopped"])
def test_other_scripted_outcomes(client: httpx.Client, emu: DifyEmulator, status: str) -> None:
    emu.script("echo", Scenario(status=status, steps=2, tokens_per_step=7))  # type: ignore[arg-type]
    data = client.post("/workflows/run", json=run_body()).json()["data"]
    assert data["status"] == status
    assert (data["total_steps"], data["total_tokens"]) == (2, 14)
    if status == "stopped":
        assert data["outputs"] == {}  # 1.13.2's workflow_finished for a stop (recording B0)
        assert data["error"]
    else:
        assert data["outputs"]["text"] == "HELLO"
        assert data["error"] is None


@pytest.mark.parametrize("user", [None, ""])
def test_missing_user(client: httpx.Client, user: str | None) -> None:
    body = {"inputs": {"text": "x"}} if user is None else {"inputs": {"text": "x"}, "user": user}
    response = client.post("/workflows/run", json=body)
    assert (response.status_code, response.json()) == (400, INVALID_PARAM_USER)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "text is required in input form"),
        ({"text": 3}, "(type 'text-input') text in input form must be a string"),
        ({"text": "x", "count": "many"}, "count in input form must be a valid number"),
        ({"text": "x" * 257}, "text in input form must be less than 256 characters"),
    ],
)
def test_invalid_inputs(client: httpx.Client, emu: DifyEmulator, inputs: dict[str, object], message: str) -> None:
    response = client.post("/workflows/run", json={"inputs": inputs, "user": "u"})
    assert (response.status_code, response.json()) == (
        400,
        {"code": "invalid_param", "message": message, "status": 400},
    )
    assert emu.runs == {}


def test_inputs_must_be_an_object(client: httpx.Client) -> None:
    response = client.post("/workflows/run", json={"user": "u"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_param"
    assert "inputs" in response.json()["message"]


def test_chatflow_key_is_not_a_workflow_app(client: httpx.Client, emu: DifyEmulator) -> None:
    response = client.post("/workflows/run", json=run_body(), headers=auth(emu, "chat"))
    assert (response.status_code, response.json()) == (
        400,
        {
            "code": "not_workflow_app",
            "message": "Please check if your app mode matches the right API route.",
            "status": 400,
        },
    )


@pytest.mark.parametrize("raw", [b"", b"this is not json", b"{bad"])
def test_body_must_be_json(client: httpx.Client, raw: bytes) -> None:
    """Empty or broken: Werkzeug's plain BadRequest on 1.13.2 (recording 45; the others live)."""
    empty = client.post("/workflows/run", content=raw, headers={"Content-Type": "application/json"})
    assert empty.json() == {
        "code": "bad_request",
        "message": "The browser (or proxy) sent a request that this server could not understand.",
        "status": 400,
    }
    form = client.post("/workflows/run", data={"user": "u"})
    assert (form.status_code, form.json()["code"]) == (415, "unsupported_media_type")


def test_run_by_workflow_id(client: httpx.Client, emu: DifyEmulator) -> None:
    workflow_id = emu.apps["echo"].workflow_id
    ok = client.post(f"/workflows/{workflow_id}/run", json=run_body())
    assert ok.json()["data"]["workflow_id"] == workflow_id
    unknown = str(uuid.uuid4())
    missing = client.post(f"/workflows/{unknown}/run", json=run_body())
    assert (missing.status_code, missing.json()) == (
        404,
        {"code": "not_found", "message": f"Workflow not found with id: {unknown}", "status": 404},
    )
    malformed = client.post("/workflows/draft/run", json=run_body())
    assert (malformed.status_code, malformed.json()["code"]) == (400, "bad_request")


def test_detail_while_running_then_finished(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(hold=True))
    run_id, _ = start_streaming_run(client, run_body("data", mode="streaming", user="alice"))
    emu.wait_for(lambda r: r.held)
    detail = client.get(f"/workflows/run/{run_id}").json()
    assert detail["status"] == "running"
    assert detail["outputs"] == {}
    assert (detail["total_steps"], detail["total_tokens"]) == (0, 0)
    assert detail["finished_at"] is None
    assert detail["elapsed_time"] == 0.0
    assert isinstance(detail["inputs"], str)
    assert json.loads(detail["inputs"]) == {
        "text": "data",
        "count": None,
        "sys.files": [],
        "sys.user_id": "alice",
        "sys.app_id": emu.app_id("echo"),
        "sys.workflow_id": emu.apps["echo"].workflow_id,
        "sys.workflow_run_id": run_id,
        "sys.timestamp": emu.runs[run_id].created_at,  # stored with the run (recordings 11, 91)
    }

    emu.finish(run_id, outputs={"answer": 42})
    done = client.get(f"/workflows/run/{run_id}").json()
    assert (done["status"], done["outputs"]) == ("succeeded", {"answer": 42})
    assert (done["total_steps"], done["total_tokens"]) == (3, 30)
    assert done["finished_at"] >= done["created_at"]
    assert emu.runs[run_id].status is WorkflowRunStatus.SUCCEEDED


def test_detail_not_found_and_scoped_to_the_app(client: httpx.Client, emu: DifyEmulator) -> None:
    run_id = client.post("/workflows/run", json=run_body()).json()["workflow_run_id"]
    expected = {"code": "not_found", "message": "Workflow run not found.", "status": 404}
    unknown = client.get(f"/workflows/run/{uuid.uuid4()}")
    assert (unknown.status_code, unknown.json()) == (404, expected)
    other_app = client.get(f"/workflows/run/{run_id}", headers=auth(emu, "chat"))  # chatflow keys may read runs
    assert (other_app.status_code, other_app.json()) == (404, expected)


def test_non_ascii_inputs(client: httpx.Client, emu: DifyEmulator) -> None:
    run_id = client.post("/workflows/run", json=run_body("café")).json()["workflow_run_id"]
    detail = client.get(f"/workflows/run/{run_id}").json()
    assert '"text": "caf\\u00e9"' in detail["inputs"]  # Dify's json.dumps default: ASCII-escaped
    assert json.loads(detail["inputs"])["text"] == "café"
    assert detail["outputs"]["text"] == "CAFÉ"
