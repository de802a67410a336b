"""Plumbing shared by the orchestrator and its child processes: cores, environment, meters.

Every measured poller runs in a fresh child process pinned to one core while the emulator owns the
other, so a poller's CPU, memory and sockets are its own and nothing else competes for its core.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
#: Children write and reuse bytecode here (``PYTHONPYCACHEPREFIX``): a deployed Airflow imports
#: from ``.pyc`` files, so import-time and start-up figures must not include compiling sources
#: (this sandbox sets ``PYTHONDONTWRITEBYTECODE``, which would make every child compile Airflow).
PYCACHE = RESULTS / ".pycache"
PAGE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cores() -> tuple[int | None, int | None]:
    """(poller core, emulator core); ``(None, None)`` on a one-core machine (nothing pinned)."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return available[0], available[1]


def pin(core: int | None, pid: int = 0) -> None:
    if core is not None:
        os.sched_setaffinity(pid, {core})


def child_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A hermetic environment for a child: a private ``AIRFLOW_HOME`` without examples, no
    inherited ``AIRFLOW__*``/``AIRFLOW_CONN_*`` settings, a bytecode cache, and the bench
    package importable whatever the working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    PYCACHE.mkdir(parents=True, exist_ok=True)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
    })
    env.update(extra or {})
    return env


# --- meters (read by the process about itself, or about the emulator by pid) --------------------


def cpu_seconds() -> float:
    """User + system CPU of this process (all threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def system_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (``/proc/stat``), to tell how much of a
    measurement window went to processes other than the benchmark's (a shared machine)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def open_sockets() -> int:
    """Socket file descriptors this process holds right now (connected, listening or closing)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:  # closed between listdir and readlink
            continue
    return count


# --- statistics -----------------------------------------------------------------------------------


def pct(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary(values: list[float], scale: float = 1.0) -> dict[str, float | int | None]:
    """p50/p95/max/mean of ``values`` times ``scale`` (e.g. 1000 for ms)."""
    def s(v: float | None) -> float | None:
        return None if v is None else round(v * scale, 3)

    return {
        "n": len(values),
        "p50": s(pct(values, 0.5)),
        "p95": s(pct(values, 0.95)),
        "max": s(max(values) if values else None),
        "mean": s(statistics.fmean(values) if values else None),
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on: they mean little without it."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        mem = 0
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("apache-airflow", "apache-airflow-providers-http", "httpx", "httpx-aiohttp", "aiohttp",
                 "pydantic", "uvicorn"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "missing"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "packages": versions,
    }


def dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=False, default=str)
