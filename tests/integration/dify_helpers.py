"""Helpers for driving Dify runs in the emulator from integration tests (no sleeping: the test
acts when the emulator has seen a given number of requests)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException

from dify_provider.client import ClientConfig, DifyClient
from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.testing import DifyEmulator, Scenario

DETAIL = "GET"


class FailAfterSuccess(DifyRunWorkflowOperator):
    """Try 1's run succeeds, then something downstream of it breaks: try 2 must start a new run."""

    def execute(self, context: Any) -> Any:
        outputs = super().execute(context)
        if context["ti"].try_number == 1:
            raise AirflowException("downstream of the run, something broke")
        return outputs


def start_run(emu: DifyEmulator, scenario: Scenario | None = None, *, app: str = "echo",
              inputs: dict[str, Any] | None = None, user: str = "outside-airflow") -> str:
    """Start a run as something outside Airflow would (streaming, then hang up on 1.13+)."""
    if scenario is not None:
        emu.script(app, scenario)
    with DifyClient(ClientConfig(api_key=emu.api_key(app), base_url=emu.base_url)) as client:
        stream = client.run_workflow(inputs or {"text": "hi"}, user, response_mode="streaming")
        for _ in stream:
            break
        stream.close()
    assert stream.workflow_run_id
    return stream.workflow_run_id


@contextmanager
def after_polls(emu: DifyEmulator, run_id: str, polls: int, action: Callable[[], Any]) -> Iterator[None]:
    """Run ``action`` in the background once the run detail was requested ``polls`` times."""
    errors: list[BaseException] = []

    def wait_then_act() -> None:
        try:
            emu.wait_for_requests("GET", f"/workflows/run/{run_id}", count=polls, timeout=60)
            action()
        except BaseException as exc:  # surfaced in the test thread below
            errors.append(exc)

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    yield
    thread.join(timeout=60)
    if errors:
        raise errors[0]


def detail_polls(emu: DifyEmulator, run_id: str) -> int:
    return len(emu.requests_to("GET", f"/workflows/run/{run_id}"))


@contextmanager
def finish_first_run_after_polls(emu: DifyEmulator, polls: int, **finish: Any) -> Iterator[dict[str, str]]:
    """For held runs started by the code under test: once the (first) run exists and its detail
    was requested ``polls`` times, finish it. Yields a dict that receives the run id."""
    seen: dict[str, str] = {}

    def act() -> None:
        run = emu.wait_for(status="running", timeout=60)
        seen["id"] = run.id
        emu.wait_for_requests("GET", f"/workflows/run/{run.id}", count=polls, timeout=60)
        emu.finish(run.id, **finish)

    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            act()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    yield seen
    thread.join(timeout=60)
    if errors:
        raise errors[0]
