"""What the emulator says a run spent: node metadata, LLM usage, and the run record's totals."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from dify_provider.testing import DifyEmulator, NodeSpec, Scenario

from .conftest import data_events, run_body, start_streaming_run

NODES = (
    NodeSpec(id="start", type="start", tokens=0),
    NodeSpec(id="draft", type="llm", title="Draft", tokens=40, price="0.0004"),
    NodeSpec(id="fetch", type="http-request", tokens=0),
    NodeSpec(id="polish", type="llm", tokens=10, hold=True),
    NodeSpec(id="end", type="end", tokens=0),
)


def test_spending_nodes_report_metadata_and_llm_usage(client: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("echo", Scenario(nodes=(*NODES[:3], NODES[4])))
    raw = client.post("/workflows/run", json=run_body(mode="streaming")).content
    finished = {e["data"]["node_id"]: e["data"] for e in data_events(raw) if e["event"] == "node_finished"}
    draft = finished["draft"]
    assert draft["execution_metadata"] == {"total_tokens": 40, "total_price": "0.0004", "currency": "USD"}
    usage = draft["outputs"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (30, 10, 40)
    assert draft["process_data"]["usage"] == usage
    assert Decimal(str(usage["total_price"])) == Decimal("0.0004")  # a float there, as jsonable_encoder gives
    for quiet in ("start", "fetch", "end"):  # spent nothing: null metadata, no usage (as a real 1.13.2)
        assert finished[quiet]["execution_metadata"] is None
        assert "usage" not in (finished[quiet]["outputs"] or {})
    (end,) = (e for e in data_events(raw) if e["event"] == "workflow_finished")
    assert end["data"]["total_tokens"] == 40


@pytest.mark.parametrize("live", [False, True])
def test_a_running_run_s_record_shows_its_totals_only_when_live(client: httpx.Client, emu: DifyEmulator,
                                                                 live: bool) -> None:
    emu.configure(live_run_totals=live)
    emu.script("echo", Scenario(nodes=NODES))
    run_id, _ = start_streaming_run(client)
    emu.wait_for(lambda run: run.id == run_id and run.total_steps == 4)  # inside the held node
    detail = client.get(f"/workflows/run/{run_id}").json()
    assert detail["status"] == "running"
    assert (detail["total_tokens"], detail["total_steps"]) == ((40, 4) if live else (0, 0))
    emu.release(run_id)
    emu.wait_for(run_id, status="succeeded")
    assert client.get(f"/workflows/run/{run_id}").json()["total_tokens"] == 50
