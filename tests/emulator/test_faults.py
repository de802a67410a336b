"""Scripted faults: error envelopes, FIFO/times/scoping, broken connections, timeouts, bad streams."""

from __future__ import annotations

import errno
import json

import httpx
import pytest

from dify_provider.testing import DifyEmulator, Fault, Scenario

from .conftest import auth, make_client, open_stream, run_body, split_frames

RUN = "POST /workflows/run"
DETAIL = "GET /workflows/run/{id}"


def test_429_too_many_requests_rejects_without_creating_a_run(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.too_many_requests(endpoint=RUN))
    rejected = client.post("/workflows/run", json=run_body())
    assert rejected.status_code == 429
    assert rejected.json() == {
        "code": "too_many_requests",
        "message": "Too many requests. Please try again later. The current maximum concurrent requests allowed is 10.",
        "status": 429,
    }
    assert "retry-after" not in rejected.headers
    assert emu.runs == {}
    assert client.post("/workflows/run", json=run_body()).status_code == 200  # times=1: gone
    assert len(emu.runs) == 1


def test_429_with_retry_after(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.too_many_requests(endpoint=RUN, retry_after=3))
    response = client.post("/workflows/run", json=run_body())
    assert (response.status_code, response.headers["retry-after"]) == (429, "3")


def test_429_rate_limit_error(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.rate_limit(endpoint=RUN))
    response = client.post("/workflows/run", json=run_body())
    assert (response.status_code, response.json()) == (
        429,
        {"code": "rate_limit_error", "message": "Rate Limit Error", "status": 429},
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "internal_server_error"), (502, "bad_gateway"), (503, "service_unavailable"), (504, "gateway_timeout")],
)
def test_server_errors_have_werkzeug_codes(client: httpx.Client, emu: DifyEmulator, status: int, code: str) -> None:
    emu.inject(Fault.http_error(status, endpoint=RUN))
    response = client.post("/workflows/run", json=run_body())
    assert response.status_code == status
    body = response.json()
    assert (body["code"], body["status"]) == (code, status)
    assert body["message"]
    assert emu.runs == {}


def test_raw_body_override(client: httpx.Client, emu: DifyEmulator) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    emu.inject(Fault.http_error(502, body=page, endpoint="GET /info"))
    response = client.get("/info")
    assert (response.status_code, response.text, response.headers["content-type"].split(";")[0]) == (
        502,
        page,
        "text/html",
    )


def test_fifo_order_times_and_wildcards(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(
        Fault.http_error(503, endpoint="GET /info", times=2),
        Fault.too_many_requests(endpoint="GET /info"),
        Fault.http_error(500),  # any endpoint, consulted after the endpoint's own queue
    )
    assert [client.get("/info").status_code for _ in range(5)] == [503, 503, 429, 500, 200]


def test_faults_scoped_to_an_app(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.http_error(503, endpoint="GET /info", app="echo", times=None))
    assert client.get("/info", headers=auth(emu, "chat")).status_code == 200
    assert [client.get("/info").status_code for _ in range(3)] == [503, 503, 503]
    emu.reset()
    assert client.get("/info").status_code == 200


def test_bad_fault_specs_fail_loudly(emu: DifyEmulator) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        emu.inject(Fault.drop(endpoint="POST /workflow/run"))
    with pytest.raises(ValueError, match="after_run_created"):
        emu.inject(Fault.drop(endpoint="GET /info", after_run_created=True))
    with pytest.raises(ValueError, match="unknown app"):
        emu.inject(Fault.drop(app="nope"))
    with pytest.raises(ValueError, match="seconds > 0"):
        Fault(kind="delay")


def test_drop_gives_an_incomplete_response(client: httpx.Client, emu: DifyEmulator) -> None:
    run_id = client.post("/workflows/run", json=run_body()).json()["workflow_run_id"]
    emu.inject(Fault.drop(endpoint="GET /workflows/run/{workflow_run_id}"))
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(f"/workflows/run/{run_id}")
    assert client.get(f"/workflows/run/{run_id}").status_code == 200


def test_drop_before_and_after_run_creation(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.drop(endpoint=RUN))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/workflows/run", json=run_body())
    assert emu.runs == {}
    emu.inject(Fault.drop(endpoint=RUN, after_run_created=True))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/workflows/run", json=run_body())
    assert len(emu.runs) == 1  # the ambiguous start: an error, yet a run


def test_reset_is_a_tcp_rst(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.reset(endpoint=RUN))
    with pytest.raises(httpx.ReadError) as caught:
        client.post("/workflows/run", json=run_body())
    assert isinstance(caught.value.__context__, ConnectionResetError) or "reset" in str(caught.value).lower()
    assert emu.runs == {}
    assert getattr(caught.value.__context__, "errno", errno.ECONNRESET) == errno.ECONNRESET


def test_delay_past_the_client_timeout_before_the_run(emu: DifyEmulator) -> None:
    emu.inject(Fault.delay(0.3, endpoint=RUN))
    with make_client(emu, timeout=0.1) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/workflows/run", json=run_body())
    # The server noticed nobody was waiting any more and did not start the run.
    emu.wait_for_requests("POST", "/workflows/run", where=lambda r: r.status is not None)
    assert emu.runs == {}


def test_delay_after_run_created_is_the_ambiguous_start(emu: DifyEmulator) -> None:
    emu.inject(Fault.delay(2.0, endpoint=RUN, after_run_created=True))
    with make_client(emu, timeout=0.2) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/workflows/run", json=run_body(mode="streaming"))
    run = emu.wait_for(status="succeeded")  # it ran anyway
    assert run.app == "echo"
    assert len(emu.requests_to("POST", "/workflows/run")) == 1


def test_malformed_json(client: httpx.Client, emu: DifyEmulator) -> None:
    run_id = client.post("/workflows/run", json=run_body()).json()["workflow_run_id"]
    emu.inject(Fault.malformed_json(endpoint=DETAIL))
    response = client.get(f"/workflows/run/{run_id}")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert response.text.startswith('{"id":"')
    assert run_id in response.text


def test_malformed_json_after_run_created(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.malformed_json(endpoint=RUN, after_run_created=True))
    response = client.post("/workflows/run", json=run_body())
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert response.status_code == 200
    assert len(emu.runs) == 1


def test_silent_stream_sends_nothing_not_even_pings(emu: DifyEmulator) -> None:
    emu.configure(ping_interval=0.02)
    emu.inject(Fault.silent_stream(after_events=2, endpoint=RUN))
    with (
        make_client(emu, timeout=httpx.Timeout(5.0, read=0.25)) as c,
        open_stream(c, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader,
        pytest.raises(httpx.ReadTimeout),
    ):
        reader.read_all()
    assert reader.names == ["workflow_started", "node_started"]
    assert reader.pings <= 1  # at most one ping could precede the first two events
    assert emu.wait_for(reader.events[0]["workflow_run_id"], status="succeeded")  # the run is unaffected


def test_silence_for_a_while_then_the_rest(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.silent_stream(after_events=1, seconds=0.1, endpoint=RUN))
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        reader.read_all()
    assert reader.names[0] == "workflow_started"
    assert reader.names[-1] == "workflow_finished"
    assert len(reader.names) == 8


def test_cut_stream_writes_half_a_frame_then_closes(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.cut_stream(after_events=2, endpoint=RUN))
    with (
        open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        reader.read_all()
    assert reader.names == ["workflow_started", "node_started"]
    tail = reader.raw.split(b"\n\n")[-1]
    assert tail.startswith(b'data: {"event":"node_finished"')
    assert not tail.endswith(b"}")
    assert emu.wait_for(reader.events[0]["workflow_run_id"], status="succeeded")


def test_stream_error_after_start_ends_the_stream_and_fails_the_run(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(hold=True))
    emu.inject(Fault.stream_error("provider_quota_exceeded", "Your quota for Dify Hosted Model Provider has been "
                                  "exhausted.", status=400, endpoint=RUN))
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        assert reader.response.status_code == 200  # the error comes after the headers: only the event says it
        reader.read_all()
    assert reader.names == ["workflow_started", "error"]
    run_id = reader.events[0]["workflow_run_id"]
    assert reader.events[1] == {"event": "error", "workflow_run_id": run_id, "status": 400,
                                "code": "provider_quota_exceeded",
                                "message": "Your quota for Dify Hosted Model Provider has been exhausted."}
    detail = client.get(f"/workflows/run/{run_id}").json()
    assert (detail["status"], detail["error"]) == ("failed", "Your quota for Dify Hosted Model Provider has been "
                                                             "exhausted.")


def test_stream_error_before_start_names_no_run(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.stream_error("invalid_param", "text is required in input form", status=400, after_events=0,
                                  endpoint=RUN))
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        reader.read_all()
    assert reader.events == [{"event": "error", "status": 400, "code": "invalid_param",
                              "message": "text is required in input form"}]
    # Blocking requests never see stream faults; the fault fired once and is gone.
    assert client.post("/workflows/run", json=run_body()).json()["data"]["status"] == "succeeded"


def test_stream_error_over_the_admin_api(client: httpx.Client, emu: DifyEmulator) -> None:
    admin = httpx.post(f"{emu.admin_url}/faults", json={"kind": "stream_error", "endpoint": RUN, "after_events": 0,
                                                        "status": 500, "code": "internal_server_error",
                                                        "message": "worker lost"})
    assert admin.status_code < 300, admin.text
    with open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader:
        reader.read_all()
    assert [(e["event"], e["code"], e["message"]) for e in reader.events] == [("error", "internal_server_error",
                                                                               "worker lost")]


def test_stream_faults_wait_for_a_stream(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.cut_stream(after_events=0, endpoint=RUN))
    assert client.post("/workflows/run", json=run_body()).json()["data"]["status"] == "succeeded"
    with (
        open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        reader.read_all()
    assert split_frames(reader.raw) == [b"event: ping"]  # the ping a stream opens with, then the cut
    assert reader.raw.startswith(b'event: ping\n\ndata: {"event":"workflow_st')


def test_cut_on_the_events_endpoint_and_pre_113_orphaning(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.configure(pre_113_disconnect=True, server_version="1.14.0")  # the events API needs 1.14
    emu.script("echo", Scenario(hold=True))
    emu.inject(Fault.cut_stream(after_events=1, endpoint=RUN))
    with (
        open_stream(client, "POST", "/workflows/run", json=run_body(mode="streaming")) as reader,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        reader.read_all()
    orphan = emu.wait_for(lambda r: r.orphaned)
    assert orphan.status == "running"

    run_id = client.post("/workflows/run", json=run_body()).json()["workflow_run_id"]
    emu.inject(Fault.cut_stream(after_events=0, endpoint="GET /workflow/{id}/events"))
    with (
        open_stream(client, "GET", f"/workflow/{run_id}/events", params={"user": "tester"}) as events,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        events.read_all()
    assert events.raw.startswith(b'event: ping\n\ndata: {"event": "workflow_fin')
