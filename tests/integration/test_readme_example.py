"""The README's "Testing with the emulator" example, verbatim but for the test's DAG id and the
DAG import (common-compat's, so that the same test runs on Airflow 2.11 and 3.x)."""

from __future__ import annotations

from datetime import datetime

import pytest
from airflow.providers.common.compat.sdk import DAG

from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.testing import DifyEmulator, Fault, Scenario
from dify_provider.testing.airflow import test_dag

pytestmark = pytest.mark.airflow


def test_my_dag(dify_emulator: DifyEmulator, dag_id: str) -> None:
    dify_emulator.script("echo", Scenario(status="failed", error="model timeout"))
    dify_emulator.inject(Fault.too_many_requests(endpoint="POST /workflows/run"))
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        DifyRunWorkflowOperator(task_id="run", inputs={"text": "hi"})
    dag_run = test_dag(dag)
    assert dag_run.state == "failed"
    (run,) = dify_emulator.runs.values()
    assert run.status == "failed"
    assert len(dify_emulator.requests_to("POST", "/workflows/run")) == 2  # 429 retried, one run
