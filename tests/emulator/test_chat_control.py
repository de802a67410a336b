"""Controlling chat messages: the stop endpoints (right user, wrong user, another app's key), held
chatflow runs finished or failed when the test decides, held messages of the other modes, client
disconnects, pings, and the admin API's view of runs and messages."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from dify_provider.testing import DifyEmulator, Scenario

from .conftest import SSL, chat_body, make_client, open_stream, split_frames

STOP_OK = {"result": "success"}


def stop(emu: DifyEmulator, app: str, task_id: str, user: str = "tester") -> httpx.Response:
    path = "completion-messages" if emu.apps[app].mode == "completion" else "chat-messages"
    with make_client(emu, app) as c:
        return c.post(f"/{path}/{task_id}/stop", json={"user": user})


def held_in(emu: DifyEmulator, app: str, node_id: str) -> Scenario:
    """The app's scenario with its run held inside ``node_id`` (started, not finished)."""
    nodes = emu.apps[app].scenario.nodes or ()
    return emu.apps[app].scenario.model_copy(
        update={"nodes": tuple(n.model_copy(update={"hold": n.id == node_id}) for n in nodes)}
    )


def messages_of(emu: DifyEmulator, app: str, conversation_id: str, user: str = "tester") -> list[dict[str, Any]]:
    with make_client(emu, app) as c:
        data: list[dict[str, Any]] = c.get("/messages", params={"conversation_id": conversation_id, "user": user}
                                           ).json()["data"]
    return data


# -- chat, agent-chat, completion: held messages and stop ------------------------------------------


@pytest.mark.parametrize("app", ["basic-chat", "agent", "completion"])
def test_stop_by_the_owner_ends_the_message(emu: DifyEmulator, app: str) -> None:
    emu.script(app, Scenario(hold=True))
    body = {**chat_body(mode="streaming"), "inputs": {"text": "x"} if app == "completion" else {}}
    path = "/completion-messages" if app == "completion" else "/chat-messages"
    with make_client(emu, app) as c, open_stream(c, "POST", path, json=body) as reader:
        held = emu.wait_for_message(lambda m: m.held)
        assert held.status == "running"
        assert stop(emu, app, held.task_id, user="someone-else").json() == STOP_OK  # a silent no-op
        assert emu.messages[held.id].status == "running"
        wrong_mode = "/chat-messages" if app == "completion" else "/completion-messages"
        with make_client(emu, app) as other:
            refused = other.post(f"{wrong_mode}/{held.task_id}/stop", json={"user": "tester"}).json()["code"]
        assert refused == ("not_chat_app" if app == "completion" else "app_unavailable")
        assert stop(emu, app, held.task_id).json() == STOP_OK
        reader.read_all()
    assert reader.names[-1] == "message_end"
    stopped = emu.messages[held.id]
    assert (stopped.status, stopped.held, stopped.usage is not None) == ("stopped", False, True)
    assert stop(emu, app, held.task_id).json() == STOP_OK  # again: nothing left to stop


def test_release_lets_a_held_message_end_normally(emu: DifyEmulator) -> None:
    emu.script("basic-chat", Scenario(hold=True))
    with make_client(emu, "basic-chat") as c, open_stream(c, "POST", "/chat-messages",
                                                          json=chat_body(mode="streaming")) as reader:
        reader.read_until(lambda r: r.names.count("message") == 3)
        held = emu.wait_for_message(lambda m: m.held)
        conversation = held.conversation_id
        listed = messages_of(emu, "basic-chat", conversation)
        assert (listed[0]["answer"], listed[0]["status"], listed[0]["retriever_resources"]) == ("", "normal", [])
        emu.release_message(held.id)
        reader.read_all()
    assert reader.names[-1] == "message_end"
    assert emu.wait_for_message(held.id, status="succeeded").answer == "Echo: hello (turn 1)"
    assert messages_of(emu, "basic-chat", conversation)[0]["answer"] == "Echo: hello (turn 1)"
    with pytest.raises(ValueError, match="already ended"):
        emu.finish_message(held.id)


def test_finish_message_failed_is_an_in_stream_error(emu: DifyEmulator) -> None:
    emu.script("basic-chat", Scenario(hold=True))
    with make_client(emu, "basic-chat") as c, open_stream(c, "POST", "/chat-messages",
                                                          json=chat_body(mode="streaming")) as reader:
        held = emu.wait_for_message(lambda m: m.held)
        emu.finish_message(held.id, "failed", error="quota gone")
        reader.read_all()
    error = reader.events[-1]
    assert error == {"event": "error", "conversation_id": held.conversation_id, "message_id": held.id,
                     "created_at": held.created_at, "code": "completion_request_error", "status": 400,
                     "message": "quota gone"}  # fmt: skip
    (listed,) = messages_of(emu, "basic-chat", held.conversation_id)
    assert (listed["status"], listed["error"], listed["answer"]) == ("error", "quota gone", "")


def test_a_failed_scenario_fails_a_blocking_chat_with_an_http_error(emu: DifyEmulator) -> None:
    emu.script("basic-chat", Scenario(status="failed", error="model timeout"))
    with make_client(emu, "basic-chat") as c:
        response = c.post("/chat-messages", json=chat_body(mode="blocking"))
    assert (response.status_code, response.json()) == (
        400, {"code": "completion_request_error", "message": "model timeout", "status": 400})  # fmt: skip


def test_a_streaming_client_hanging_up_orphans_a_basic_chat(emu: DifyEmulator) -> None:
    """Its pipeline is the request's generator: it dies with the connection, nothing is saved."""
    emu.script("basic-chat", Scenario(hold=True))
    with make_client(emu, "basic-chat") as c, open_stream(c, "POST", "/chat-messages",
                                                          json=chat_body(mode="streaming")) as reader:
        reader.until_event("message")
    message = emu.wait_for_message(lambda m: m.orphaned)
    assert (message.status, emu.messages[message.id].held) == ("running", False)
    assert messages_of(emu, "basic-chat", message.conversation_id)[0]["answer"] == ""
    assert stop(emu, "basic-chat", message.task_id).json() == STOP_OK
    assert emu.messages[message.id].status == "running"  # deaf to stop, like Dify's orphan


def test_basic_chat_pings_while_generating_none_at_open(emu: DifyEmulator) -> None:
    emu.configure(ping_interval=0.02)
    emu.script("basic-chat", Scenario(hold=True, step_seconds=0))
    with make_client(emu, "basic-chat") as c, open_stream(c, "POST", "/chat-messages",
                                                          json=chat_body(mode="streaming")) as reader:
        reader.read_until(lambda r: r.pings >= 3)
        emu.stop_message(emu.wait_for_message(lambda m: m.held).id)
        reader.read_all()
    assert split_frames(reader.raw)[0].startswith(b"data: ")
    assert reader.names[-1] == "message_end"


# -- chatflow: held runs, finish, fail, stop -------------------------------------------------------


def test_hold_a_chatflow_run_cut_the_stream_and_finish_it_later(emu: DifyEmulator) -> None:
    emu.script("chat", Scenario(hold=True))
    with make_client(emu, "chat") as c, open_stream(c, "POST", "/chat-messages",
                                                    json=chat_body(mode="streaming")) as reader:
        run_id = reader.until_event("workflow_started").events[0]["workflow_run_id"]
    run = emu.wait_for(lambda r: r.held)
    assert (run.id, run.status, run.message_id) == (run_id, "running", emu.wait_for_message().id)
    with make_client(emu, "chat") as c:
        assert c.get(f"/workflows/run/{run_id}").json()["status"] == "running"
        emu.finish(run_id)
        detail = c.get(f"/workflows/run/{run_id}").json()
    assert (detail["status"], detail["outputs"]["answer"]) == ("succeeded", "Echo: hello (turn 1)")
    message = emu.messages[run.message_id or ""]
    assert (message.status, message.workflow_run_id) == ("succeeded", run_id)
    assert messages_of(emu, "chat", message.conversation_id)[0]["answer"] == "Echo: hello (turn 1)"


def test_fail_a_held_chatflow_run(emu: DifyEmulator) -> None:
    emu.script("chat", Scenario(hold=True))
    with make_client(emu, "chat") as c, open_stream(c, "POST", "/chat-messages",
                                                    json=chat_body(mode="streaming")) as reader:
        run = emu.wait_for(lambda r: r.held)
        emu.finish(run.id, "failed", error="judged bad")
        reader.read_all()
    finished = reader.events[-1]  # 1.13.2's stream closes at workflow_finished: the error event is not sent
    assert (finished["event"], finished["data"]["status"], finished["data"]["error"]) == (
        "workflow_finished", "failed", "judged bad")  # fmt: skip
    (listed,) = messages_of(emu, "chat", finished["conversation_id"])
    assert (listed["status"], listed["error"], listed["answer"]) == ("error", "Run failed: judged bad", "")


def test_a_failing_chatflow_fails_a_blocking_call(emu: DifyEmulator) -> None:
    emu.script("chat", Scenario(status="failed", error="boom"))
    with make_client(emu, "chat") as c:
        response = c.post("/chat-messages", json=chat_body(mode="blocking"))
    assert (response.status_code, response.json()) == (
        400, {"code": "invalid_param", "message": "Run failed: boom", "status": 400})  # fmt: skip
    (run,) = emu.runs.values()
    assert (run.status, run.error) == ("failed", "boom")


def test_stop_a_chatflow_by_its_owner(emu: DifyEmulator) -> None:
    emu.script("chat", Scenario(hold=True))
    with make_client(emu, "chat") as c, open_stream(c, "POST", "/chat-messages",
                                                    json=chat_body(mode="streaming")) as reader:
        run = emu.wait_for(lambda r: r.held)
        assert stop(emu, "basic-chat", run.task_id).json() == STOP_OK  # another app's end user: no-op
        assert emu.runs[run.id].status == "running"
        assert stop(emu, "chat", run.task_id).json() == STOP_OK
        reader.read_all()
    finished = reader.events[-1]
    assert (finished["event"], finished["data"]["status"], finished["data"]["error"]) == (
        "workflow_finished", "stopped", "Stopped by user.")  # fmt: skip
    with make_client(emu, "chat") as c:
        assert c.get(f"/workflows/run/{run.id}").json()["status"] == "running"  # 1.13.2 leaves the record
    assert emu.messages[run.message_id or ""].status == "stopped"


def test_stopped_chatflow_record_switch(emu: DifyEmulator) -> None:
    emu.configure(stopped_run_record="stopped")
    emu.script("chat", Scenario(hold=True))
    with make_client(emu, "chat") as c, open_stream(c, "POST", "/chat-messages", json=chat_body(mode="streaming")):
        run = emu.wait_for(lambda r: r.held)
        stop(emu, "chat", run.task_id)
        assert c.get(f"/workflows/run/{run.id}").json()["status"] == "stopped"


def test_a_stranger_stopping_a_chatflow_aborts_it(emu: DifyEmulator) -> None:
    """The graph engine's stop command checks no user: the run is aborted (reported failed in the
    stream, stopped in the record)."""
    emu.script("chat", Scenario(hold=True))
    with make_client(emu, "chat") as c, open_stream(c, "POST", "/chat-messages",
                                                    json=chat_body(mode="streaming")) as reader:
        run = emu.wait_for(lambda r: r.held)
        assert stop(emu, "chat", run.task_id, user="stranger").json() == STOP_OK
        reader.read_all()
        detail = c.get(f"/workflows/run/{run.id}").json()
    finished = reader.events[-1]["data"]
    assert (finished["status"], finished["error"]) == ("failed", "Aborted: User requested stop")
    assert (detail["status"], detail["error"]) == ("stopped", "Aborted: User requested stop")
    assert emu.messages[run.message_id or ""].error == "Run failed: Aborted: User requested stop"


def test_the_workflow_stop_endpoint_stops_a_chatflow_task(emu: DifyEmulator) -> None:
    emu.script("chat", Scenario(hold=True))
    with make_client(emu, "chat") as c, open_stream(c, "POST", "/chat-messages",
                                                    json=chat_body(mode="streaming")) as reader:
        run = emu.wait_for(lambda r: r.held)
        with make_client(emu, "echo") as workflow:
            assert workflow.post(f"/workflows/tasks/{run.task_id}/stop", json={"user": "x"}).json() == STOP_OK
        reader.read_all()
    assert reader.events[-1]["data"]["status"] == "stopped"


def test_stop_a_blocking_chatflow_held_in_its_llm_node(emu: DifyEmulator) -> None:
    """A blocking call returns the message once stopped: the answer streamed so far, no LLM usage
    (the node never finished), the streaming metrics."""
    emu.script("chat", held_in(emu, "chat", "llm"))
    with ThreadPoolExecutor(1) as pool, make_client(emu, "chat") as c:
        blocking = pool.submit(c.post, "/chat-messages", json=chat_body(mode="blocking"))
        run = emu.wait_for(lambda r: r.held)
        assert emu.messages[run.message_id or ""].answer == "Echo: hello (turn 1)"
        stop(emu, "chat", run.task_id)
        body = blocking.result(timeout=5).json()
    assert body["answer"] == "Echo: hello (turn 1)"
    usage = body["metadata"]["usage"]
    assert (usage["total_tokens"], usage["total_price"], usage["time_to_first_token"]) == (0, "0.0", 0.05)
    assert emu.runs[run.id].total_steps == 3  # start, knowledge, the LLM it was stopped in


def test_release_a_chatflow_held_in_a_node(emu: DifyEmulator) -> None:
    emu.script("chat", held_in(emu, "chat", "knowledge"))
    with make_client(emu, "chat") as c, open_stream(c, "POST", "/chat-messages",
                                                    json=chat_body(mode="streaming")) as reader:
        run = emu.wait_for(lambda r: r.held)
        assert "message" not in reader.read_until(lambda r: r.names.count("node_started") == 2).names
        emu.release_message(run.message_id or "")  # a chatflow message's release is its run's
        reader.read_all()
    assert reader.names[-2:] == ["message_end", "workflow_finished"]


# -- the admin API ---------------------------------------------------------------------------------


def test_admin_api_lists_chatflow_runs_and_messages(emu: DifyEmulator) -> None:
    emu.script("chat", Scenario(hold=True))
    emu.script("basic-chat", Scenario(hold=True))
    with httpx.Client(base_url=emu.admin_url, timeout=5, verify=SSL) as admin, make_client(emu, "chat") as chat, \
            open_stream(chat, "POST", "/chat-messages", json=chat_body(mode="streaming")), \
            make_client(emu, "basic-chat") as basic, \
            open_stream(basic, "POST", "/chat-messages", json=chat_body("hey", mode="streaming")) as reader:
        run = emu.wait_for(lambda r: r.held)
        (listed_run,) = admin.get("/runs", params={"app": "chat"}).json()
        assert (listed_run["id"], listed_run["message_id"]) == (run.id, run.message_id)
        flow = admin.get(f"/messages/{run.message_id}").json()
        assert (flow["workflow_run_id"], flow["mode"], flow["status"]) == (run.id, "advanced-chat", "running")
        basic_id = admin.get("/messages", params={"app": "basic-chat"}).json()[0]["id"]
        held = admin.get(f"/messages/{basic_id}/wait", params={"status": "running"}).json()
        assert (held["query"], held["workflow_run_id"]) == ("hey", None)
        emu.wait_for_message(basic_id, status="running")
        emu.wait_for_message(lambda m: m.id == basic_id and m.held)
        assert admin.post(f"/messages/{basic_id}/finish", json={"status": "failed", "error": "no"}).json()[
            "status"] == "failed"
        reader.read_all()
        assert reader.events[-1]["event"] == "error"
        assert admin.post(f"/messages/{run.message_id}/release").status_code == 200
        assert admin.get(f"/messages/{run.message_id}/wait", params={"status": "succeeded"}).status_code == 200
        assert admin.get("/messages", params={"status": "failed"}).json()[0]["id"] == basic_id
        assert admin.get("/messages/nope").status_code == 404
    emu.reset()
    assert (emu.messages, emu.runs) == ({}, {})
