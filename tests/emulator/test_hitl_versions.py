"""A paused run's blocking answers and stops, by server version: Dify 1.13.2 as recorded
(``tests/contract/recordings-hitl``: 20, A3/A9, B0-B4) by default, and 1.14, where the new SDK saw a
blocking answer name its form and where a stop ends a paused run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from dify_provider.testing import DifyEmulator, Scenario

from .conftest import chat_body, make_client, open_stream, run_body

RECORDINGS = Path(__file__).parents[1] / "contract" / "recordings-hitl"
STOP_OK = {"result": "success"}


def recorded(name: str) -> Any:
    return json.loads((RECORDINGS / f"{name}.json").read_text())["response"]["body"]


@pytest.fixture
def web(emu: DifyEmulator) -> Any:
    with make_client(emu, app=None, base_url=f"{emu.root_url}/api") as c:
        yield c


def streamed_pause(emu: DifyEmulator, app: str = "approval", path: str = "/workflows/run") -> dict[str, Any]:
    """Start a run in streaming mode (the stream closes at the pause); its ``human_input_required``."""
    body = run_body(mode="streaming") if path == "/workflows/run" else chat_body("review", mode="streaming")
    with make_client(emu, app) as c, open_stream(c, "POST", path, json=body) as reader:
        reader.read_all()
    return next(e for e in reader.events if e["event"] == "human_input_required")


# -- a blocking call that pauses ------------------------------------------------------------------


def test_a_paused_blocking_run_names_no_form_on_113(emu: DifyEmulator) -> None:
    """Recording hitl/20: the shape, key for key, and no ``reasons``: a blocking client cannot learn
    the token."""
    with make_client(emu, "approval") as c:
        body = c.post("/workflows/run", json=run_body()).json()
    expected = recorded("20-run-blocking-pauses")
    assert (list(body), list(body["data"])) == (list(expected), list(expected["data"]))
    data = body["data"]
    assert (data["status"], data["outputs"], data["error"], data["finished_at"]) == ("paused", {}, None, None)
    assert data["total_steps"] == 3 + 1  # the nodes and the human-input node it waits in
    assert body["task_id"] != body["workflow_run_id"] == data["id"]
    assert emu.runs[data["id"]].form_token is not None  # the run has a token: the answer does not show it


def test_a_paused_blocking_run_names_its_form_from_114(emu: DifyEmulator) -> None:
    emu.configure(server_version="1.14.0")
    with make_client(emu, "approval") as c:
        data = c.post("/workflows/run", json=run_body()).json()["data"]
    (reason,) = data["reasons"]
    assert (data["status"], reason["TYPE"], reason["form_token"]) == (
        "paused", "human_input_required", emu.runs[data["id"]].form_token)  # fmt: skip


def test_a_blocking_chatflow_that_pauses_is_a_400_on_113(emu: DifyEmulator, web: httpx.Client) -> None:
    """Recordings hitl/A3, A9: the call fails, yet the run pauses and its message lists the form."""
    emu.script("chat", Scenario(status="paused"))
    with make_client(emu, "chat") as c:
        response = c.post("/chat-messages", json=chat_body("blocking review", mode="blocking"))
        assert (response.status_code, response.json()) == (400, recorded("A3-chat-blocking-pauses"))
        run = emu.wait_for(status="paused")
        message = emu.messages[run.message_id or ""]
        params = {"conversation_id": message.conversation_id, "user": "tester"}
        (item,) = c.get("/messages", params=params).json()["data"]
    assert (item["status"], item["query"]) == ("paused", "blocking review")
    (content,) = item["extra_contents"]
    assert (content["workflow_run_id"], content["form_definition"]["form_token"]) == (run.id, run.form_token)
    answered = web.post(f"/form/human_input/{run.form_token}", json={"inputs": {"comment": ""}, "action": "approve"})
    assert answered.json() == {}
    assert emu.wait_for(run.id, status="succeeded").outputs is not None


def test_a_blocking_chatflow_that_pauses_answers_from_114(emu: DifyEmulator) -> None:
    emu.configure(server_version="1.14.0")
    emu.script("chat", Scenario(status="paused"))
    with make_client(emu, "chat") as c:
        response = c.post("/chat-messages", json=chat_body("hi", mode="blocking"))
    assert (response.status_code, response.json()["answer"]) == (200, "Echo: hi (turn 1)")
    assert emu.wait_for(status="paused").message_id == response.json()["message_id"]


# -- a stop while paused --------------------------------------------------------------------------


def detail(emu: DifyEmulator, run_id: str, app: str = "approval") -> dict[str, Any]:
    with make_client(emu, app) as c:
        return dict(c.get(f"/workflows/run/{run_id}").json())


def test_a_stop_leaves_a_paused_run_paused_on_113(emu: DifyEmulator, web: httpx.Client) -> None:
    """Recordings hitl/B0-B4: the stop says success and changes nothing; answering the form then
    leaves the run ``running`` with no totals, for good."""
    required = streamed_pause(emu)
    run_id, token = required["workflow_run_id"], required["data"]["form_token"]
    with make_client(emu, "approval") as c:
        assert c.post(f"/workflows/tasks/{required['task_id']}/stop", json={"user": "tester"}).json() == STOP_OK
    before = detail(emu, run_id)
    assert (before["status"], before["total_steps"], before["outputs"]) == ("paused", 4, {})
    assert emu.runs[run_id].form_token == token  # still waiting for its answer

    submitted = web.post(f"/form/human_input/{token}", json={"inputs": {"comment": "after stop"}, "action": "approve"})
    assert (submitted.status_code, submitted.json()) == (200, {})
    time.sleep(0.1)  # the scenario's remaining node would have run by now
    after = detail(emu, run_id)
    expected = recorded("B4-get-run-after-submit-of-stopped")
    assert list(after) == list(expected)
    assert {k: after[k] for k in ("status", "outputs", "error", "total_steps", "total_tokens", "finished_at",
                                  "elapsed_time")} == {
        "status": "running", "outputs": {}, "error": None, "total_steps": 0, "total_tokens": 0,
        "finished_at": None, "elapsed_time": 0.0}  # fmt: skip
    stranded = emu.runs[run_id]
    assert (stranded.status, stranded.api_status, stranded.form_token) == ("stopped", "running", None)
    again = web.post(f"/form/human_input/{token}", json={"inputs": {"comment": ""}, "action": "approve"})
    assert again.json()["code"] == "human_input_form_submitted"


def test_a_stop_ends_a_paused_run_from_114(emu: DifyEmulator) -> None:
    emu.configure(server_version="1.14.0", stopped_run_record="stopped")
    required = streamed_pause(emu)
    emu.stop(required["workflow_run_id"])
    shown = detail(emu, required["workflow_run_id"])
    assert (shown["status"], shown["error"]) == ("stopped", "Stopped by user.")
    with make_client(emu, "approval") as c:
        late = c.post(f"/form/human_input/{required['data']['form_token']}",
                      json={"inputs": {"comment": ""}, "action": "approve", "user": "tester"})
    assert (late.status_code, late.json()["code"]) == (412, "human_input_form_expired")


def test_a_chatflow_stopped_while_paused_on_113(emu: DifyEmulator, web: httpx.Client) -> None:
    """The owner's chat stop sends the same flag as the workflow stop: stranded once answered."""
    emu.script("chat", Scenario(status="paused"))
    required = streamed_pause(emu, "chat", "/chat-messages")
    with make_client(emu, "chat") as c:
        assert c.post(f"/chat-messages/{required['task_id']}/stop", json={"user": "tester"}).json() == STOP_OK
    run_id = required["workflow_run_id"]
    assert detail(emu, run_id, "chat")["status"] == "paused"
    web.post(f"/form/human_input/{required['data']['form_token']}", json={"inputs": {"comment": ""},
                                                                          "action": "approve"})
    assert (emu.runs[run_id].api_status, detail(emu, run_id, "chat")["total_steps"]) == ("running", 0)


def test_a_strangers_stop_of_a_paused_chatflow_aborts_it_when_answered(emu: DifyEmulator) -> None:
    """Only the graph engine's stop command (no user check): it waits for the engine that resumes
    the run, which it aborts (our reading of the source; no recording)."""
    emu.script("chat", Scenario(status="paused"))
    required = streamed_pause(emu, "chat", "/chat-messages")
    run_id = required["workflow_run_id"]
    with make_client(emu, "chat") as c:
        assert c.post(f"/chat-messages/{required['task_id']}/stop", json={"user": "stranger"}).json() == STOP_OK
    assert emu.runs[run_id].status == "paused"
    emu.resume(run_id)
    aborted = emu.wait_for(run_id, status="stopped")
    assert (aborted.error, detail(emu, run_id, "chat")["error"]) == ("Aborted: User requested stop",) * 2
