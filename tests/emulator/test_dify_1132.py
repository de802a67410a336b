"""The Dify 1.13.2 defaults and the switches that change them (``EmulatorConfig``).

The recordings in ``tests/contract`` pin what 1.13.2 answers; these tests pin each default and
each switch on its own, with small ``ping_interval``/``stream_idle_timeout`` values and held runs
instead of waiting for real time.
"""

from __future__ import annotations

import argparse
import time
import uuid

import httpx
import pytest

from dify_provider.testing import DifyEmulator, EmulatorConfig, NodeSpec, Scenario
from dify_provider.testing.config import add_cli_flags, from_cli

from .conftest import auth, make_client, open_stream, run_body, split_frames, start_streaming_run

MISSING_TEXT = {"inputs": {}, "user": "u", "response_mode": "streaming"}
#: A run held inside its second node, as a long http or LLM node would keep it.
IN_SECOND_NODE = Scenario(
    nodes=(
        NodeSpec(id="start", type="start", title="Start"),
        NodeSpec(id="llm", type="llm", title="Think", hold=True),
        NodeSpec(id="end", type="end", title="End"),
    ),
    tokens_per_step=5,
)


# -- the config, declared once -------------------------------------------------------------------


def test_defaults_are_dify_1132() -> None:
    assert EmulatorConfig().model_dump() == {
        "server_version": "1.13.2",
        "live_run_totals": False,
        "version_header": True,
        "index_route": False,
        "ping_interval": 10.0,
        "stream_pings": "run",
        "stream_idle_timeout": 300.0,
        "streaming_input_errors": "silent",
        "stopped_run_record": "running",
        "logs_running_runs": True,
        "pre_113_disconnect": False,
    }
    assert not EmulatorConfig().has_events_api
    assert EmulatorConfig(server_version="1.14.0").has_events_api


def test_constructor_takes_switches_and_reset_restores_them() -> None:
    emu = DifyEmulator(server_version="1.12.1", pre_113_disconnect=True, ping_interval=0.5, stream_idle_timeout=5)
    assert (emu.config.server_version, emu.config.pre_113_disconnect, emu.config.ping_interval) == ("1.12.1", True, 0.5)
    with emu:
        emu.configure(stream_idle_timeout=1, stopped_run_record="stopped")
        assert (emu.config.stream_idle_timeout, emu.config.stopped_run_record) == (1, "stopped")
        emu.reset()
        assert emu.config == EmulatorConfig(server_version="1.12.1", pre_113_disconnect=True, ping_interval=0.5,
                                            stream_idle_timeout=5)


def test_config_argument_and_switches_combine() -> None:
    base = EmulatorConfig(server_version="1.14.0", logs_running_runs=False)
    emu = DifyEmulator(config=base, logs_running_runs=True)
    assert (emu.config.server_version, emu.config.logs_running_runs) == ("1.14.0", True)
    assert DifyEmulator(config={"index_route": True}).config.index_route


def test_unknown_switches_and_bad_values_fail_loudly(emu: DifyEmulator) -> None:
    with pytest.raises(TypeError, match=r"unknown emulator switch\(es\) 'ping_intervall'; known: server_version, "):
        DifyEmulator(ping_intervall=1)
    with pytest.raises(TypeError, match="'stale_record'"):
        emu.configure(server_version="1.14.0", stale_record=True)
    with pytest.raises(ValueError, match="streaming_input_errors"):
        emu.configure(ping_interval=1, streaming_input_errors="loud")
    with pytest.raises(ValueError, match="not a version"):
        emu.configure(server_version="latest")
    with pytest.raises(ValueError, match="ping_interval"):
        emu.configure(ping_interval=0)
    assert emu.config == EmulatorConfig()  # nothing applied by a failed configure()


def test_configure_returns_the_new_config(emu: DifyEmulator) -> None:
    changed = emu.configure(server_version="1.14.0")
    assert changed is emu.config
    assert changed.has_events_api
    with pytest.raises(ValueError, match="frozen"):
        emu.config.ping_interval = 1  # type: ignore[misc]


def test_cli_has_a_flag_per_switch() -> None:
    parser = argparse.ArgumentParser()
    add_cli_flags(parser)
    args = parser.parse_args(["--server-version", "1.14.0", "--no-version-header", "--index-route",
                              "--ping-interval", "2.5", "--streaming-input-errors", "event",
                              "--no-logs-running-runs", "--pre-113-disconnect"])
    assert from_cli(args) == {
        "server_version": "1.14.0", "version_header": False, "index_route": True, "ping_interval": 2.5,
        "streaming_input_errors": "event", "logs_running_runs": False, "pre_113_disconnect": True,
    }  # fmt: skip
    assert from_cli(parser.parse_args([])) == {}
    flags = {action.dest for action in parser._actions}
    assert set(EmulatorConfig.switches()) <= flags
    with pytest.raises(SystemExit):
        parser.parse_args(["--stopped-run-record", "gone"])


# -- pings and the idle timeout --------------------------------------------------------------------


def test_a_stream_opens_with_a_ping(client: httpx.Client) -> None:
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        reader.read_all()
    frames = split_frames(reader.raw)
    assert frames[0] == b"event: ping"
    assert frames[1].startswith(b'data: {"event":"workflow_started","workflow_run_id":')
    assert reader.pings == 1  # a quick run: no tick of the 10 s schedule came


def test_pings_come_while_the_run_executes(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(ping_interval=0.02)
    emu.script("echo", Scenario(hold=True))
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        reader.read_until(lambda r: r.pings >= 4)
        emu.finish(reader.events[0]["workflow_run_id"])
        reader.read_all()
    assert reader.names[-1] == "workflow_finished"


def test_no_pings_once_nothing_executes(emu: DifyEmulator) -> None:
    """The silent stream of an input error (no run): the opening ping only, however small the interval."""
    emu.configure(ping_interval=0.01, stream_idle_timeout=0.25)
    with make_client(emu) as c, open_stream(c, "POST", "/workflows/run", json=MISSING_TEXT) as reader:
        reader.read_all()
    assert split_frames(reader.raw) == [b"event: ping"]


def test_fixed_ping_schedule_switch(emu: DifyEmulator) -> None:
    """``stream_pings="fixed"``: no ping at open, then pings on schedule whether a run executes or not."""
    emu.configure(stream_pings="fixed", ping_interval=0.02, stream_idle_timeout=0.3)
    with make_client(emu) as c, open_stream(c, "POST", "/workflows/run", json=MISSING_TEXT) as reader:
        reader.read_until(lambda r: r.pings >= 3)  # nothing executes, yet it pings
    with make_client(emu) as c, open_stream(c, "POST", "/workflows/run", json=run_body(mode="streaming")) as quick:
        quick.read_all()
    assert quick.raw.startswith(b"data: ")


def test_idle_timeout_ends_a_stream_the_run_goes_on(client: httpx.Client, emu: DifyEmulator) -> None:
    """A held run with pings 10 s apart and a 0.2 s idle timeout: the server ends the stream, the
    run is still running (and pinging keeps a stream open: test_pings_come_while_the_run_executes)."""
    emu.configure(stream_idle_timeout=0.2)
    emu.script("echo", Scenario(hold=True))
    began = time.monotonic()
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        reader.read_all()  # ends without workflow_finished
    assert time.monotonic() - began >= 0.2
    assert reader.names[-1] == "node_finished"
    run = emu.wait_for(lambda r: r.held)
    assert run.status == "running"


# -- invalid inputs in streaming mode ------------------------------------------------------------


def test_invalid_inputs_streaming_are_silent_by_default(emu: DifyEmulator) -> None:
    emu.configure(stream_idle_timeout=0.2)
    with make_client(emu) as c, open_stream(c, "POST", "/workflows/run", json=MISSING_TEXT) as reader:
        assert (reader.response.status_code, reader.response.headers["content-type"]) == (
            200, "text/event-stream; charset=utf-8")  # fmt: skip
        reader.read_all()
    assert split_frames(reader.raw) == [b"event: ping"]
    assert emu.runs == {}
    assert emu.requests_to("POST", "/workflows/run")[0].status == 200


def test_errors_outside_the_inputs_stay_http_errors_when_streaming(client: httpx.Client) -> None:
    no_user = client.post("/workflows/run", json={"inputs": {"text": "x"}, "response_mode": "streaming"})
    assert (no_user.status_code, no_user.json()["message"]) == (400, "Arg user must be provided.")
    by_id = client.post(f"/workflows/{uuid.uuid4()}/run", json=run_body(mode="streaming"))
    assert (by_id.status_code, by_id.json()["code"]) == (404, "not_found")


def test_blocking_invalid_inputs_are_400_whatever_the_switch(client: httpx.Client) -> None:
    response = client.post("/workflows/run", json={"inputs": {}, "user": "u"})
    assert (response.status_code, response.json()["message"]) == (400, "text is required in input form")


def test_streaming_input_errors_http_switch(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(streaming_input_errors="http")
    response = client.post("/workflows/run", json=MISSING_TEXT)
    assert (response.status_code, response.json()) == (
        400, {"code": "invalid_param", "message": "text is required in input form", "status": 400})  # fmt: skip


def test_streaming_input_errors_event_switch(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(streaming_input_errors="event")
    with open_stream(client, "POST", "/workflows/run", json=MISSING_TEXT) as reader:
        reader.read_all()
    assert split_frames(reader.raw)[0] == b"event: ping"
    assert reader.events == [
        {"event": "error", "status": 400, "code": "invalid_param", "message": "text is required in input form"}
    ]
    assert emu.runs == {}


# -- stop ------------------------------------------------------------------------------------------


def test_stop_inside_a_node_sends_no_node_finished(client: httpx.Client, emu: DifyEmulator) -> None:
    """Recording B0: the open node is not finished; workflow_finished counts it among the steps."""
    emu.script("echo", IN_SECOND_NODE)
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        run = emu.wait_for(lambda r: r.held)
        reader.until_event("node_started").read_until(lambda r: r.names.count("node_started") == 2)
        client.post(f"/workflows/tasks/{run.task_id}/stop", json={"user": "u"})
        reader.read_all()
    assert reader.names == ["workflow_started", "node_started", "node_finished", "node_started", "workflow_finished"]
    finished = reader.events[-1]["data"]
    assert (finished["status"], finished["error"], finished["outputs"]) == ("stopped", "Stopped by user.", {})
    assert (finished["total_steps"], finished["total_tokens"]) == (2, 5)
    assert emu.runs[run.id].total_steps == 2


def test_stop_with_another_apps_key_still_stops(client: httpx.Client, emu: DifyEmulator) -> None:
    """Recordings 99d/99e: the stop flag is keyed by task id alone."""
    emu.script("echo", Scenario(hold=True))
    run_id, task_id = start_streaming_run(client)
    emu.wait_for(lambda r: r.held)
    answer = client.post(f"/workflows/tasks/{task_id}/stop", json={"user": "u"}, headers=auth(emu, "slow"))
    assert answer.json() == {"result": "success"}
    assert emu.wait_for(run_id, status="stopped").id == run_id


def test_a_stopped_run_is_logged_as_running(client: httpx.Client, emu: DifyEmulator) -> None:
    """Recording A5 and the live server: ``status=stopped`` finds nothing, the row says running."""
    emu.script("echo", Scenario(hold=True))
    run_id, _ = start_streaming_run(client)
    emu.wait_for(lambda r: r.held)
    emu.stop(run_id)
    assert client.get("/workflows/logs", params={"status": "stopped"}).json()["data"] == []
    (row,) = client.get("/workflows/logs").json()["data"]
    assert (row["workflow_run"]["id"], row["workflow_run"]["status"], row["workflow_run"]["error"]) == (
        run_id, "running", None)  # fmt: skip


# -- logs ------------------------------------------------------------------------------------------


def test_logs_list_running_runs_by_default(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(hold=True))
    run_id, _ = start_streaming_run(client)
    emu.wait_for(lambda r: r.held)
    (row,) = client.get("/workflows/logs").json()["data"]
    run = row["workflow_run"]
    assert (run["id"], run["status"], run["total_steps"], run["finished_at"], run["elapsed_time"]) == (
        run_id, "running", 0, None, 0.0)  # fmt: skip


def test_logs_running_runs_switch_lists_only_finished_runs(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(logs_running_runs=False)
    finished = client.post("/workflows/run", json=run_body()).json()["workflow_run_id"]
    emu.script("echo", Scenario(hold=True))
    running, _ = start_streaming_run(client)
    emu.wait_for(lambda r: r.held)
    listed = client.get("/workflows/logs").json()
    assert ([item["workflow_run"]["id"] for item in listed["data"]], listed["total"]) == ([finished], 1)
    emu.finish(running)
    assert client.get("/workflows/logs").json()["total"] == 2


def test_chatflow_logs_are_empty(client: httpx.Client, emu: DifyEmulator) -> None:
    answer = client.get("/workflows/logs", headers=auth(emu, "chat"))
    assert answer.json() == {"page": 1, "limit": 20, "total": 0, "has_more": False, "data": []}


# -- run detail ------------------------------------------------------------------------------------


def test_a_run_id_that_is_no_uuid_is_a_500(client: httpx.Client) -> None:
    answer = client.get("/workflows/run/not-a-uuid")
    assert (answer.status_code, answer.json()) == (
        500, {"code": "unknown", "message": "Internal Server Error", "status": 500})  # fmt: skip
    assert client.get(f"/workflows/run/{uuid.uuid4()}").status_code == 404


def test_paused_run_detail_and_log_show_the_totals_so_far(client: httpx.Client, emu: DifyEmulator) -> None:
    headers = auth(emu, "approval")
    run_id = client.post("/workflows/run", json=run_body(), headers=headers).json()["workflow_run_id"]
    detail = client.get(f"/workflows/run/{run_id}", headers=headers).json()
    # three nodes and the human-input node started; three finished, 10 tokens each
    assert (detail["status"], detail["total_steps"], detail["total_tokens"]) == ("paused", 4, 30)
    assert (detail["outputs"], detail["finished_at"], detail["elapsed_time"]) == ({}, None, 0.0)
    (row,) = client.get("/workflows/logs", headers=headers).json()["data"]
    assert (row["workflow_run"]["status"], row["workflow_run"]["total_steps"]) == ("paused", 4)


def test_running_detail_shows_no_totals(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", IN_SECOND_NODE)
    run_id, _ = start_streaming_run(client)
    assert emu.wait_for(lambda r: r.held).total_steps == 2
    detail = client.get(f"/workflows/run/{run_id}").json()
    assert (detail["status"], detail["total_steps"], detail["total_tokens"], detail["elapsed_time"]) == (
        "running", 0, 0, 0.0)  # fmt: skip


# -- node events and scenarios with nodes ----------------------------------------------------------


def test_node_events_look_like_1132(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(nodes=(
        NodeSpec(id="start", type="start", title="Start", text_chunks=(("{text}!", ("start", "text")),)),
        NodeSpec(id="agg", type="variable-aggregator", title="Aggregator",
                 text_chunks=(("{text}", ("agg", "output")), ("\n", ("end", "answer")))),
        NodeSpec(id="end", type="end", title="End"),
    )))  # fmt: skip
    with open_stream(client, "POST", "/workflows/run", json=run_body("hi", mode="streaming")) as reader:
        reader.read_all()
    assert reader.names == [
        "workflow_started", "node_started", "text_chunk", "node_finished", "node_started", "text_chunk",
        "text_chunk", "node_finished", "node_started", "node_finished", "workflow_finished",
    ]  # fmt: skip
    chunks = [e["data"] for e in reader.events if e["event"] == "text_chunk"]
    assert chunks == [
        {"text": "hi!", "from_variable_selector": ["start", "text"]},
        {"text": "hi", "from_variable_selector": ["agg", "output"]},
        {"text": "\n", "from_variable_selector": ["end", "answer"]},
    ]
    started = [e["data"] for e in reader.events if e["event"] == "node_started"]
    assert [(n["node_id"], n["node_type"], n["title"]) for n in started] == [
        ("start", "start", "Start"), ("agg", "variable-aggregator", "Aggregator"), ("end", "end", "End"),
    ]  # fmt: skip
    assert {(n["index"], n["predecessor_node_id"], n["inputs"], n["agent_strategy"]) for n in started} == {
        (1, None, None, None)
    }
    start_finished = reader.events[3]["data"]
    assert start_finished["outputs"]["sys.timestamp"] == start_finished["inputs"]["sys.timestamp"]
    assert list(reader.events[0]) == ["event", "workflow_run_id", "task_id", "data"]


def test_release_lets_a_held_node_finish_and_the_run_go_on(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", IN_SECOND_NODE)
    run_id, _ = start_streaming_run(client)
    assert emu.wait_for(lambda r: r.held).id == run_id
    with pytest.raises(ValueError, match="not held"):
        emu.release(str(client.post("/workflows/run", json=run_body()).json()["workflow_run_id"]))
    emu.release(run_id)
    done = emu.wait_for(run_id, status="succeeded")
    assert (done.total_steps, done.total_tokens, done.held) == (3, 15, False)


def test_release_past_a_held_scenario_ends_it_with_its_status(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(hold=True, status="partial-succeeded"))
    run_id, _ = start_streaming_run(client)
    emu.wait_for(lambda r: r.held)
    admin = httpx.post(f"{emu.admin_url}/runs/{run_id}/release")
    assert admin.status_code == 200, admin.text
    assert emu.wait_for(run_id, status="partial-succeeded").held is False


def test_a_failed_node_counts_as_an_exception(client: httpx.Client, emu: DifyEmulator) -> None:
    """Recording 82: the failing http node makes exceptions_count 1."""
    emu.script("echo", Scenario(status="failed", steps=2, error="[Errno 111] Connection refused"))
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        reader.read_all()
    finished = reader.events[-1]["data"]
    assert (finished["status"], finished["exceptions_count"], finished["total_steps"]) == ("failed", 1, 2)
    assert finished["outputs"] == {}
