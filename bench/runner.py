"""Running a measured child: a spec goes to the zygote (``bench.child --zygote``), which forks a
child for it; this process hands the child its start instant, ends its runs on schedule, and
collects what it saw."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.emulator import API_KEY, Emulator
from bench.env import child_env, cpu_seconds, system_busy_seconds

#: Seconds between "GO" and t0: the child's loop must be waiting before the first waiter is due.
LEAD = 0.3


class ChildFailed(RuntimeError):
    pass


@dataclass
class Workspace:
    """Where children keep their specs, logs and Airflow home for one benchmark run."""

    root: Path
    poller_core: int | None
    emulator_core: int | None
    _zygote: subprocess.Popen[str] | None = field(default=None, repr=False)

    @property
    def home(self) -> Path:
        path = self.root / "airflow-home"
        (path / "dags").mkdir(parents=True, exist_ok=True)
        return path

    def env(self, emu: Emulator) -> dict[str, str]:
        conn = {"conn_type": "dify", "host": emu.base_url, "password": API_KEY}
        http = {"conn_type": "http", "host": "127.0.0.1", "port": emu.port, "schema": "http"}
        return child_env(self.home, {"AIRFLOW_CONN_DIFY_DEFAULT": json.dumps(conn),
                                     "AIRFLOW_CONN_DIFY_HTTP": json.dumps(http)})

    def zygote(self, emu: Emulator) -> subprocess.Popen[str]:
        """The pre-imported process every measured child is forked from (started once)."""
        if self._zygote is None or self._zygote.poll() is not None:
            core = "-" if self.poller_core is None else str(self.poller_core)
            err = (self.root / "zygote.err").open("w")
            # cwd: not the repository, whose dify_provider would shadow PYTHONPATH (``-m`` puts the
            # working directory first on sys.path); the environment decides what is imported.
            self._zygote = subprocess.Popen([sys.executable, "-m", "bench.child", "--zygote", core],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                            text=True, env=self.env(emu), cwd=self.root)
            _message(self._zygote, "zygote", self.root / "zygote.err")
        return self._zygote

    def close(self) -> None:
        if self._zygote is not None and self._zygote.poll() is None:
            assert self._zygote.stdin is not None
            self._zygote.stdin.close()
            try:
                self._zygote.wait(10)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait(5)
        self._zygote = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def run_child(ws: Workspace, emu: Emulator, name: str, spec: dict[str, Any],
              on_go: Callable[[dict[str, Any], float], dict[str, float]]) -> tuple[dict[str, Any], dict[str, float]]:
    """Run one child; ``on_go(ready, t0)`` runs here after GO (it ends the runs on schedule) and
    returns run id -> instant the finish was sent. Returns the child's result and those instants."""
    err_path = ws.root / f"{name}.err"
    spec = {"base_url": emu.base_url, "api_key": API_KEY, "log_path": str(ws.root / f"{name}.log"),
            "err_path": str(err_path), **spec}
    spec_path = ws.root / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    zygote = ws.zygote(emu)
    assert zygote.stdin is not None
    zygote.stdin.write(f"{spec_path}\n")
    zygote.stdin.flush()
    ready = _message(zygote, "ready", err_path)
    t0 = time.monotonic() + LEAD
    meters = (system_busy_seconds(), emu.cpu_seconds(), cpu_seconds(), time.monotonic())
    zygote.stdin.write(f"GO {t0!r}\n")
    zygote.stdin.flush()
    sent = on_go(ready, t0)
    result = _message(zygote, "result", err_path)
    busy, emu_cpu, own_cpu, wall = (after - before for after, before in zip(
        (system_busy_seconds(), emu.cpu_seconds(), cpu_seconds(), time.monotonic()), meters, strict=True))
    exited = _message(zygote, "exited", err_path)
    if exited:
        raise ChildFailed(f"child {name} exited with {exited}: {err_path.read_text()[-3000:]}")
    result["t0"] = t0
    result["emulator_cpu_seconds"] = emu_cpu
    result["emulator_core_share"] = emu_cpu / wall if wall else None
    # CPU that neither the child, the emulator nor this process used: other tenants of the machine.
    result["foreign_cores"] = max(0.0, busy - result["cpu_seconds"] - emu_cpu - own_cpu) / wall if wall else None
    return result, sent


def _message(proc: subprocess.Popen[str], key: str, err_path: Path) -> Any:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    tail = err_path.read_text()[-3000:] if err_path.exists() else ""
    if not line:
        raise ChildFailed(f"the zygote exited ({proc.poll()}) before sending {key!r}:\n{tail}")
    message: dict[str, Any] = json.loads(line)
    if key not in message:
        raise ChildFailed(f"expected {key!r} from the child, got {line[:300]!r}:\n{tail}")
    return message[key]
