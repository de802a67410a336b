"""``make demo``: run example DAG 1 through real Airflow against the bundled Dify emulator.

Starts the emulator (``python -m dify_provider.testing serve``) in the background, points
``AIRFLOW_CONN_DIFY_DEFAULT`` at it, creates a throwaway ``AIRFLOW_HOME`` with SQLite, runs
``airflow dags test example_dify_run_workflow`` on ``example_dags/``, and prints the run's outputs
and token usage as Airflow recorded them (XCom in the metadata DB). Stops the emulator by pid.

With ``AIRFLOW_CONN_DIFY_DEFAULT`` already set (a real Dify, see the README), no emulator is
started and the same DAG runs against that Dify instead; its workflow needs a ``text`` input.

The helpers here (emulator process, stopping by pid, the Airflow environment) are shared with
``scripts/e2e.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "example_dags"
DEMO_DAG = "example_dify_run_workflow"
CONN_ENV = "AIRFLOW_CONN_DIFY_DEFAULT"


def say(message: str = "") -> None:
    print(message, flush=True)


class StepFailedError(RuntimeError):
    """A step of the demo / e2e check failed; the message says what and where to look."""


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def start_process(name: str, argv: list[str], log: Path, env: Mapping[str, str] | None = None,
                  cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (process group) with stdout+stderr in ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - argv is built here, never from user input
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(env or os.environ),
            cwd=cwd, start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[Any], name: str, grace: float = 20.0) -> str:
    """SIGTERM to the process's own pid, SIGKILL to its process group after ``grace`` seconds.

    The TERM goes to the pid only: Airflow components forward it to their children and wait for
    them. Whatever is left in the group after the grace (or after a clean exit) is killed, so
    nothing this script started outlives it. Returns how it ended, for the summary.
    """
    if proc.poll() is not None:
        _kill_group(proc.pid)
        return f"{name} (pid {proc.pid}) had already exited with {proc.returncode}"
    began = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
        how = f"stopped {name} (pid {proc.pid}) with SIGTERM in {time.monotonic() - began:.1f} s"
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        how = f"killed {name} (pid {proc.pid}) with SIGKILL after {grace:.0f} s"
    _kill_group(proc.pid)
    return how


def _kill_group(pgid: int) -> None:
    """Kill stragglers left in a process group whose leader has exited (orphaned children)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def stop_on_sigterm() -> None:
    """Turn SIGTERM (a CI timeout, ``kill``) into KeyboardInterrupt, so ``finally`` blocks stop the
    processes this script started: they run in their own sessions and would not get the signal."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def run_command(name: str, argv: list[str], log: Path, env: Mapping[str, str], timeout: float) -> float:
    """Run a command to completion (own log, own process group); raise on failure. Returns seconds."""
    began = time.monotonic()
    proc = start_process(name, argv, log, env)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc, name, grace=5)
        raise StepFailedError(f"{name} did not finish within {timeout:.0f} s; log: {log}\n{tail(log)}") from None
    except BaseException:  # interrupted: it runs in its own session, so stop it here
        stop_process(proc, name, grace=5)
        raise
    finally:
        if proc.poll() is not None:
            _kill_group(proc.pid)
    if code != 0:
        raise StepFailedError(f"{name} exited with {code}; log: {log}\n{tail(log)}")
    return time.monotonic() - began


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    | " + line for line in text[-lines:])


# --------------------------------------------------------------------------------------------
# The emulator as a background process
# --------------------------------------------------------------------------------------------

_SERVING = re.compile(r"serving (?P<url>http://\S+/v1)\s*$")
_READY = re.compile(r"^ready \(\d+ apps\)\s*$")
_APP = re.compile(r"^app (?P<name>\S+)\s+mode=(?P<mode>\S+)\s+key=(?P<key>\S+)\s+app_id=(?P<app_id>\S+)\s*$")


@dataclass
class EmulatorProcess:
    proc: subprocess.Popen[str]
    base_url: str  # ends in /v1
    apps: dict[str, dict[str, str]]  # name -> {"key", "app_id", "mode"}
    log: Path

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    @property
    def admin_url(self) -> str:
        return f"{self.root_url}/_emulator"

    def connection(self, app: str = "echo") -> dict[str, Any]:
        """The ``dify`` Airflow connection (JSON form) for ``app``; the console link goes to the
        emulator, which stands in for the Dify console."""
        chosen = self.apps[app]
        return {"conn_type": "dify", "host": self.base_url, "password": chosen["key"],
                "extra": {"console_url": self.root_url, "app_id": chosen["app_id"]}}

    def admin(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """Call the emulator's admin API (``/_emulator/...``) and return the decoded JSON."""
        return http_json(method, f"{self.admin_url}{path}", body, timeout=timeout)


def http_json(method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None,
              timeout: float = 30.0) -> Any:
    if not url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        raise ValueError(f"refusing a non-loopback URL: {url}")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback only, checked
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw.strip() else None


@contextlib.contextmanager
def emulator_process(log: Path, startup_timeout: float = 60.0) -> Iterator[EmulatorProcess]:
    """Run ``python -m dify_provider.testing serve --port 0`` and parse what it prints; stop it
    by pid (SIGTERM, then SIGKILL) however the block ends."""
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dify_provider.testing", "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=log.open("ab"), stdin=subprocess.DEVNULL, text=True, cwd=ROOT,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines, log), daemon=True).start()
    try:
        base_url: str | None = None
        apps: dict[str, dict[str, str]] = {}
        deadline = time.monotonic() + startup_timeout
        while True:  # until the "ready" line, printed after every app (not after the first one)
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise StepFailedError(f"the emulator did not start in {startup_timeout:.0f} s; log: {log}") from None
            if line is None:
                raise StepFailedError(f"the emulator exited with {proc.wait()}; log: {log}\n{tail(log)}")
            if match := _SERVING.search(line):
                base_url = match["url"]
            elif match := _APP.match(line):
                apps[match["name"]] = {"key": match["key"], "app_id": match["app_id"], "mode": match["mode"]}
            elif _READY.match(line):
                break
        if base_url is None or "echo" not in apps:
            raise StepFailedError(f"the emulator printed no URL or no 'echo' app; log: {log}\n{tail(log)}")
        assert base_url is not None
        yield EmulatorProcess(proc, base_url, apps, log)
    finally:
        say(f"  {stop_process(proc, 'the emulator', grace=10)}")


def _pump(stream: IO[str] | None, lines: queue.Queue[str | None], log: Path) -> None:
    """Forward the emulator's stdout to the queue (start-up parsing) and to its log file."""
    if stream is None:
        lines.put(None)
        return
    with log.open("a") as out:
        for line in stream:
            out.write(line)
            out.flush()
            lines.put(line.rstrip("\n"))
    lines.put(None)


# --------------------------------------------------------------------------------------------
# Airflow environment and metadata DB
# --------------------------------------------------------------------------------------------


def airflow_env(home: Path, dags: Path, connection: Mapping[str, Any] | None, **settings: str) -> dict[str, str]:
    """The environment for Airflow commands: a private home, SQLite, no bundled examples.

    Inherited ``AIRFLOW__*`` / ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*`` variables are dropped, so a
    real deployment's settings (e.g. a Postgres ``sql_alchemy_conn``) are never touched.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PYTHONUNBUFFERED": "1",
    })
    env.update({f"AIRFLOW__{key.upper()}": value for key, value in settings.items()})
    if connection is not None:
        env[CONN_ENV] = json.dumps(dict(connection))
    return env


def airflow_argv(*args: str) -> list[str]:
    """``airflow ...`` with this interpreter (the venv's), whatever is on ``PATH``."""
    return [sys.executable, "-m", "airflow", *args]


@dataclass
class RunRecord:
    run_id: str
    state: str
    task_states: dict[str, str]
    xcoms: dict[tuple[str, str], Any]  # (task_id, key) -> value, map_index -1 only


def latest_run(db: Path, dag_id: str) -> RunRecord:
    """The newest run of ``dag_id`` as Airflow recorded it: states and XComs, from the metadata DB."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
                           (dag_id,)).fetchone()
        if row is None:
            raise StepFailedError(f"no run of {dag_id} in {db}")
        run_id, state = row
        task_states = dict(conn.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ? AND map_index = -1",
            (dag_id, run_id)).fetchall())
        xcoms = {(task_id, key): _decode(value) for task_id, key, value in conn.execute(
            "SELECT task_id, key, value FROM xcom WHERE dag_id = ? AND run_id = ? AND map_index = -1",
            (dag_id, run_id))}
    return RunRecord(run_id, str(state), {k: str(v) for k, v in task_states.items()}, xcoms)


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


# --------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------


_TASK_LOG_LINE = re.compile(r"^\S+Z \[\w+\s*\] (?P<event>(Started Dify|Dify) (workflow )?run .*?) \[airflow\.task")


def _spend(usage: dict[str, Any]) -> str:
    """The XCom ``usage`` in one line: price, currency and the nodes that spent."""
    if not usage:
        return "-"
    nodes = ", ".join(f"{n['node_id']} {n['total_tokens']}" for n in usage.get("nodes") or [])
    price = f"{usage['total_price']} {usage.get('currency') or ''}".strip() if "total_price" in usage else "no price"
    return f"{price} ({usage.get('source')}; tokens by node: {nodes or '-'})"


def task_log_lines(log: Path) -> list[str]:
    """The operator's own lines from an ``airflow dags test`` log (timestamps and loggers cut)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if match := _TASK_LOG_LINE.match(line):
            found.append(match["event"].split(": http", 1)[0])  # the URL is printed as the link
    return found


def _print_result(record: RunRecord, elapsed: float, against: str, task_log: list[str]) -> None:
    x = record.xcoms
    outputs = x.get(("run", "return_value"))
    report = x.get(("report", "return_value")) or {}
    width, indent = 15, " " * 17
    rule = "─" * 78
    say()
    say(rule)
    say(f"  Dify workflow run through Airflow ({against})")
    say(rule)
    rows = [
        ("DAG run", f"{DEMO_DAG}  {record.run_id}  {record.state}"),
        ("Tasks", "  ".join(f"{t}: {s}" for t, s in sorted(record.task_states.items(), reverse=True))),
        ("Dify run", f"{x.get(('run', 'workflow_run_id'))}  {x.get(('run', 'status'))}"),
        ("Token usage", f"{x.get(('run', 'total_tokens'))} tokens, {x.get(('run', 'total_steps'))} steps, "
                        f"{float(x.get(('run', 'elapsed_time')) or 0):.2f} s"),
        ("Spend", _spend(x.get(("run", "usage")) or {})),
        ("Trace id", f"{x.get(('run', 'trace_id')) or '-'} (sent as X-Trace-Id)"),
    ]
    for label, value in rows:
        say(f"  {label:<{width}}{value}")
    say(f"  {'Outputs':<{width}}" + json.dumps(outputs, indent=2).replace("\n", "\n" + indent))
    say(f"  {'Downstream':<{width}}report() got outputs.text={report.get('outputs', {}).get('text')!r} "
        f"and total_tokens={report.get('total_tokens')} from XCom")
    say(f"  {'Dify run link':<{width}}{x.get(('run', '_link_DifyRunLink')) or x.get(('run', 'dify_run_url')) or '-'}")
    if task_log:
        say(f"  {'Task log':<{width}}" + ("\n" + indent).join(task_log))
    say(rule)
    say(f"  Done in {elapsed:.1f} s.")


def _explain_failure(db: Path, log: Path) -> str:
    """What went wrong, in a few lines: task states and the exceptions the tasks raised."""
    lines = [f"airflow dags test failed; full log: {log}"]
    with contextlib.suppress(StepFailedError, sqlite3.Error):
        record = latest_run(db, DEMO_DAG)
        lines.append(f"DAG run {record.state}; tasks: {record.task_states}")
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    raised = [line.strip() for line in text if re.match(r"^\s*[\w.]+(Exception|Error): ", line)]
    lines += [f"  {line}" for line in dict.fromkeys(raised)] or [tail(log)]
    return "\n".join(lines)


def _check(record: RunRecord, emulator: EmulatorProcess | None) -> None:
    problems = []
    if record.state != "success":
        problems.append(f"the DAG run ended {record.state} (tasks: {record.task_states})")
    outputs = record.xcoms.get(("run", "return_value"))
    tokens = record.xcoms.get(("run", "total_tokens"))
    report = record.xcoms.get(("report", "return_value"))
    if not isinstance(outputs, dict) or not outputs:
        problems.append(f"no outputs in XCom: {outputs!r}")
    if not isinstance(tokens, int):
        problems.append(f"no total_tokens in XCom: {tokens!r}")
    if report != {"outputs": outputs, "total_tokens": tokens}:
        problems.append(f"the downstream task did not receive the outputs and tokens: {report!r}")
    if emulator is not None and not problems:
        runs = emulator.admin("GET", "/runs")
        run_id = record.xcoms.get(("run", "workflow_run_id"))
        seen = [r for r in runs if r["id"] == run_id]
        if len(runs) != 1 or not seen:
            problems.append(f"the emulator saw {len(runs)} run(s), expected exactly run {run_id}")
        elif (seen[0]["outputs"], seen[0]["total_tokens"]) != (outputs, tokens):
            problems.append(f"Airflow's XCom disagrees with the emulator: {seen[0]}")
    if problems:
        raise StepFailedError("; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME and logs")
    args = parser.parse_args(argv)

    stop_on_sigterm()
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dify-demo-"))
    home, logs = work / "airflow-home", work / "logs"
    home.mkdir()
    real = os.environ.get(CONN_ENV)
    ok = False
    try:
        with contextlib.ExitStack() as stack:
            emulator: EmulatorProcess | None = None
            if real:
                connection = json.loads(real)
                against = f"your Dify at {connection.get('host')}"
                say(f"▶ {CONN_ENV} is set: running against {connection.get('host')} (no emulator)")
            else:
                say("▶ Starting the Dify emulator (no Dify account needed)")
                emulator = stack.enter_context(emulator_process(logs / "emulator.log"))
                connection = emulator.connection("echo")
                against = f"Dify emulator at {emulator.base_url}"
                say(f"  serving {emulator.base_url}, app 'echo' (key {emulator.apps['echo']['key']})")
            env = airflow_env(home, EXAMPLES, connection)

            say(f"▶ airflow db migrate (AIRFLOW_HOME={home})")
            took = run_command("airflow db migrate", airflow_argv("db", "migrate"), logs / "db-migrate.log",
                               env, timeout=300)
            say(f"  done in {took:.1f} s")

            say(f"▶ airflow dags test {DEMO_DAG}  (DAGs folder: {EXAMPLES.relative_to(ROOT)}/)")
            try:
                took = run_command("airflow dags test", airflow_argv("dags", "test", DEMO_DAG),
                                   logs / "dags-test.log", env, timeout=600)
            except StepFailedError:
                raise StepFailedError(_explain_failure(home / "airflow.db", logs / "dags-test.log")) from None
            say(f"  done in {took:.1f} s (full log: {logs / 'dags-test.log'})")

            record = latest_run(home / "airflow.db", DEMO_DAG)
            _check(record, emulator)
            ok = True
        _print_result(record, time.monotonic() - began, against, task_log_lines(logs / "dags-test.log"))
        return 0
    except StepFailedError as exc:
        say(f"\n✗ demo failed: {exc}")
        return 1
    except KeyboardInterrupt:
        say("\n✗ interrupted")
        return 130
    finally:
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"  (kept {work} for inspection)")


if __name__ == "__main__":
    sys.exit(main())
