"""SSE on POST /workflows/run: framing, event order and payloads, pings, stop, client disconnects."""

from __future__ import annotations

import re

import httpx
import pytest

from dify_provider.testing import DifyEmulator, Scenario

from .conftest import make_client, open_stream, run_body, split_frames, start_streaming_run

FRAME = re.compile(rb"^(data: \{.*\}|event: ping)$", re.DOTALL)


def test_frames_and_event_order(client: httpx.Client, emu: DifyEmulator) -> None:
    with open_stream(client, "POST", "/workflows/run", json=run_body("hi", mode="streaming")) as reader:
        assert reader.response.status_code == 200
        assert reader.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        raw = reader.read_all()
    assert raw.endswith(b"\n\n")
    for frame in split_frames(raw):
        assert FRAME.match(frame), frame
        assert b"\n" not in frame  # one line per event: JSON is dumped without newlines
    assert [e["event"] for e in reader.events] == [
        "workflow_started",
        "node_started", "node_finished",
        "node_started", "node_finished",
        "node_started", "node_finished",
        "workflow_finished",
    ]  # fmt: skip


def test_event_payloads(client: httpx.Client, emu: DifyEmulator) -> None:
    with open_stream(client, "POST", "/workflows/run", json=run_body("hi", mode="streaming", user="bob")) as r:
        r.read_all()
    events = r.events
    run_id, task_id = events[0]["workflow_run_id"], events[0]["task_id"]
    assert run_id != task_id
    assert all(e["task_id"] == task_id and e["workflow_run_id"] == run_id for e in events)

    started = events[0]["data"]
    assert started["id"] == run_id
    assert started["workflow_id"] == emu.apps["echo"].workflow_id
    assert started["reason"] == "initial"
    assert isinstance(started["created_at"], int)
    assert started["inputs"] == {
        "text": "hi",
        "count": None,
        "sys.files": [],
        "sys.user_id": "bob",
        "sys.app_id": emu.app_id(),
        "sys.workflow_id": emu.apps["echo"].workflow_id,
        "sys.workflow_run_id": run_id,
    }

    node_started, node_finished = events[1]["data"], events[2]["data"]
    assert {"id", "node_id", "node_type", "title", "index", "predecessor_node_id", "inputs", "created_at"} <= set(
        node_started
    )
    assert node_started["node_type"] == "start"
    assert node_started["index"] == 1
    assert node_finished["id"] == node_started["id"]
    assert node_finished["status"] == "succeeded"
    assert {"process_data", "outputs", "error", "elapsed_time", "execution_metadata", "finished_at"} <= set(
        node_finished
    )
    assert [e["data"]["node_type"] for e in events if e["event"] == "node_started"] == ["start", "llm", "end"]

    finished = events[-1]["data"]
    assert finished["id"] == run_id
    assert finished["status"] == "succeeded"
    assert finished["outputs"]["text"] == "HI"
    assert (finished["total_steps"], finished["total_tokens"]) == (3, 30)
    assert finished["created_by"]["user"] == "bob"
    assert {"error", "elapsed_time", "created_at", "finished_at", "exceptions_count", "files"} <= set(finished)


def test_failed_run_streams_a_failed_node(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(status="failed", error="boom"))
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        reader.read_all()
    last_node = [e for e in reader.events if e["event"] == "node_finished"][-1]["data"]
    assert (last_node["status"], last_node["error"]) == ("failed", "boom")
    assert reader.events[-1]["data"]["status"] == "failed"


def test_pings_are_bare_event_frames(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(ping_interval=0.02)
    emu.script("echo", Scenario(hold=True))
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        reader.read_until(lambda r: r.pings >= 3 and "node_finished" in r.names)
        emu.finish(reader.events[0]["workflow_run_id"])
        reader.read_all()
    assert b"event: ping\n\n" in reader.raw
    assert b"data: ping" not in reader.raw
    assert reader.names[-1] == "workflow_finished"


def test_stop_ends_the_stream_stopped_but_the_record_stays_running(client: httpx.Client, emu: DifyEmulator) -> None:
    """1.13.2 (recordings 90-94b, 99*): the stream says stopped, the run record never changes."""
    emu.script("echo", Scenario(hold=True))
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        first = reader.until_event("workflow_started").events[0]
        stop = client.post(f"/workflows/tasks/{first['task_id']}/stop", json={"user": "someone-else"})
        assert (stop.status_code, stop.json()) == (200, {"result": "success"})
        reader.read_all()
    finished = reader.events[-1]
    assert finished["event"] == "workflow_finished"
    assert (finished["data"]["status"], finished["data"]["error"]) == ("stopped", "Stopped by user.")
    assert finished["data"]["outputs"] == {}
    run_id = first["workflow_run_id"]
    detail = client.get(f"/workflows/run/{run_id}").json()
    shown = (detail["status"], detail["error"], detail["finished_at"], detail["total_steps"])
    assert shown == ("running", None, None, 0)
    assert (emu.runs[run_id].status, emu.runs[run_id].api_status) == ("stopped", "running")
    assert emu.wait_for(run_id, status="stopped").id == run_id  # the emulator's own truth


def test_stopped_run_record_switch_shows_the_stop(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(stopped_run_record="stopped")
    emu.script("echo", Scenario(hold=True))
    run_id, task_id = start_streaming_run(client)
    emu.wait_for(lambda r: r.held)
    client.post(f"/workflows/tasks/{task_id}/stop", json={"user": "u"})
    detail = client.get(f"/workflows/run/{run_id}").json()
    assert (detail["status"], detail["error"], detail["total_steps"]) == ("stopped", "Stopped by user.", 3)
    assert isinstance(detail["finished_at"], int)
    logged = client.get("/workflows/logs", params={"status": "stopped"}).json()["data"]
    assert [item["workflow_run"]["id"] for item in logged] == [run_id]


def test_stop_always_succeeds_but_needs_user(client: httpx.Client) -> None:
    assert client.post("/workflows/tasks/no-such-task/stop", json={"user": "u"}).json() == {"result": "success"}
    missing = client.post("/workflows/tasks/no-such-task/stop", json={})
    assert (missing.status_code, missing.json()["message"]) == (400, "Arg user must be provided.")


def test_run_continues_after_the_client_disconnects(client: httpx.Client, emu: DifyEmulator) -> None:
    run_id, _ = start_streaming_run(client)
    assert emu.wait_for(run_id, status="succeeded").total_steps == 3
    assert client.get(f"/workflows/run/{run_id}").json()["status"] == "succeeded"


def test_pre_113_disconnect_orphans_the_run(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(pre_113_disconnect=True)
    emu.script("echo", Scenario(steps=3, step_seconds=0.05))
    run_id, task_id = start_streaming_run(client)
    assert emu.wait_for(lambda r: r.orphaned).id == run_id
    assert client.post(f"/workflows/tasks/{task_id}/stop", json={"user": "u"}).json() == {"result": "success"}
    with pytest.raises(TimeoutError):  # its three steps would take 0.15 s; it never ends
        emu.wait_for(run_id, status=["succeeded", "stopped"], timeout=0.4)
    detail = client.get(f"/workflows/run/{run_id}").json()
    assert (detail["status"], detail["finished_at"], detail["outputs"]) == ("running", None, {})


def test_pre_113_switch_leaves_completed_streams_alone(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(pre_113_disconnect=True)
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        reader.read_all()
    assert not emu.runs[reader.events[0]["workflow_run_id"]].orphaned


def test_factory_emulator_with_old_version(dify_emulator_factory: object) -> None:
    factory = dify_emulator_factory
    assert callable(factory)
    old: DifyEmulator = factory(server_version="1.9.2", pre_113_disconnect=True, ping_interval=0.02, index_route=True)
    with make_client(old) as c:
        assert c.get("/").json()["server_version"] == "1.9.2"
        assert c.get("/info").headers["x-version"] == "1.9.2"
        run_id, _ = start_streaming_run(c, run_body(mode="streaming"))
        old.wait_for(lambda r: r.orphaned)
        # No /workflow/{id}/events before 1.14: the route itself is missing.
        missing = c.get(f"/workflow/{run_id}/events", params={"user": "tester"})
        assert (missing.status_code, missing.headers["content-type"]) == (404, "text/html; charset=utf-8")
