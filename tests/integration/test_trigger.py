"""WorkflowRunTrigger on its own: serialisation, restart safety, deadlines, secrets."""

from __future__ import annotations

import asyncio
import importlib
import time
from typing import Any

import pytest
from dify_helpers import start_run

from dify_provider.hooks.dify import SharedAsyncClients
from dify_provider.testing import DifyEmulator, Scenario
from dify_provider.triggers.base import WAKE_GRID, _on_grid
from dify_provider.triggers.workflow_run import WorkflowRunTrigger


def rebuild(trigger: WorkflowRunTrigger) -> WorkflowRunTrigger:
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**kwargs)  # type: ignore[no-any-return]


async def first_event(trigger: WorkflowRunTrigger, *, polls_before: int | None = None) -> dict[str, Any]:
    try:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("trigger ended without an event")
    finally:
        await SharedAsyncClients.close_all()


def finish_after_polls(emulator: DifyEmulator, trigger: WorkflowRunTrigger, run_id: str, polls: int) -> dict[str, Any]:
    """Run the trigger; once it has polled ``polls`` times, end the run; return its event."""

    async def go() -> dict[str, Any]:
        task = asyncio.ensure_future(first_event(trigger))
        await asyncio.to_thread(emulator.wait_for_requests, "GET", f"/workflows/run/{run_id}", polls, 30)
        emulator.finish(run_id)
        return await task

    return asyncio.run(go())


def test_serialised_trigger_carries_no_key(dify_emulator: DifyEmulator) -> None:
    trigger = WorkflowRunTrigger("b8e2c8a0-3c5e-4d6f-9a1b-2c3d4e5f6a7b", dify_task_id="t", user="u", poll_interval=2,
                                 end_time=time.time() + 60, console_link="http://console/app/x/logs")
    path, kwargs = trigger.serialize()
    assert path == "dify_provider.triggers.workflow_run.WorkflowRunTrigger"
    assert dify_emulator.api_key("echo") not in repr(kwargs) + repr(trigger)
    assert rebuild(trigger).serialize() == (path, kwargs)


def test_rebuilt_mid_run_resumes_without_losing_the_run(dify_emulator: DifyEmulator) -> None:
    """A triggerer restart: the first trigger is abandoned mid-wait, a rebuilt one finishes it."""
    run_id = start_run(dify_emulator, Scenario(hold=True))
    original = WorkflowRunTrigger(run_id, poll_interval=0.05, end_time=time.time() + 60)

    async def abandon_after_two_polls() -> None:
        task = asyncio.ensure_future(first_event(original))
        await asyncio.to_thread(dify_emulator.wait_for_requests, "GET", f"/workflows/run/{run_id}", 2, 30)
        task.cancel()  # what a triggerer shutdown does; cleanup must not stop the run
        with pytest.raises(asyncio.CancelledError):
            await task
        await original.cleanup()

    asyncio.run(abandon_after_two_polls())
    assert dify_emulator.runs[run_id].status == "running"
    restarted = rebuild(original)
    assert restarted.started_at == original.started_at  # backoff and deadlines continue, not restart
    dify_emulator.finish(run_id)
    event = asyncio.run(first_event(restarted))
    assert event["verdict"] == "success"
    assert event["detail"]["status"] == "succeeded"
    assert len(dify_emulator.requests_to("POST", "/workflows/run")) == 1


def test_deadline_gives_one_timeout_event_after_a_last_check(dify_emulator: DifyEmulator) -> None:
    run_id = start_run(dify_emulator, Scenario(hold=True))
    # 2 s: room for the first poll on a busy machine, before the deadline
    trigger = WorkflowRunTrigger(run_id, poll_interval=30, end_time=time.time() + 2.0)
    event = asyncio.run(first_event(trigger))
    assert event["reason"] == "timeout"
    assert "last status: running" in event["message"]
    assert len(dify_emulator.requests_to("GET", f"/workflows/run/{run_id}")) == 2  # first + at the deadline


def test_execution_deadline_is_its_own_reason(dify_emulator: DifyEmulator) -> None:
    run_id = start_run(dify_emulator, Scenario(hold=True))
    trigger = WorkflowRunTrigger(run_id, poll_interval=30, end_time=time.time() + 60,
                                 execution_deadline=time.time() + 0.1)
    assert asyncio.run(first_event(trigger))["reason"] == "execution_timeout"


def test_run_finished_during_last_sleep_is_success_not_timeout(dify_emulator: DifyEmulator) -> None:
    run_id = start_run(dify_emulator, Scenario(hold=True))
    trigger = WorkflowRunTrigger(run_id, poll_interval=30, end_time=time.time() + 0.5)
    assert finish_after_polls(dify_emulator, trigger, run_id, 1)["verdict"] == "success"


def test_wake_ups_snap_to_a_grid_no_coarser_than_a_fortieth_of_the_delay() -> None:
    assert _on_grid(100.026, 2.0) == pytest.approx(100.05)  # nearest grid point
    assert _on_grid(100.024, 2.0) == pytest.approx(100.0)
    assert abs(_on_grid(7.3333, 0.4) - 7.3333) <= 0.4 / 80 + 1e-9  # short delays: a finer grid
    assert _on_grid(5.0, 0.0) == 5.0
    assert WAKE_GRID <= 0.05


def test_an_unchanged_running_line_is_logged_once_not_per_poll(dify_emulator: DifyEmulator,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    run_id = start_run(dify_emulator, Scenario(hold=True))
    trigger = WorkflowRunTrigger(run_id, poll_interval=0.02, end_time=time.time() + 60)
    assert finish_after_polls(dify_emulator, trigger, run_id, 5)["verdict"] == "success"
    out, err = capfd.readouterr()  # the trigger logs through Airflow's structlog set-up
    running = [line for line in (out + err).splitlines() if f"Dify workflow run {run_id} is running" in line]
    assert len(dify_emulator.requests_to("GET", f"/workflows/run/{run_id}")) >= 5
    assert len(running) == 1
