"""Usage metrics reach a real StatsD listener: ``airflow dags test`` in its own process (Airflow
reads ``[metrics]`` once per process) runs a workflow task against the emulator, with StatsD on
and tags in InfluxDB form, and a UDP socket on loopback collects what Airflow's ``Stats`` sent."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from dify_provider.testing import DifyEmulator, NodeSpec, Scenario

pytestmark = pytest.mark.airflow
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
REPO = Path(__file__).resolve().parents[2]
NODES = (NodeSpec(id="start", type="start", tokens=0), NodeSpec(id="draft", type="llm", tokens=120, price="0.0123"),
         NodeSpec(id="end", type="end", tokens=0))

DAG_FILE = '''
from datetime import datetime
from airflow.providers.common.compat.sdk import DAG
from dify_provider.operators.workflow import DifyRunWorkflowOperator

with DAG("dify_metrics", schedule=None, start_date=datetime(2024, 1, 1)):
    DifyRunWorkflowOperator(task_id="run", inputs={"text": "metrics"})
'''


class StatsdListener:
    """UDP on loopback; every datagram's lines, in arrival order."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            self.lines.extend(data.decode(errors="replace").splitlines())

    def close(self) -> None:
        self.sock.close()
        self._thread.join(timeout=5)

    def sent(self, name: str) -> list[tuple[str, str]]:
        """(value, type) of metric ``name`` (prefix ``airflow.``, tags after commas)."""
        found = []
        for line in self.lines:
            metric, _, rest = line.partition(":")
            if metric.split(",")[0] == f"airflow.{name}":
                value, _, kind = rest.partition("|")
                found.append((value, kind.split("|")[0]))
        return found

    def tags(self, name: str) -> set[str]:
        return {tag for line in self.lines if line.startswith(f"airflow.{name},")
                for tag in line.partition(":")[0].split(",")[1:]}


def test_usage_metrics_reach_statsd(dify_emulator: DifyEmulator, tmp_path: Path) -> None:
    dify_emulator.script("echo", Scenario(nodes=NODES))
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "dify_metrics.py").write_text(textwrap.dedent(DAG_FILE))
    listener = StatsdListener()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),  # this checkout
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(listener.port),
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
    })
    try:
        done = subprocess.run([AIRFLOW, "dags", "test", "dify_metrics"], capture_output=True, text=True,
                              timeout=180, env=env, check=False)
    finally:
        listener.close()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert listener.sent("dify.tokens") == [("120", "c")], done.stdout[-3000:]
    assert listener.sent("dify.prompt_tokens") == [("90", "c")]
    assert listener.sent("dify.completion_tokens") == [("30", "c")]
    assert listener.sent("dify.price_micros") == [("12300", "c")]  # 0.0123 USD in millionths
    ((duration, kind),) = listener.sent("dify.run_duration")
    assert kind == "ms"
    assert float(duration) >= 0
    assert listener.sent("dify.budget_exceeded") == []
    assert {"dag_id=dify_metrics", "task_id=run", "app=dify_default"} <= listener.tags("dify.tokens")
    assert "currency=USD" in listener.tags("dify.price_micros")
