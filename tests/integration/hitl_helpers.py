"""Answering a task's required action as a person does: through Airflow's own REST API (the
routes the Required Actions view calls), served in-process by Airflow's FastAPI app over the
metadata DB that ``dag.test()`` uses, from a thread while the DAG runs."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from dify_provider.testing import DifyEmulator

API = "/api/v2"
FORM_READS = re.compile(r".*/form/human_input/[^/]+$")


@cache
def airflow_api() -> Any:
    from airflow.configuration import conf
    from fastapi.testclient import TestClient

    conf.set("core", "simple_auth_manager_all_admins", "True")
    from airflow.api_fastapi.app import create_app

    client = TestClient(create_app("core"))
    # With every user an admin, the token endpoint hands out an admin token without a login
    # (3.1 and 3.2 want it on each call; 3.3 lets an anonymous admin in without one).
    token = client.get("/auth/token")
    if token.status_code in (200, 201):
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return client


def _hitl_path(dag_id: str, run_id: str, task_id: str) -> str:
    return f"{API}/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"


def _latest_run_id(dag_id: str) -> str | None:
    runs = airflow_api().get(f"{API}/dags/{dag_id}/dagRuns")  # each test's DAG has one running run
    items = runs.json().get("dag_runs") or [] if runs.status_code == 200 else []
    running = [r["dag_run_id"] for r in items if r.get("state") == "running"]
    return running[-1] if running else None


def wait_for_required_action(dag_id: str, task_id: str, *, asked: int, timeout: float = 60) -> dict[str, Any]:
    """The required action, once the task waits on it (``asked``: the how-many-th form of the
    emulator's run is being waited on; the detail row is reused between tries, so the count of
    form reads tells a new question from the last one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_id = _latest_run_id(dag_id)
        if run_id:
            answer = airflow_api().get(_hitl_path(dag_id, run_id, task_id))
            waiting = answer.status_code == 200 and not answer.json().get("response_received")
            if waiting and _parked(dag_id, run_id, task_id):
                return {"run_id": run_id, "dag_id": dag_id, **answer.json()}
        time.sleep(0.2)  # polling Airflow's state, which the test does not control
    raise AssertionError(f"{dag_id}.{task_id} never waited for a person within {timeout} s")


def _parked(dag_id: str, run_id: str, task_id: str) -> bool:
    """Waiting for a person, and still so a moment later: answered within milliseconds of the
    park (no person is that fast), the answer can race ``dag.test()``'s own bookkeeping of the
    parked task on SQLite and be lost to it; a real deployment's worker is gone by then."""
    path = f"{API}/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
    for look in range(2):
        if airflow_api().get(path).json().get("state") not in ("awaiting_input", "deferred"):
            return False
        if look == 0:
            time.sleep(0.5)
    return True


def respond(dag_id: str, run_id: str, task_id: str, option: str, params: dict[str, Any] | None = None) -> Any:
    answer = airflow_api().patch(_hitl_path(dag_id, run_id, task_id),
                                 json={"chosen_options": [option], "params_input": params or {}})
    assert answer.status_code == 200, answer.text
    return answer.json()


@contextmanager
def person(emu: DifyEmulator, dag_id: str, task_id: str,
           answers: list[Callable[[dict[str, Any]], Any]]) -> Iterator[list[dict[str, Any]]]:
    """A person who answers each required action in turn with ``answers[i](detail)``; the
    details they saw are collected in the yielded list."""
    seen: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i, answer in enumerate(answers):
                forms_read = i + 1
                emu.wait_for_requests("GET", FORM_READS, count=forms_read, timeout=60)
                detail = wait_for_required_action(dag_id, task_id, asked=forms_read)
                seen.append(detail)
                answer(detail)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True, name="person")
    thread.start()
    try:
        yield seen
    finally:  # the person's own failure explains a DAG run that waited for good: it wins
        thread.join(timeout=60)
        if errors:
            raise errors[0]
