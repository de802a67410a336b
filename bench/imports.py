"""Workload 4, DAG-parse overhead: what importing the provider's operator and sensor adds to a DAG
file that already imports ``airflow.sdk`` (Airflow 2: ``airflow.models``).

Each sample is a fresh interpreter on the poller core running ``python -X importtime``: first
``from airflow.sdk import DAG, BaseOperator, BaseSensorOperator`` (what any DAG with an operator
and a sensor imports anyway), then the provider's two modules. The extra is the cumulative
import time of the top-level ``dify_provider`` entries after the baseline (only what they add:
anything ``airflow.sdk`` already loaded is free). The wall-clock of the second step is reported
too, and its CPU time (steadier than wall time when the machine is shared). The median of several
processes is the figure; a first, unmeasured process fills the bytecode cache, as a deployed
Airflow has one.
"""

from __future__ import annotations

import importlib.metadata
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.env import child_env, system_busy_seconds

#: What a DAG file with an operator and a sensor imports anyway, on this Airflow (read from the
#: installed distribution: importing Airflow here would load it into the parent, not the sample).
BASELINE = ("from airflow.sdk import DAG, BaseOperator, BaseSensorOperator"
            if int(importlib.metadata.version("apache-airflow").split(".")[0]) >= 3 else
            "from airflow.models.dag import DAG; from airflow.models.baseoperator import BaseOperator; "
            "from airflow.sensors.base import BaseSensorOperator")

SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
""" + BASELINE + """
t1, c1 = time.perf_counter(), time.process_time()
import dify_provider.operators.workflow, dify_provider.sensors.workflow_run
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"baseline_s": t1 - t0, "extra_wall_s": t2 - t1, "extra_cpu_s": c2 - c1}))
"""


def parse_importtime(stderr: str) -> tuple[int, dict[str, int]]:
    """(extra microseconds, self time by provider module) from ``-X importtime`` output, whose
    lines read ``import time: <self us> | <cumulative us> | <indent><module>``; one space of
    indent marks a module the script imported itself."""
    extra = 0
    own: dict[str, int] = {}
    for line in stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3:
            continue
        try:
            self_us, cumulative_us = int(fields[0]), int(fields[1])
        except ValueError:  # the header line
            continue
        name = fields[2].rstrip()
        module = name.strip()
        if module.startswith("dify_provider"):
            own[module] = self_us
            if len(name) - len(name.lstrip(" ")) == 1:
                extra += cumulative_us
    return extra, own


def run_imports(root: Path, reps: int, core: int | None, *, warmup: bool = True) -> dict[str, Any]:
    home = root / "import-home"
    (home / "dags").mkdir(parents=True, exist_ok=True)
    env = child_env(home)
    prefix = ["taskset", "-c", str(core)] if core is not None else []
    samples: list[dict[str, Any]] = []
    for i in range(reps + 1 if warmup else reps):
        busy_before, began = system_busy_seconds(), time.monotonic()
        proc = subprocess.run([*prefix, sys.executable, "-X", "importtime", "-c", SCRIPT], env=env, cwd=home,
                              capture_output=True, text=True, timeout=300, check=False)
        busy_after, elapsed = system_busy_seconds(), time.monotonic() - began
        if proc.returncode != 0:
            raise RuntimeError(f"import probe failed: {proc.stderr[-2000:]}")
        if warmup and i == 0:
            continue  # fills the bytecode cache
        walls = json.loads(proc.stdout.strip().splitlines()[-1])
        extra_us, own = parse_importtime(proc.stderr)
        samples.append({"extra_ms": extra_us / 1000, "wall_ms": walls["extra_wall_s"] * 1000,
                        "cpu_ms": walls["extra_cpu_s"] * 1000, "baseline_ms": walls["baseline_s"] * 1000,
                        "own": own, "busy": busy_after - busy_before, "elapsed": elapsed})
    median = sorted(samples, key=lambda s: s["extra_ms"])[len(samples) // 2]
    top = sorted(median["own"].items(), key=lambda kv: -kv[1])[:6]
    return {
        "processes": reps,
        "extra_ms": round(statistics.median(s["extra_ms"] for s in samples), 1),
        "extra_wall_ms": round(statistics.median(s["wall_ms"] for s in samples), 1),
        # CPU time of the same step: what the import costs the parsing process, less sensitive
        # than wall time to other tenants of a shared machine.
        "extra_cpu_ms": round(statistics.median(s["cpu_ms"] for s in samples), 1),
        "extra_min_ms": round(min(s["extra_ms"] for s in samples), 1),
        # Busy cores on the machine while the probes ran; the probe itself accounts for about one.
        "machine_busy_cores": round(sum(s["busy"] for s in samples) / sum(s["elapsed"] for s in samples), 2),
        "baseline_airflow_sdk_ms": round(statistics.median(s["baseline_ms"] for s in samples), 1),
        "samples_ms": [round(s["extra_ms"], 1) for s in samples],
        "slowest_own_modules_ms": {name: round(us / 1000, 1) for name, us in top},
    }
