"""DAG files import the operators at every parse: what that import loads is kept small on purpose
(``bench/``, DAG-parse overhead). These checks are on *what* is loaded, never on how long it takes."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import dify_provider.client as client

#: Loaded only when a task runs (or a trigger polls), never when a DAG file is parsed.
HEAVY = ("httpx_sse", "httpx_aiohttp", "aiohttp", "airflow.triggers.base", "dify_provider.client._core",
         "dify_provider.client.models", "dify_provider.client.sync", "dify_provider.client.async_",
         "dify_provider.hooks.dify", "dify_provider.triggers.workflow_run", "dify_provider.client.chenyu",
         "dify_provider.hooks.chenyu", "dify_provider.triggers.chenyu", "dify_provider.client._streams",
         "dify_provider.client.chat.models", "dify_provider.client.chat.events", "dify_provider.client.chat.stream",
         "dify_provider.client.chat._api", "dify_provider.client.chat.sync", "dify_provider.client.chat.async_")

PROBE = """
import json, sys
from airflow.providers.common.compat.sdk import DAG, BaseOperator, BaseSensorOperator
# What any DAG file with an operator loads anyway (Airflow 3.0 loads aiohttp and the trigger base
# with its first operator, 3.1 the trigger base with airflow.sdk): not ours to count.
with DAG("baseline", schedule=None):
    BaseOperator(task_id="plain")
before = set(sys.modules)
import dify_provider.operators.workflow, dify_provider.sensors.workflow_run
from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.sensors.workflow_run import WorkflowRunSensor
from dify_provider.sensors.chenyu import ChenyuRunSensor
from dify_provider.operators.chat import DifyChatOperator
with DAG("parse_only", schedule=None):
    DifyRunWorkflowOperator(task_id="run", inputs={"text": "hi"})
    DifyChatOperator(task_id="ask", query="hi")
    WorkflowRunSensor(task_id="wait", workflow_run_id="b8e2c8a0-3c5e-4d6f-9a1b-2c3d4e5f6a7b")
    ChenyuRunSensor(task_id="wait_chenyu", run_order_id="wfrun_314ff7d8b7a5beff1388")
prefixes = ("dify_provider", "httpx", "aiohttp", "airflow.triggers")
print(json.dumps(sorted(m for m in set(sys.modules) - before if m.startswith(prefixes))))
"""


def test_parsing_a_dag_with_the_operator_and_sensors_loads_no_client_or_trigger() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert {"dify_provider.operators.workflow", "dify_provider.operators.chat"} <= loaded  # it imported them
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_every_public_client_name_resolves_to_its_home_module() -> None:
    assert client.__all__ == sorted(client.__all__)
    assert len(client.__all__) > 40
    for name in client.__all__:
        home = client._HOME[name]
        assert getattr(client, name) is getattr(importlib.import_module(home), name), name
    with pytest.raises(AttributeError, match="NoSuchThing"):
        client.NoSuchThing  # noqa: B018
