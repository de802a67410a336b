"""``GET /workflow/{id}/events?include_state_snapshot=true`` (a 1.14 route, so this module runs the
emulator as 1.14.0): the state Dify rebuilds from its database (``workflow_event_snapshot_service``
in the 1.13.2 source), then the live events."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from dify_provider.testing import DifyEmulator, FormActionSpec, FormSpec, Scenario

from .conftest import auth, chat_body, make_client, open_stream, run_body

REVIEW = FormSpec(node_id="review", title="Review", content="Draft {{#start.text#}}: {{#$output.comment#}}",
                  actions=(FormActionSpec(id="ok", title="OK"),))
SIGN_OFF = FormSpec(node_id="sign_off", title="Sign-off", content="Sign {{#start.text#}}?", inputs=(),
                    actions=(FormActionSpec(id="sign", title="Sign"),))
#: ``to_ignore_detail_dict``'s keys.
STARTED_KEYS = ["id", "node_id", "node_type", "title", "index", "predecessor_node_id", "inputs", "created_at",
                "extras", "iteration_id", "loop_id"]
FINISHED_KEYS = ["id", "node_id", "node_type", "title", "index", "predecessor_node_id", "inputs", "process_data",
                 "outputs", "status", "error", "elapsed_time", "execution_metadata", "created_at", "finished_at",
                 "files", "iteration_id", "loop_id"]


@pytest.fixture
def emu(dify_emulator: DifyEmulator) -> DifyEmulator:
    dify_emulator.configure(server_version="1.14.0")
    return dify_emulator


def snapshot(client: httpx.Client, run_id: str, **params: str) -> list[dict[str, Any]]:
    query = {"user": "tester", "include_state_snapshot": "true", **params}
    with open_stream(client, "GET", f"/workflow/{run_id}/events", params=query) as reader:
        reader.read_all()
    return reader.events


def test_a_paused_runs_snapshot(emu: DifyEmulator) -> None:
    emu.script("approval", Scenario(status="paused", forms=(REVIEW, SIGN_OFF)))
    with make_client(emu, "approval") as c:
        with open_stream(c, "POST", "/workflows/run", json=run_body("memo", mode="streaming")) as reader:
            reader.read_all()
        run_id = reader.events[0]["workflow_run_id"]
        emu.resume(run_id, "ok", {"comment": "fine"})
        waiting = emu.wait_for(lambda r: r.form_node_id == "sign_off", status="paused")
        frames = snapshot(c, run_id)
        record = c.get(f"/workflows/run/{run_id}").json()
    assert {tuple(frame) for frame in frames} == {("event", "task_id", "workflow_run_id", "data")}
    assert {(f["task_id"], f["workflow_run_id"]) for f in frames} == {(waiting.task_id, run_id)}
    started, *nodes, paused = frames
    assert (started["event"], started["data"]["reason"]) == ("workflow_started", "initial")
    assert started["data"]["inputs"] == json.loads(record["inputs"])  # the record's, sys.timestamp and all

    rows = [f["data"] for f in nodes if f["event"] == "node_finished"]
    assert [f["event"] for f in nodes] == ["node_started", "node_finished"] * 6
    assert [(r["node_id"], r["index"], r["status"]) for r in rows] == [
        ("start", 1, "succeeded"), ("llm_2", 2, "succeeded"), ("llm_3", 3, "succeeded"),
        ("review", 1, "succeeded"), ("llm_5", 2, "succeeded"),  # the resumed engine run counts from 1
        ("sign_off", 3, "paused"),
    ]  # fmt: skip
    assert {tuple(f["data"]) for f in nodes if f["event"] == "node_started"} == {tuple(STARTED_KEYS)}
    assert {tuple(r) for r in rows} == {tuple(FINISHED_KEYS)}
    assert {(r["inputs"], r["outputs"], r["process_data"], r["error"]) for r in rows} == {(None,) * 4}

    assert paused["event"] == "workflow_paused"
    data = paused["data"]
    assert (data["paused_nodes"], data["status"], data["elapsed_time"]) == (["sign_off"], "paused", 0.0)
    assert (data["total_steps"], data["total_tokens"]) == (record["total_steps"], record["total_tokens"])
    (reason,) = data["reasons"]
    assert (reason["node_id"], reason["form_token"]) == ("sign_off", waiting.form_token)
    assert reason["form_content"] == "Sign {{#start.text#}}?"  # the form row's template, not "Sign memo?"


def test_a_running_runs_snapshot_then_its_live_events(emu: DifyEmulator) -> None:
    """Held in a node: no live event within 0.2 s, so the task id is the run id; the open node
    has only its ``node_started``."""
    emu.script("echo", Scenario(hold=True))
    with make_client(emu) as c:
        with open_stream(c, "POST", "/workflows/run", json=run_body(mode="streaming")) as run_stream:
            run_stream.until_event("workflow_started")
        run = emu.wait_for(lambda r: r.held)
        query = {"user": "tester", "include_state_snapshot": "true"}
        with open_stream(c, "GET", f"/workflow/{run.id}/events", params=query) as reader:
            reader.read_until(lambda r: r.names.count("node_finished") == 3)
            emu.finish(run.id)
            reader.read_all()
    names = reader.names
    assert names[:7] == ["workflow_started", *["node_started", "node_finished"] * 3]
    assert names[-1] == "workflow_finished"
    assert {e["task_id"] for e in reader.events[:7]} == {run.id}
    assert reader.events[-1]["task_id"] == run.task_id  # live events are the run's own


def test_a_busy_runs_snapshot_takes_the_task_id_of_its_first_live_event(emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(steps=40, step_seconds=0.02))
    with make_client(emu) as c:
        with open_stream(c, "POST", "/workflows/run", json=run_body(mode="streaming")) as run_stream:
            run_stream.until_event("node_finished")
        run_id = run_stream.events[0]["workflow_run_id"]
        frames = snapshot(c, run_id)
    assert frames[0]["task_id"] == emu.runs[run_id].task_id
    assert frames[-1]["event"] == "workflow_finished"
    rebuilt = [f for f in frames if list(f)[1] == "task_id"]  # model dumps; the live frames name the run first
    indexes = [f["data"]["index"] for f in rebuilt if f["event"] == "node_started"]
    assert len(indexes) >= 2
    assert indexes == list(range(1, len(indexes) + 1))  # the record's sequence
    assert rebuilt[-1]["event"] != "workflow_finished"  # the live frames say 1 for every node, and end it


def test_a_paused_chatflows_snapshot(emu: DifyEmulator) -> None:
    """A chatflow adds ``message_replace`` (the saved answer) and appends its message ids."""
    emu.script("chat", Scenario(status="paused"))
    with make_client(emu, "chat") as c:
        with open_stream(c, "POST", "/chat-messages", json=chat_body("hi", mode="streaming")) as reader:
            reader.read_all()
        first = reader.events[0]
        frames = snapshot(c, first["workflow_run_id"], continue_on_pause="false")
    ids = {"conversation_id": first["conversation_id"], "message_id": first["message_id"],
           "created_at": first["created_at"]}
    assert all(list(f)[-3:] == list(ids) and {k: f[k] for k in ids} == ids for f in frames)
    started, replaced, *_ = frames
    assert (started["event"], started["data"]["reason"]) == ("workflow_started", "initial")
    assert list(replaced) == ["event", "task_id", "answer", "reason", *ids]
    assert (replaced["event"], replaced["answer"], replaced["reason"]) == ("message_replace", "Echo: hi (turn 1)", "")
    assert [f["event"] for f in frames].count("workflow_paused") == 1
    assert "message_end" not in [f["event"] for f in frames]


def test_the_snapshot_of_another_users_run_is_not_found(client: httpx.Client, emu: DifyEmulator) -> None:
    run_id = client.post("/workflows/run", json=run_body(), headers=auth(emu, "approval")).json()["workflow_run_id"]
    with make_client(emu, "approval") as c:
        response = c.get(f"/workflow/{run_id}/events", params={"user": "mallory", "include_state_snapshot": "true"})
    assert response.status_code == 404
