"""GET /workflow/{id}/events (singular!) and the human-input pause/resume cycle: Dify 1.14's API
(1.13.2 has neither: 404 pages, see the end), so this module runs the emulator as 1.14.0."""

from __future__ import annotations

import json

import httpx
import pytest

from dify_provider.testing import DifyEmulator, Scenario

from .conftest import auth, data_events, open_stream, run_body, split_frames, start_streaming_run


@pytest.fixture
def emu(dify_emulator: DifyEmulator) -> DifyEmulator:
    dify_emulator.configure(server_version="1.14.0")
    return dify_emulator


def _events_url(run_id: str) -> str:
    return f"/workflow/{run_id}/events"


def test_finished_run_gives_one_frame_then_closes(client: httpx.Client, emu: DifyEmulator) -> None:
    run_id = client.post("/workflows/run", json=run_body(user="carol")).json()["workflow_run_id"]
    with open_stream(client, "GET", _events_url(run_id), params={"user": "carol"}) as reader:
        raw = reader.read_all()
    ping, frame = split_frames(raw)  # a ping as the stream opens, as in the run stream
    assert ping == b"event: ping"
    assert raw.endswith(b"\n\n")
    assert frame.startswith(b'data: {"event": "workflow_finished"')  # json.dumps, not compact
    event = json.loads(frame[6:])
    assert event["data"]["status"] == "succeeded"
    assert event["workflow_run_id"] == run_id
    assert event["task_id"] == run_id  # Dify rebuilds this frame from the DB row: task id = run id
    assert reader.response.headers["cache-control"] == "no-cache"


def test_user_must_match_the_creator(client: httpx.Client) -> None:
    run_id = client.post("/workflows/run", json=run_body(user="carol")).json()["workflow_run_id"]
    wrong = client.get(_events_url(run_id), params={"user": "mallory"})
    assert (wrong.status_code, wrong.json()) == (
        404,
        {"code": "not_found", "message": "Workflow run not found", "status": 404},
    )
    assert client.get(_events_url(run_id)).json()["message"] == "Arg user must be provided."


def test_running_run_streams_live_events(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(hold=True))
    run_id, _ = start_streaming_run(client)
    emu.wait_for(lambda r: r.held)
    with open_stream(client, "GET", _events_url(run_id), params={"user": "tester"}) as reader:
        reader.until_event("node_finished")
        emu.finish(run_id, status="failed", error="late failure")
        reader.read_all()
    assert reader.names[0] == "workflow_started"  # the current segment is replayed first
    assert reader.names[-1] == "workflow_finished"
    assert (reader.events[-1]["data"]["status"], reader.events[-1]["data"]["error"]) == ("failed", "late failure")


def test_paused_run_stream_and_form_round_trip(client: httpx.Client, emu: DifyEmulator) -> None:
    headers = auth(emu, "approval")
    with open_stream(
        client, "POST", "/workflows/run", json=run_body(mode="streaming", user="dave"), headers=headers
    ) as reader:
        reader.read_all()  # the stream closes by itself at the pause
    assert reader.names[-2:] == ["human_input_required", "workflow_paused"]
    required, paused = reader.events[-2]["data"], reader.events[-1]["data"]
    token = required["form_token"]
    assert paused["reasons"][0]["form_token"] == token
    assert paused["status"] == "paused"
    assert required["actions"][0]["id"] == "approve"
    run_id = reader.events[0]["workflow_run_id"]

    detail = client.get(f"/workflows/run/{run_id}", headers=headers).json()
    assert (detail["status"], detail["outputs"], detail["finished_at"]) == ("paused", {}, None)

    form = client.get(f"/form/human_input/{token}", headers=headers).json()
    assert set(form) == {"form_content", "inputs", "resolved_default_values", "user_actions", "expiration_time"}

    no_user = client.post(f"/form/human_input/{token}", json={"inputs": {}, "action": "approve"}, headers=headers)
    assert no_user.json()["message"] == "Arg user must be provided."
    bad = client.post(
        f"/form/human_input/{token}", json={"inputs": {}, "action": "maybe", "user": "dave"}, headers=headers
    )
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_form_data")

    ok = client.post(
        f"/form/human_input/{token}",
        json={"inputs": {"comment": "fine"}, "action": "approve", "user": "dave"},
        headers=headers,
    )
    assert (ok.status_code, ok.json()) == (200, {})
    assert emu.wait_for(run_id, status="succeeded").total_steps == 3 + 1 + 1

    again = client.post(
        f"/form/human_input/{token}", json={"inputs": {}, "action": "approve", "user": "dave"}, headers=headers
    )
    assert (again.status_code, again.json()["code"]) == (412, "human_input_form_submitted")

    with open_stream(client, "GET", _events_url(run_id), params={"user": "dave"}, headers=headers) as after:
        after.read_all()
    assert after.names == ["workflow_finished"]


def test_blocking_call_returns_at_the_pause(client: httpx.Client, emu: DifyEmulator) -> None:
    body = client.post("/workflows/run", json=run_body(), headers=auth(emu, "approval")).json()
    assert body["data"]["status"] == "paused"
    assert body["data"]["finished_at"] is None
    token = body["data"]["reasons"][0]["form_token"]
    assert emu.runs[body["workflow_run_id"]].form_token == token


def test_reconnect_after_resume_sees_the_resumption(client: httpx.Client, emu: DifyEmulator) -> None:
    headers = auth(emu, "approval")
    emu.script("approval", Scenario(status="paused", hold=True))
    run_id = client.post("/workflows/run", json=run_body(), headers=headers).json()["workflow_run_id"]
    emu.resume(run_id, inputs={"comment": "ok"})
    emu.wait_for(lambda r: r.held)
    with open_stream(client, "GET", _events_url(run_id), params={"user": "tester"}, headers=headers) as reader:
        reader.until_event("node_finished")
        emu.finish(run_id)
        reader.read_all()
    assert reader.names[:3] == ["workflow_started", "human_input_form_filled", "node_finished"]
    assert reader.events[0]["data"]["reason"] == "resumption"
    assert reader.events[1]["data"]["submitted_data"] == {"comment": "ok"}
    assert reader.names[-1] == "workflow_finished"


def test_continue_on_pause_keeps_the_stream_open(client: httpx.Client, emu: DifyEmulator) -> None:
    headers = auth(emu, "approval")
    run_id = client.post("/workflows/run", json=run_body(), headers=headers).json()["workflow_run_id"]
    params = {"user": "tester", "continue_on_pause": "true"}
    with open_stream(client, "GET", _events_url(run_id), params=params, headers=headers) as reader:
        reader.until_event("workflow_paused")
        emu.resume(run_id, action="reject")
        reader.read_all()
    assert reader.names[-1] == "workflow_finished"
    filled = next(e for e in reader.events if e["event"] == "human_input_form_filled")
    assert filled["data"]["action_id"] == "reject"


def test_snapshot_starts_at_the_start_and_ends_at_the_pause(client: httpx.Client, emu: DifyEmulator) -> None:
    headers = auth(emu, "approval")
    run_id = client.post("/workflows/run", json=run_body(), headers=headers).json()["workflow_run_id"]
    emu.script("approval")  # nothing: just proves scripting no scenarios is harmless
    params = {"user": "tester", "include_state_snapshot": "true"}
    with open_stream(client, "GET", _events_url(run_id), params=params, headers=headers) as reader:
        events = data_events(reader.read_all())
    assert next(e["event"] for e in events) == "workflow_started"
    assert events[-1]["event"] == "workflow_paused"


@pytest.mark.parametrize("version", ["1.13.2", "1.12.0"])
def test_before_114_the_routes_do_not_exist(client: httpx.Client, emu: DifyEmulator, version: str) -> None:
    """Recordings 22-22c: Flask's 404 page, even for a run that exists, and for the form API."""
    run_id = client.post("/workflows/run", json=run_body(user="carol")).json()["workflow_run_id"]
    emu.configure(server_version=version)
    assert not emu.config.has_events_api
    for method, path in [("GET", _events_url(run_id)), ("GET", "/form/human_input/tok"),
                         ("POST", "/form/human_input/tok")]:
        response = client.request(method, path, params={"user": "carol"}, json={"user": "carol"})
        assert (response.status_code, response.headers["content-type"]) == (404, "text/html; charset=utf-8")
        assert response.text.startswith("<!doctype html>")
