"""A small distributed Airflow on loopback: PostgreSQL, Redis, api-server, scheduler, dag-processor,
two Celery workers and two triggerers, each a plain process in its own session with its own log.

Every process started here carries ``DIFY_E2E_TOKEN`` (this run) and ``DIFY_E2E_PROCESS`` (its
component) in its environment, and children inherit both: that is how a task process orphaned by
a killed worker is found, and how the end of the run proves nothing is left, whatever session or
process group a process moved to. Settings follow ``airflow-distributed-notes.md`` (measured).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo import ROOT, EmulatorProcess, StepFailedError, airflow_argv, run_command, start_process
from e2e import AirflowStack, free_port, poll

DAGS = ROOT / "scripts" / "distributed" / "dags"
WORKERS = ("worker-a", "worker-b")
TRIGGERERS = ("triggerer-a", "triggerer-b")
COMPONENTS = ("api-server", "scheduler", "dag-processor", *WORKERS, *TRIGGERERS)
PG_USER = "postgres"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def apt_install(package: str, log: Path) -> float:
    """Install a Debian package (CI starts from a fresh machine); returns the seconds it took."""
    if os.geteuid() != 0 and not shutil.which("sudo"):
        raise StepFailedError(f"{package} is missing and installing it needs root: apt-get install {package}")
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    took = run_command("apt-get update", [*prefix, "apt-get", "update", "-q"], log, env, timeout=300)
    return took + run_command(f"apt-get install {package}", [*prefix, "apt-get", "install", "-y", "-q",
                                                             "--no-install-recommends", package], log, env, timeout=600)


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return found[-1].parent if found else None


# --------------------------------------------------------------------------------------------
# What the processes are: /proc, read by environment marker
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    component: str
    state: str  # /proc/<pid>/stat's state letter; Z = zombie (dead, not yet reaped)
    cmdline: str

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


def marked_processes(token: str, sessions: dict[int, str]) -> list[Proc]:
    """Every process of this run: in the session of a component we started (``sessions``: leader
    pid -> component; a task process keeps its worker's session even after the worker is killed),
    or with this run's token in its environment (a process that left the session). Both are needed:
    ``setproctitle`` (Celery, the api-server, task processes) overwrites what ``/proc/<pid>/environ``
    shows, and a process may call ``setsid``."""
    found = []
    marker = f"DIFY_E2E_TOKEN={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _ppid, _pgrp, session = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
            component = sessions.get(int(session))
            if component is None:
                environ = (entry / "environ").read_bytes().split(b"\0")
                if marker not in environ:
                    continue
                component = next((v.split(b"=", 1)[1].decode() for v in environ
                                  if v.startswith(b"DIFY_E2E_PROCESS=")), "?")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
        found.append(Proc(int(entry.name), component, state, cmdline))
    return found


def cpu_and_rss(pids: list[int]) -> tuple[float, float]:
    """CPU seconds used so far and resident MiB now, summed over ``pids``."""
    cpu, rss_kib = 0.0, 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
            rss_kib += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB
    return cpu, rss_kib / 1024


@dataclass
class ResourceSampler:
    """Samples the CPU and RSS of some components once a second in a thread (the load step)."""

    token: str
    sessions: dict[int, str]
    components: tuple[str, ...]
    interval: float = 1.0
    peak_rss: dict[str, float] = field(default_factory=dict)
    cpu_start: dict[str, float] = field(default_factory=dict)
    cpu_end: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> dict[str, tuple[float, float]]:
        by_component: dict[str, list[int]] = {c: [] for c in self.components}
        for proc in marked_processes(self.token, self.sessions):
            if proc.component in by_component and proc.alive:
                by_component[proc.component].append(proc.pid)
        return {c: cpu_and_rss(pids) for c, pids in by_component.items()}

    def _run(self) -> None:
        while True:
            for component, (cpu, rss) in self._sample().items():
                self.cpu_start.setdefault(component, cpu)
                self.cpu_end[component] = cpu
                self.peak_rss[component] = max(self.peak_rss.get(component, 0.0), rss)
            if self._stop.wait(self.interval):
                return

    @contextlib.contextmanager
    def running(self) -> Iterator[ResourceSampler]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=10)

    def figures(self, seconds: float) -> dict[str, dict[str, float]]:
        return {c: {"cpu_seconds": round(self.cpu_end.get(c, 0.0) - self.cpu_start.get(c, 0.0), 1),
                    "cpu_percent_of_one_core": round(100 * (self.cpu_end.get(c, 0.0) - self.cpu_start.get(c, 0.0))
                                                     / max(seconds, 1e-9), 1),
                    "peak_rss_mib": round(self.peak_rss.get(c, 0.0), 1)} for c in self.components}


# --------------------------------------------------------------------------------------------
# PostgreSQL and Redis
# --------------------------------------------------------------------------------------------


class Services:
    """A throwaway PostgreSQL cluster and a Redis server on loopback, stopped with the run."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs, self.env = logs, env
        self.pg_port, self.redis_port = free_port(), free_port()
        self.pg_dir = Path(tempfile.mkdtemp(prefix="dify-e2e-pg-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def sql_alchemy_conn(self) -> str:
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.pg_port}/airflow"

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def install(self) -> str:
        notes = []
        if postgres_bin() is None:
            notes.append(f"postgresql installed in {apt_install('postgresql', self.logs / 'apt-get.log'):.0f} s")
        if shutil.which("redis-server") is None:
            notes.append(f"redis-server installed in {apt_install('redis-server', self.logs / 'apt-get.log'):.0f} s")
        return ", ".join(notes) or "PostgreSQL and Redis already installed"

    def start(self) -> None:
        pg = postgres_bin()
        assert pg is not None
        as_pg = ["runuser", "-u", PG_USER, "--"] if os.geteuid() == 0 else []
        data, sockets = self.pg_dir / "data", self.pg_dir / "sockets"
        sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.pg_dir, PG_USER)
            shutil.chown(sockets, PG_USER)
        run_command("initdb", [*as_pg, str(pg / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                               "--no-instructions", "-E", "UTF8"], self.logs / "initdb.log", self.env, timeout=120)
        self.procs["postgres"] = start_process("postgres", [
            *as_pg, str(pg / "postgres"), "-D", str(data), "-p", str(self.pg_port), "-k", str(sockets),
            "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "log_lock_waits=on", "-c", "deadlock_timeout=1s", "-c", "log_min_duration_statement=2000",
        ], self.logs / "postgres.log", self.env)
        self.procs["redis"] = start_process("redis", [
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no"], self.logs / "redis.log", self.env)
        poll("PostgreSQL to accept connections", self._pg_ready, 60, interval=0.1, alive=self.alive)
        self._sql("postgres", "CREATE DATABASE airflow", autocommit=True)
        poll("Redis to answer PING", self._redis_ping, 30, interval=0.1, alive=self.alive)

    def _pg_ready(self) -> bool:
        import psycopg2

        try:
            return self._sql("postgres", "SELECT 1")
        except psycopg2.OperationalError:
            return False

    def _sql(self, db: str, sql: str, autocommit: bool = False) -> bool:
        import psycopg2  # the venv of `make e2e-distributed` has it (apache-airflow[postgres])

        conn = psycopg2.connect(host="127.0.0.1", port=self.pg_port, user=PG_USER, dbname=db, connect_timeout=5)
        try:
            conn.autocommit = autocommit
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()
        return True

    def _redis_ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.redis_port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise StepFailedError(f"{name} exited with {proc.returncode}; log: {self.logs / f'{name}.log'}")

    def stop(self) -> list[str]:
        lines = []
        for name, proc in reversed(self.procs.items()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)  # postgres: fast shutdown; redis: exit
            try:
                proc.wait(timeout=20)
                lines.append(f"stopped {name} (pid {proc.pid})")
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                lines.append(f"killed {name} (pid {proc.pid}) after 20 s")
        shutil.rmtree(self.pg_dir, ignore_errors=True)
        return lines


# --------------------------------------------------------------------------------------------
# Airflow with CeleryExecutor
# --------------------------------------------------------------------------------------------


class DistributedStack(AirflowStack):
    """The seven Airflow components on PostgreSQL + Redis; REST helpers come from ``make e2e``'s."""

    def __init__(self, home: Path, emulator: EmulatorProcess, services: Services, logs: Path, token: str) -> None:
        super().__init__(home, emulator)
        self.services, self.logs, self.token = services, logs, token
        self.env.update({
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": services.sql_alchemy_conn,
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": services.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + services.sql_alchemy_conn.replace("+psycopg2", ""),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
            "AIRFLOW__CORE__PARALLELISM": "32",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "dist_hostname.hostname",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(logs / "tasks"),
            # Failover in seconds, not minutes (defaults: 5 / 30 / 300 / 10): see the notes.
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",  # [triggerer] in 3.3, not [scheduler]
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__TRIGGERER__CAPACITY": "1000",
            "DIFY_E2E_TOKEN": token,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "scripts" / "distributed"),
                                                        os.environ.get("PYTHONPATH")])),
        })
        self.log_ports = {name: free_port() for name in (*WORKERS, *TRIGGERERS)}
        self.sessions: dict[int, str] = {}  # every leader pid started, restarts included -> component
        self.log_offset: dict[str, int] = {}  # a restarted component's log continues the old one

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def argv(self, name: str) -> list[str]:
        if name == "api-server":
            return airflow_argv("api-server", "--host", "127.0.0.1", "--port", str(self.port))
        if name in WORKERS:
            # Niced: on one 2-core host the task processes would otherwise starve the api-server,
            # scheduler and triggerers, which a real deployment runs on CPUs of their own.
            return ["nice", "-n", "10", *airflow_argv("celery", "worker", "--celery-hostname", f"{name}@%h",
                                                      "--concurrency", "4")]
        if name in TRIGGERERS:
            return airflow_argv("triggerer")
        return airflow_argv(name)

    def component_env(self, name: str) -> dict[str, str]:
        env = {**self.env, "DIFY_E2E_PROCESS": name}
        if name in WORKERS:
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(self.log_ports[name])
        if name in TRIGGERERS:
            env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(self.log_ports[name])
        return env

    def start(self) -> None:
        for name in COMPONENTS:
            self.start_component(name)

    def start_component(self, name: str) -> None:
        log = self.log(name)
        self.log_offset[name] = log.stat().st_size if log.exists() else 0
        self.procs[name] = start_process(name, self.argv(name), self.log(name), self.component_env(name))
        self.sessions[self.procs[name].pid] = name

    def wait_ready(self, names: tuple[str, ...] = COMPONENTS, timeout: float = 180) -> None:
        """Health for the api-server, scheduler and dag-processor; a fresh ``job`` row per
        triggerer (the health answer is green while any one is); ``ready`` in each worker's log."""
        if {"api-server", "scheduler", "dag-processor"} & set(names):
            self.wait_healthy(timeout)
        for name in names:
            if name in TRIGGERERS:
                poll(f"{name} to heartbeat", lambda name=name: self.triggerer_job(name), timeout, interval=0.5,
                     alive=self.alive)
            elif name in WORKERS:
                ready = re.compile(rf"{re.escape(name)}@\S+ ready\.")
                poll(f"{name} to be ready", lambda name=name, ready=ready: ready.findall(self.log_since_start(name)),
                     timeout, interval=0.5, alive=self.alive)

    def log_since_start(self, name: str) -> str:
        with self.log(name).open("rb") as log:
            log.seek(self.log_offset.get(name, 0))
            return log.read().decode(errors="replace")

    def alive(self) -> None:
        self.services.alive()
        super().alive()

    # -- faults --------------------------------------------------------------------------------

    def kill(self, name: str, *, group: bool) -> float:
        """SIGKILL a component: its whole process group (the host or pod is gone) or only its main
        pid (what is left keeps running, as after an OOM kill). Returns the time of the kill."""
        proc = self.procs.pop(name)
        killed_at = time.time()
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        return killed_at

    def left_by(self, component: str) -> list[Proc]:
        """Processes of ``component`` still alive (after its main pid was killed)."""
        return [p for p in marked_processes(self.token, self.sessions)
                if p.component == component and p.alive and p.cmdline]  # no cmdline: exiting

    def leftovers(self) -> list[Proc]:
        return [p for p in marked_processes(self.token, self.sessions) if p.alive]

    def kill_marked(self, procs: list[Proc]) -> None:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

    # -- the metadata DB -------------------------------------------------------------------------

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.services.pg_port, user=PG_USER, dbname="airflow",
                                connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def triggerer_job(self, name: str) -> int | None:
        """The id of ``name``'s running triggerer job, if its heartbeat is fresh (< 10 s)."""
        rows = self.sql("SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' AND hostname = %s "
                        "AND latest_heartbeat > now() - interval '10 seconds' ORDER BY id DESC LIMIT 1", name)
        return int(rows[0][0]) if rows else None

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        rows = self.sql(
            "SELECT ti.task_id, ti.map_index, ti.state, ti.try_number, ti.hostname, j.hostname "
            "FROM task_instance ti LEFT JOIN trigger t ON ti.trigger_id = t.id "
            "LEFT JOIN job j ON t.triggerer_id = j.id "
            "WHERE ti.dag_id = %s AND ti.run_id = %s", dag_id, run_id)
        keys = ("task_id", "map_index", "state", "try_number", "worker", "triggerer")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def trigger_dag(self, dag_id: str, conf: dict[str, Any]) -> str:
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"])


def new_token() -> str:
    return secrets.token_hex(8)
