"""The Python control surface: scripts, hold/finish, wait_for, request recording, reset, threads."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing import DifyEmulator, Fault, Scenario

from .conftest import SSL, auth, run_body, start_streaming_run


def test_scripts_apply_in_order_then_the_default(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(status="failed", error="first"), Scenario(outputs={"fixed": True}))
    runs = [client.post("/workflows/run", json=run_body()).json()["data"] for _ in range(3)]
    assert [(d["status"], d["error"]) for d in runs] == [("failed", "first"), ("succeeded", None), ("succeeded", None)]
    assert runs[1]["outputs"] == {"fixed": True}
    assert runs[2]["outputs"]["text"] == "HELLO"


def test_rejected_requests_do_not_consume_scripts(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(status="failed"))
    emu.inject(Fault.too_many_requests(endpoint="POST /workflows/run"))
    assert client.post("/workflows/run", json=run_body()).status_code == 429
    assert client.post("/workflows/run", json={"inputs": {}, "user": "u"}).status_code == 400
    assert client.post("/workflows/run", json=run_body()).json()["data"]["status"] == "failed"


def test_hold_then_finish_with_chosen_outcome(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(hold=True, steps=2, tokens_per_step=5))
    run_id, _ = start_streaming_run(client)
    held = emu.wait_for(run_id, status="running")
    assert held.id == run_id
    assert held.finished_at is None
    assert emu.wait_for(lambda r: r.held).total_steps == 2
    done = emu.finish(run_id, status="failed", error="judged bad")
    assert (done.status, done.error, done.outputs, done.total_tokens) == ("failed", "judged bad", None, 10)
    with pytest.raises(ValueError, match="already ended"):
        emu.finish(run_id)
    with pytest.raises(KeyError):
        emu.finish("no-such-run")


def test_emu_stop(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(hold=True))
    run_id, _ = start_streaming_run(client)
    emu.wait_for(lambda r: r.held)
    stopped = emu.stop(run_id)
    assert (stopped.status, stopped.api_status) == (WorkflowRunStatus.STOPPED, WorkflowRunStatus.RUNNING)
    assert client.get(f"/workflows/run/{run_id}").json()["status"] == "running"  # as the stop API leaves it
    emu.reset()
    emu.configure(stopped_run_record="stopped")
    emu.script("echo", Scenario(hold=True))
    run_id, _ = start_streaming_run(client)
    emu.wait_for(lambda r: r.held)
    emu.stop(run_id)
    assert client.get(f"/workflows/run/{run_id}").json()["error"] == "Stopped by user."


def test_wait_for_times_out_with_a_useful_message(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(hold=True))
    run_id, _ = start_streaming_run(client)
    with pytest.raises(TimeoutError, match="it is running"):
        emu.wait_for(run_id, status="succeeded", timeout=0.05)
    with pytest.raises(TimeoutError):
        emu.wait_for(lambda r: r.app == "slow", timeout=0.01)


def test_requests_are_recorded_with_the_key_redacted(client: httpx.Client, emu: DifyEmulator) -> None:
    client.post("/workflows/run", json=run_body("rec"), params={"trace_id": "t-1"})
    client.get("/info", headers={"Authorization": "Bearer wrong"})
    first, second = emu.requests
    assert (first.method, first.path, first.query, first.app, first.status) == (
        "POST", "/v1/workflows/run", {"trace_id": "t-1"}, "echo", 200,
    )  # fmt: skip
    assert first.body == run_body("rec")
    assert first.headers["authorization"] == "Bearer ***"
    assert emu.api_key() not in repr(emu.requests)
    assert (second.app, second.status, second.headers["authorization"]) == (None, 401, "Bearer ***")
    assert emu.requests_to("POST", "/workflows/run") == [first]
    assert emu.requests_to(None, re.compile(r"/info$")) == [second]
    assert first.seq < second.seq


def test_fired_faults_are_noted_on_the_request(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.inject(Fault.http_error(503, endpoint="GET /info"))
    client.get("/info")
    client.get("/info")
    assert [(r.status, r.fault) for r in emu.requests] == [(503, "http_error"), (200, None)]


def test_reset_clears_everything(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(status="failed"))
    emu.inject(Fault.http_error(500, times=None))
    client.get("/info")
    emu.reset()
    assert emu.runs == {}
    assert emu.requests == []
    assert client.post("/workflows/run", json=run_body()).json()["data"]["status"] == "succeeded"


def test_reset_releases_a_waiting_blocking_call(emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(hold=True))

    def blocking_call() -> int:
        with httpx.Client(base_url=emu.base_url, headers=auth(emu), verify=SSL, timeout=5) as c:
            return c.post("/workflows/run", json=run_body()).status_code

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(blocking_call)
        emu.wait_for(lambda r: r.held)
        emu.reset()
        assert future.result(timeout=5) == 200


@pytest.mark.asyncio
async def test_many_concurrent_runs_and_control_from_threads(emu: DifyEmulator) -> None:
    emu.script("echo", *[Scenario(hold=True, steps=1, step_seconds=0)] * 40)
    async with httpx.AsyncClient(base_url=emu.base_url, headers=auth(emu), verify=SSL, timeout=5) as c:

        async def start(i: int) -> str:
            body = run_body(f"n{i}", mode="streaming", user=f"user-{i}")
            async with c.stream("POST", "/workflows/run", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        return str(httpx.Response(200, content=line[6:]).json()["workflow_run_id"])
            raise AssertionError("no event")

        run_ids = await asyncio.gather(*(start(i) for i in range(40)))
        await asyncio.to_thread(lambda: [emu.wait_for(run_id, status="running") and None for run_id in run_ids])
        with ThreadPoolExecutor(8) as pool:  # finish from many threads while the loop serves
            list(pool.map(lambda run_id: emu.finish(run_id, outputs={"id": run_id}), run_ids))
        details = await asyncio.gather(*(c.get(f"/workflows/run/{run_id}") for run_id in run_ids))
    assert {d.json()["status"] for d in details} == {"succeeded"}
    assert all(d.json()["outputs"] == {"id": d.json()["id"]} for d in details)
