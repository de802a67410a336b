"""``make e2e``: the provider in a running Airflow, the way a user lives it.

1. Starts the Dify emulator and Airflow's api-server, scheduler, dag-processor and triggerer on
   loopback (a throwaway ``AIRFLOW_HOME`` with SQLite; ``example_dags/`` as the DAGs folder), each
   in its own process group with its own log.
2. Creates the ``dify_default`` connection through the REST API (so the workers *and* the
   triggerer read it from the metadata DB), triggers examples 1 and 2 through ``/api/v2``, and
   holds both Dify runs in the emulator until Airflow is where it should be: example 1's operator
   running on the stream, example 2's sensor deferred in the triggerer. Then it lets them finish.
3. Checks, through the REST API, the DAG runs, the XComs (``workflow_run_id``, ``total_tokens``,
   the outputs), the "Dify run" extra link, and that the sensor was deferred and polled by the
   triggerer (task instance state + trigger row, the trigger's lines in the task log, the
   triggerer's log).
4. Opens the UI in headless Chromium (DevTools protocol, real mouse events): the task instance's
   "Dify run" link, the connection list's "Test" button, the connection edit form and the add
   form with the ``dify`` type. Screenshots go to ``.e2e/artifacts/``, logs to
   ``.e2e/artifacts/logs/``.
5. Then (Airflow 3.3+, not with ``--rest-only``) a person answers a Dify form in the UI:
   ``example_dify_human_input``'s required action, filled and approved in Browse > Required
   Actions; the answer checked in Airflow, XCom and the emulator (``scripts/e2e_hitl.py``).

Everything it starts it stops, by process id (SIGTERM, then SIGKILL after a grace). Installs
Debian's ``chromium`` with apt-get when ``/usr/bin/chromium`` is missing. Exits non-zero if any
check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo import (  # scripts/ is not a package: the shared helpers live in demo.py
    EXAMPLES,
    ROOT,
    EmulatorProcess,
    StepFailedError,
    airflow_argv,
    airflow_env,
    emulator_process,
    http_json,
    run_command,
    say,
    start_process,
    stop_on_sigterm,
    stop_process,
    tail,
)
from e2e_chat import run_chat_example
from e2e_hitl import run_hitl_example

ARTIFACTS = ROOT / ".e2e" / "artifacts"
LOGS = ARTIFACTS / "logs"
CHROMIUM = Path("/usr/bin/chromium")
DAG1, DAG2 = "example_dify_run_workflow", "example_dify_start_then_sense"
TRIGGER_CLASS = "dify_provider.triggers.workflow_run.WorkflowRunTrigger"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Checks and timing
# --------------------------------------------------------------------------------------------


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    phases: list[tuple[str, float]] = field(default_factory=list)

    def check(self, ok: bool, what: str, detail: Any = "") -> bool:
        if ok:
            self.passed.append(what)
            say(f"  ✓ {what}")
        else:
            self.failed.append(what)
            say(f"  ✗ {what}" + (f": {detail}" if detail != "" else ""))
        return ok

    def equal(self, actual: Any, expected: Any, what: str) -> bool:
        return self.check(actual == expected, what, f"expected {expected!r}, got {actual!r}")

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        say(f"  ! {message}")

    def summary(self, title: str, seconds: float, footer: str) -> int:
        """The closing box: counts, each phase's time, what failed; the exit code."""
        say()
        say("─" * 78)
        say(f"  {title}: {len(self.passed)} checks passed, {len(self.failed)} failed, "
            f"{len(self.warnings)} warning(s), in {seconds:.0f} s")
        for name, took in self.phases:
            say(f"    {took:6.1f} s  {name}")
        for failure in self.failed:
            say(f"  ✗ {failure}")
        for warning in self.warnings:
            say(f"  ! {warning}")
        say(f"  {footer}")
        say("─" * 78)
        return 1 if self.failed else 0

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        say(f"▶ {name}")
        began = time.monotonic()
        try:
            yield
        finally:
            self.phases.append((name, time.monotonic() - began))


def poll(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.25,
         alive: Callable[[], None] | None = None) -> T:
    """Call ``probe`` until it returns something truthy, at most ``timeout`` seconds; it checks
    state owned by other processes (REST API, emulator), so there is nothing to wait on instead.
    ``alive`` raises if a process we depend on has died, to fail fast with its log."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if alive is not None:
            alive()
        try:
            value = probe()
            if value:
                return value
        except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_error})" if last_error else ""
            raise StepFailedError(f"timed out after {timeout:.0f} s waiting for {what}{suffix}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Installing Chromium
# --------------------------------------------------------------------------------------------


def ensure_chromium() -> str:
    if CHROMIUM.exists():
        return "already installed"
    if os.geteuid() != 0 and not shutil.which("sudo"):
        raise StepFailedError(f"{CHROMIUM} is missing and installing it needs root: apt-get install chromium")
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = LOGS / "apt-get.log"
    began = time.monotonic()
    run_command("apt-get update", [*prefix, "apt-get", "update", "-q"], log, env, timeout=300)
    run_command("apt-get install chromium", [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                                              "chromium"], log, env, timeout=600)
    if not CHROMIUM.exists():
        raise StepFailedError(f"apt-get installed chromium but {CHROMIUM} is still missing; log: {log}")
    return f"installed with apt-get in {time.monotonic() - began:.0f} s"


# --------------------------------------------------------------------------------------------
# Airflow: components and REST API
# --------------------------------------------------------------------------------------------


class AirflowStack:
    """The four components as separate processes, and a small REST client for ``/api/v2``."""

    def __init__(self, home: Path, emulator: EmulatorProcess) -> None:
        from cryptography.fernet import Fernet  # an Airflow dependency

        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = airflow_env(
            home, EXAMPLES, None,
            API__HOST="127.0.0.1",
            API__PORT=str(self.port),
            API__BASE_URL=self.base,
            API__WORKERS="1",
            API__SECRET_KEY=secrets.token_hex(32),
            API_AUTH__JWT_SECRET=secrets.token_hex(32),
            CORE__EXECUTION_API_SERVER_URL=f"{self.base}/execution/",
            CORE__FERNET_KEY=Fernet.generate_key().decode(),
            CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",  # local only: the UI without a login
            CORE__PARALLELISM="4",
            CORE__TEST_CONNECTION="Enabled",
            DAG_PROCESSOR__REFRESH_INTERVAL="5",
            DAG_PROCESSOR__PARSING_PROCESSES="1",
            LOGGING__BASE_LOG_FOLDER=str(LOGS / "tasks"),
            LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
        )
        self.emulator = emulator
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> Path:
        return LOGS / f"{name}.log"

    def start(self) -> None:
        args = {"api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.port)]}
        for name in COMPONENTS:
            self.procs[name] = start_process(name, airflow_argv(*args.get(name, [name])), self.log(name), self.env)

    def alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise StepFailedError(f"airflow {name} exited with {proc.returncode}; log: {self.log(name)}\n"
                                      f"{tail(self.log(name))}")

    def stop(self, grace: float = 30.0) -> list[str]:
        """SIGTERM to every component's pid at once, then wait; SIGKILL the process group of
        any still running after ``grace`` (and any orphan left in a group)."""
        lines = []
        began = time.monotonic()
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, began + grace - time.monotonic()))
                lines.append(f"stopped airflow {name} (pid {proc.pid}) with SIGTERM "
                             f"after {time.monotonic() - began:.1f} s")
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                lines.append(f"killed airflow {name} (pid {proc.pid}) with SIGKILL after {grace:.0f} s")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # children a component left behind
        return lines

    # -- REST --------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return http_json(method, f"{self.base}/api/v2{path}", body, timeout=30)

    def get(self, path: str) -> Any:
        return self.api("GET", path)

    @staticmethod
    def q(value: str) -> str:
        return urllib.parse.quote(value, safe="")

    def ti_path(self, dag_id: str, run_id: str, task_id: str = "") -> str:
        path = f"/dags/{dag_id}/dagRuns/{self.q(run_id)}/taskInstances"
        return f"{path}/{task_id}" if task_id else path

    def ti(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self.get(self.ti_path(dag_id, run_id, task_id)))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self.get(f"{self.ti_path(dag_id, run_id, task_id)}/xcomEntries/{self.q(key)}")
        return entry["value"]

    def links(self, dag_id: str, run_id: str, task_id: str) -> dict[str, str | None]:
        return dict(self.get(f"{self.ti_path(dag_id, run_id, task_id)}/links")["extra_links"])

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> list[dict[str, Any]]:
        content = self.get(f"{self.ti_path(dag_id, run_id, task_id)}/logs/{try_number}?full_content=true")["content"]
        return [line if isinstance(line, dict) else {"event": str(line)} for line in content]

    def wait_healthy(self, timeout: float) -> dict[str, Any]:
        def healthy() -> dict[str, Any] | None:
            health = self.get("/monitor/health")
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return health if all((health.get(p) or {}).get("status") == "healthy" for p in parts) else None

        return poll("all four components to report healthy", healthy, timeout, interval=0.5, alive=self.alive)


# --------------------------------------------------------------------------------------------
# Headless Chromium over the DevTools protocol (aiohttp's websocket client, no extra package)
# --------------------------------------------------------------------------------------------


class BrowserError(RuntimeError):
    pass


_CENTER = """(() => {{ const el = {element}; if (!el) return null; el.scrollIntoView({{block: 'center'}});
  const r = el.getBoundingClientRect(); return r.width && r.height ? [r.x + r.width / 2, r.y + r.height / 2] : null;
}})()"""


class Browser:
    """Just enough of the DevTools protocol: navigate, evaluate, real mouse clicks, typing,
    screenshots. Chromium runs in its own process group and is stopped by pid."""

    def __init__(self, log: Path, width: int = 1440, height: int = 1200) -> None:
        self.log, self.width, self.height = log, width, height
        self.proc: subprocess.Popen[bytes] | None = None
        self.profile = Path(tempfile.mkdtemp(prefix="dify-e2e-chromium-"))
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.http: Any = None  # aiohttp.ClientSession, imported lazily
        self.ws: Any = None
        self.errors: list[str] = []

    async def __aenter__(self) -> Browser:
        import aiohttp  # a dependency of the provider (httpx-aiohttp)

        if self.proc is not None:
            raise BrowserError("this browser was already started (one chromium per Browser, stopped by stop())")
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={self.profile}",
                 "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                 f"--window-size={self.width},{self.height}", "about:blank"]
        self.proc = start_process("chromium", [str(CHROMIUM), *flags], self.log)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):  # written by chromium once it listens
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self.proc.returncode}; log: {self.log}\n{tail(self.log)}")
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium did not open its DevTools port within 30 s; log: {self.log}")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        self.http = aiohttp.ClientSession()
        try:
            async with self.http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            page = next(t for t in targets if t["type"] == "page")
            self.ws = await self.http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
            self._reader = asyncio.create_task(self._read())
            for method in ("Page.enable", "Runtime.enable"):
                await self.send(method)
            await self.send("Emulation.setDeviceMetricsOverride",
                            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.http is not None:
            with contextlib.suppress(Exception):
                await self.http.close()

    def stop(self) -> str:
        how = stop_process(self.proc, "chromium", grace=10) if self.proc else "chromium was not started"
        for _ in range(3):  # a helper process may still be flushing the profile as the group dies
            shutil.rmtree(self.profile, ignore_errors=True)
            if not self.profile.exists():
                break
        return how

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if data.get("id") in self._pending:
                future = self._pending.pop(data["id"])
                if "error" in data:
                    future.set_exception(BrowserError(f"{data['error'].get('message')}"))
                else:
                    future.set_result(data.get("result", {}))
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                self.errors.append(str(details.get("exception", {}).get("description") or details.get("text")))

    async def send(self, method: str, params: dict[str, Any] | None = None, within: float = 30) -> Any:
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params or {}}))
        return await asyncio.wait_for(future, within)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})

    async def js(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(str(result["exceptionDetails"].get("exception", {}).get("description")))
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, within: float = 30) -> Any:
        """Evaluate ``expression`` until it is truthy (the React UI renders asynchronously)."""
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(BrowserError):
                value = await self.js(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {within:.0f} s waiting for {what}")
            await asyncio.sleep(0.1)

    async def click(self, element: str, what: str, within: float = 30) -> None:
        """Click the element a JS expression finds, with real mouse events at its centre."""
        x, y = await self.wait_for(_CENTER.format(element=element), what, within)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                         "buttons": 1 if kind == "mousePressed" else 0,
                                                         "clickCount": 1})

    async def type(self, text: str) -> None:
        await self.send("Input.insertText", {"text": text})

    async def text(self, selector: str = "body") -> str:
        return str(await self.js(f"document.querySelector({json.dumps(selector)})?.innerText ?? ''"))

    async def screenshot(self, name: str) -> Path:
        """Save a PNG of the viewport once CSS animations and transitions (accordions, toasts) are over."""
        with contextlib.suppress(BrowserError):  # a late screenshot beats none
            await self.wait_for("document.getAnimations().every(a => a.playState !== 'running'"
                                " || a.effect?.getTiming().iterations === Infinity)",  # spinners never end
                                "animations to finish", within=5)
        path = ARTIFACTS / name
        data = await self.send("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(data["data"]))
        return path


def by_text(selector: str, text: str, exact: bool = True) -> str:
    """A JS expression for the first ``selector`` element whose visible text is (or starts with) ``text``."""
    test = f"=== {json.dumps(text)}" if exact else f".startsWith({json.dumps(text)})"
    return f"[...document.querySelectorAll({json.dumps(selector)})].find(e => e.innerText.trim(){test})"


# --------------------------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------------------------


@dataclass
class Runs:
    run1: str = ""  # Airflow DAG run ids
    run2: str = ""
    dify1: dict[str, Any] = field(default_factory=dict)  # emulator run snapshots (final)
    dify2: dict[str, Any] = field(default_factory=dict)


def console_link(emulator: EmulatorProcess, dify_run_id: str) -> str:
    return f"{emulator.root_url}/app/{emulator.apps['echo']['app_id']}/logs?workflow_run_id={dify_run_id}"


def prepare(stack: AirflowStack, emulator: EmulatorProcess, report: Report) -> None:
    with report.phase("airflow db migrate"):
        took = run_command("airflow db migrate", airflow_argv("db", "migrate"), LOGS / "db-migrate.log",
                           stack.env, timeout=300)
        say(f"  done in {took:.1f} s (AIRFLOW_HOME={stack.home})")
    with report.phase("Start api-server, scheduler, dag-processor, triggerer"):
        stack.start()
        for name, proc in stack.procs.items():
            say(f"  airflow {name:<14} pid {proc.pid:<8} log {stack.log(name).relative_to(ROOT)}")
        stack.wait_healthy(timeout=180)
        say(f"  all healthy; UI and REST API at {stack.base}")
    with report.phase("Create the dify_default connection (REST) and wait for the DAGs"):
        conn = emulator.connection("echo")
        created = stack.api("POST", "/connections", {
            "connection_id": "dify_default", "conn_type": conn["conn_type"], "host": conn["host"],
            "password": conn["password"], "extra": json.dumps(conn["extra"]),
        })
        report.equal((created["conn_type"], created["password"]), ("dify", "***"),
                     "POST /connections stored a dify connection and returns the key masked")

        def dags_ready() -> bool:
            ids = {d["dag_id"]: d for d in stack.get("/dags?tags=dify&limit=100")["dags"]}
            return DAG1 in ids and DAG2 in ids and not ids[DAG1]["is_paused"] and not ids[DAG2]["is_paused"]

        poll("the example DAGs to be parsed and unpaused", dags_ready, timeout=120, interval=0.5, alive=stack.alive)
        errors = stack.get("/importErrors")
        report.equal(errors["total_entries"], 0, "no DAG import errors (GET /importErrors)")


def run_examples(stack: AirflowStack, emulator: EmulatorProcess, report: Report) -> Runs:
    runs = Runs()
    with report.phase("Trigger examples 1 and 2 (REST); hold their Dify runs until Airflow is where it should be"):
        # Both runs stay 'running' in the emulator until finished below, whichever starts first.
        emulator.admin("POST", "/script", {"app": "echo", "scenarios": [{"hold": True}, {"hold": True}]})
        runs.run1 = stack.api("POST", f"/dags/{DAG1}/dagRuns", {"logical_date": None})["dag_run_id"]
        runs.run2 = stack.api("POST", f"/dags/{DAG2}/dagRuns", {"logical_date": None})["dag_run_id"]
        say(f"  {DAG1}: {runs.run1}\n  {DAG2}: {runs.run2}")

        def dify_run_of(dag_id: str, task_id: str, run_id: str) -> Callable[[], dict[str, Any] | None]:
            user = f"airflow:{dag_id}:{task_id}:{run_id}"
            return lambda: next((r for r in emulator.admin("GET", "/runs") if r["user"] == user), None)

        held1 = poll(f"{DAG1} to start its Dify run", dify_run_of(DAG1, "run", runs.run1), 180, alive=stack.alive)
        held2 = poll(f"{DAG2} to start its Dify run", dify_run_of(DAG2, "start", runs.run2), 180, alive=stack.alive)

        # Example 1: the operator is running, waiting on the stream; the run id is already in XCom.
        report.equal(stack.ti(DAG1, runs.run1, "run")["state"], "running",
                     "example 1: the operator task is running while its Dify run is")
        report.equal(poll("the run id in XCom", lambda: stack.xcom(DAG1, runs.run1, "run", "workflow_run_id"), 30),
                     held1["id"], "example 1: XCom workflow_run_id is pushed as soon as the run starts")
        link_while_running = stack.links(DAG1, runs.run1, "run").get("Dify run")
        if link_while_running:
            report.equal(link_while_running, console_link(emulator, held1["id"]),
                         "example 1: the 'Dify run' link works while the task is running")
        else:
            report.warn("the 'Dify run' link is empty while the task runs: Airflow 3's API server reads the "
                        "XCom key '_link_DifyRunLink', which the task pushes only when it ends (see report)")
        emulator.admin("POST", f"/runs/{held1['id']}/finish", {})

        # Example 2: the start task returned at once; the sensor must be deferred to the triggerer.
        def sensor_deferred() -> dict[str, Any] | None:
            ti = stack.ti(DAG2, runs.run2, "wait")
            return ti if ti["state"] == "deferred" else None

        deferred = poll("the sensor to be deferred", sensor_deferred, 180, alive=stack.alive)
        report.check(True, "example 2: the sensor task instance is in state 'deferred' while the run is held")
        report.equal((deferred.get("trigger") or {}).get("classpath"), TRIGGER_CLASS,
                     "example 2: its trigger row is the provider's WorkflowRunTrigger")

        def trigger_assigned() -> dict[str, Any] | None:
            ti = stack.ti(DAG2, runs.run2, "wait")
            return ti.get("triggerer_job") if ti["state"] == "deferred" else None

        job = poll("a triggerer to pick the trigger up", trigger_assigned, 120, alive=stack.alive)
        report.equal((job.get("job_type"), job.get("state")), ("TriggererJob", "running"),
                     "example 2: a running triggerer job has picked the trigger up")
        detail_path = f"/workflows/run/{held2['id']}"
        # The sensor polls once itself before deferring; a second poll can only come from the trigger.
        def trigger_polled() -> list[Any] | None:
            seen = emulator.admin("GET", f"/requests?method=GET&path={detail_path}")
            return seen if len(seen) >= 2 else None

        polls = poll("the triggerer to poll the held run", trigger_polled, 120, alive=stack.alive)
        report.check(len(polls) >= 2, f"example 2: the triggerer polled GET {detail_path} while the run was held",
                     len(polls))
        # Airflow's scheduler fails a deferred task whose trigger fires before it has drained the
        # executor's "success" for the try that deferred (apache/airflow#66374, #67287, #72716: fixed
        # for some states in 3.2.2, open for others). A user's run seldom ends within the scheduler's
        # next loop; this scenario would end it at once, so it lets the scheduler catch up first.
        defer_exit = (f"Received executor event with state success for task instance TaskInstanceKey("
                      f"dag_id='{DAG2}', task_id='wait', run_id='{runs.run2}', try_number=1")
        scheduler_log = stack.log("scheduler")
        try:
            poll("the scheduler to take in the deferral", lambda: defer_exit in scheduler_log.read_text(), 60,
                 alive=stack.alive)
        except StepFailedError:
            report.warn("the scheduler log never said it took in the deferral's executor event; releasing the run")
        emulator.admin("POST", f"/runs/{held2['id']}/finish", {})

    with report.phase("Wait for both DAG runs to finish"):
        for dag_id, run_id in ((DAG1, runs.run1), (DAG2, runs.run2)):
            path = f"/dags/{dag_id}/dagRuns/{stack.q(run_id)}"

            def finished(path: str = path) -> str | None:
                state = str(stack.get(path)["state"])
                return state if state in ("success", "failed") else None

            state = poll(f"{dag_id} to finish", finished, 180, alive=stack.alive)
            report.equal(state, "success", f"{dag_id}: DAG run {state}")
        runs.dify1 = emulator.admin("GET", f"/runs/{held1['id']}")
        runs.dify2 = emulator.admin("GET", f"/runs/{held2['id']}")
    return runs


def check_results(stack: AirflowStack, emulator: EmulatorProcess, runs: Runs, report: Report) -> None:
    with report.phase("Check task states, XComs, extra links and the deferral (REST API)"):
        d1, d2 = runs.dify1, runs.dify2
        report.equal((d1["status"], d2["status"], len(emulator.admin("GET", "/runs"))),
                     ("succeeded", "succeeded", 2), "the emulator saw exactly two runs, both succeeded")
        expected_tasks = ((DAG1, runs.run1, ["report", "run"]), (DAG2, runs.run2, ["start", "use", "wait"]))
        for dag_id, run_id, tasks in expected_tasks:
            states = {t["task_id"]: t["state"] for t in stack.get(stack.ti_path(dag_id, run_id))["task_instances"]}
            report.equal(states, dict.fromkeys(tasks, "success"), f"{dag_id}: every task succeeded")

        # Example 1: outputs and tokens downstream, the extra link.
        report.equal(stack.xcom(DAG1, runs.run1, "run", "workflow_run_id"), d1["id"],
                     "example 1: XCom run/workflow_run_id is the emulator's run id")
        report.equal(stack.xcom(DAG1, runs.run1, "run", "total_tokens"), d1["total_tokens"],
                     f"example 1: XCom run/total_tokens = {d1['total_tokens']}, as the emulator counted")
        report.equal(stack.xcom(DAG1, runs.run1, "run"), d1["outputs"],
                     "example 1: XCom run/return_value is the run's outputs")
        report.equal(stack.xcom(DAG1, runs.run1, "report"),
                     {"outputs": d1["outputs"], "total_tokens": d1["total_tokens"]},
                     "example 1: the downstream @task got outputs and total_tokens through XCom")
        report.equal(stack.links(DAG1, runs.run1, "run"), {"Dify run": console_link(emulator, d1["id"])},
                     "example 1: GET .../taskInstances/run/links returns the 'Dify run' console URL")

        # Example 2: the ids from the start task, the sensor's result.
        report.equal(stack.xcom(DAG2, runs.run2, "start", "workflow_run_id"), d2["id"],
                     "example 2: XCom start/workflow_run_id is the emulator's run id")
        report.equal(stack.links(DAG2, runs.run2, "start"), {"Dify run": console_link(emulator, d2["id"])},
                     "example 2: the start task's 'Dify run' link")
        detail = stack.xcom(DAG2, runs.run2, "wait")
        report.equal((detail.get("status"), detail.get("outputs"), detail.get("total_tokens")),
                     ("succeeded", d2["outputs"], d2["total_tokens"]),
                     "example 2: the sensor's XCom is the finished run's status, outputs and total_tokens")
        report.equal(stack.xcom(DAG2, runs.run2, "use"), d2["outputs"]["text"],
                     "example 2: the downstream @task used the sensor's outputs")

        # The deferral, as the logs tell it.
        wait_ti = stack.ti(DAG2, runs.run2, "wait")
        report.equal((wait_ti["try_number"], wait_ti["trigger"]), (1, None),
                     "example 2: the sensor finished in its first try and its trigger is cleaned up")
        lines = stack.task_log(DAG2, runs.run2, "wait")
        events = [str(line.get("event", "")) for line in lines]
        report.check(any("Pausing task as DEFERRED" in e for e in events),
                     "example 2: the sensor's task log says 'Pausing task as DEFERRED'")
        from_trigger = [line for line in lines if "WorkflowRunTrigger" in str(line.get("logger", ""))]
        report.check(any(d2["id"] in str(line.get("event")) for line in from_trigger),
                     "example 2: the task log has the trigger's own lines about the run (from the triggerer)",
                     events[-8:])
        # The triggerer writes the trigger's own log file; the API server serves it with the task log.
        trigger_name = f"{DAG2}/{runs.run2}/wait/-1/1"
        report.check(any(e.startswith(f"trigger {trigger_name}") and e.endswith("starting") for e in events)
                     and any(e == "Trigger fired event" for e in events),
                     f"example 2: the triggerer's lines 'trigger {trigger_name} (ID n) starting' and "
                     "'Trigger fired event' are in the task log", events[-8:])
        # 3.1+ names the sources in an event line, 3.0 in the "sources" of its source-details line
        sources = [f"{line.get('event', '')} {line.get('sources', '')}" for line in lines]
        report.check(any(".log.trigger." in source for source in sources),
                     "example 2: one of the task log's sources is the trigger log file the triggerer wrote")

        # The hook's "Test" as the API server runs it (the UI's Test button is tried in the browser).
        conn = emulator.connection("echo")
        tested = stack.api("POST", "/connections/test", {
            "connection_id": "dify_default", "conn_type": "dify", "host": conn["host"], "password": conn["password"],
            "extra": json.dumps(conn["extra"]),
        })
        report.check(tested.get("status") is True and "Dify 1.13.2" in str(tested.get("message")),
                     f"POST /connections/test: {tested.get('message')}", tested)


async def check_ui(stack: AirflowStack, emulator: EmulatorProcess, runs: Runs, report: Report) -> None:
    browser = Browser(LOGS / "chromium.log")
    try:
        async with browser as page:
            await _task_instance_page(page, stack, emulator, runs, report)
            await _connection_pages(page, stack, emulator, report)
            report.check(not page.errors, "no uncaught JavaScript errors in the UI", page.errors[:3])
    except BrowserError as exc:
        report.check(False, "the browser checks ran to the end", exc)
        with contextlib.suppress(BrowserError):
            shot = await browser.screenshot("failed-browser-check.png")
            say(f"  screenshot {shot.relative_to(ROOT)}")
    finally:
        say(f"  {browser.stop()}")


async def _task_instance_page(page: Browser, stack: AirflowStack, emulator: EmulatorProcess, runs: Runs,
                              report: Report) -> None:
    url = f"{stack.base}/dags/{DAG1}/runs/{stack.q(runs.run1)}/tasks/run"
    await page.goto(url)
    # The task instance page opens on its logs; the extra links are under "Details".
    await page.wait_for("document.body.innerText.includes('Started Dify workflow run')", "the task log in the UI")
    report.check(True, "task instance page: the task log shows 'Started Dify workflow run'")
    await page.click(by_text("button, a", "Details"), "the Details tab")
    anchor = by_text("a", "Dify run")
    href = await page.wait_for(f"{anchor}?.href", "the 'Dify run' button")
    report.equal(href, console_link(emulator, runs.dify1["id"]),
                 "task instance page: the 'Dify run' button links to the run in the console")
    report.equal(await page.js(f"{anchor}.target"), "_blank", "task instance page: the link opens a new tab")
    shot = await page.screenshot("task-instance-dify-run-link.png")
    say(f"  screenshot {shot.relative_to(ROOT)}")


async def _connection_pages(page: Browser, stack: AirflowStack, emulator: EmulatorProcess, report: Report) -> None:
    dialog = "[role=dialog]"
    await page.goto(f"{stack.base}/connections")
    await page.wait_for("document.body.innerText.includes('dify_default')", "the connection list")

    # Edit form: relabelled standard fields, hidden ones gone, then the extra fields.
    await page.click("document.querySelector('button[aria-label=\"Edit Connection\"]')", "the Edit button")
    await page.wait_for(f"document.querySelector('{dialog}')?.innerText.includes('API base URL')", "the edit form")
    form = await page.text(dialog)
    report.check("Dify" in form and "API base URL" in form and "App API key" in form,
                 "edit form: type 'Dify', host and password relabelled 'API base URL' / 'App API key'", form)
    labels = await page.js(f"[...document.querySelectorAll('{dialog} label')].map(e => e.innerText.trim())")
    report.check({"Description", "API base URL", "App API key"} <= set(labels)
                 and not {"Login", "Schema", "Port", "Host", "Password"} & set(labels),
                 "edit form: login, schema and port are hidden", labels)
    host = await page.js(f"document.querySelector('{dialog} input[name=host]')?.value")
    report.equal(host, emulator.base_url, "edit form: 'API base URL' holds the stored host")
    shot = await page.screenshot("connection-edit.png")
    say(f"  screenshot {shot.relative_to(ROOT)}")
    await page.click(by_text(f"{dialog} button", "Extra Fields", exact=False), "the Extra Fields accordion")
    await page.wait_for(f"document.querySelector('{dialog}')?.innerText.includes('Console URL')", "the extra fields")
    values = await page.js(f"Object.fromEntries([...document.querySelectorAll('{dialog} input')]"
                           ".filter(e => e.name.startsWith('element_')).map(e => [e.name.slice(8), e.value]))")
    report.equal({k: values.get(k) for k in ("console_url", "app_id")},
                 {"console_url": emulator.root_url, "app_id": emulator.apps["echo"]["app_id"]},
                 "edit form: 'Console URL' and 'App id' extra fields show the stored values")
    shot = await page.screenshot("connection-edit-extra-fields.png")
    say(f"  screenshot {shot.relative_to(ROOT)}")

    # Add form: the dify type in the picker, every extra field with its default.
    await page.goto(f"{stack.base}/connections")
    await page.click(by_text("button", "Add Connection"), "the Add Connection button")
    await page.click(f"document.querySelector('{dialog} input[role=combobox]')", "the connection type picker")
    await page.type("Dify")
    await page.click(by_text("[role=option]", "Dify"), "the 'Dify' option")
    await page.wait_for(f"document.querySelector('{dialog}')?.innerText.includes('API base URL')", "the Dify form")
    await page.click(by_text(f"{dialog} button", "Extra Fields", exact=False), "the Extra Fields accordion")
    await page.wait_for(f"document.querySelector('{dialog}')?.innerText.includes('Request timeout')", "extra fields")
    form = await page.text(dialog)
    expected = ["Request timeout (seconds)", "Verify TLS certificates", "CA bundle path", "Proxy URL",
                "Default end-user id", "Console URL", "App id"]
    report.check(all(label in form for label in expected), "add form: the 'Dify' type shows its 7 extra fields",
                 [label for label in expected if label not in form])
    values = await page.js(f"Object.fromEntries([...document.querySelectorAll('{dialog} input')]"
                           ".filter(e => e.name.startsWith('element_'))"
                           ".map(e => [e.name.slice(8), e.type === 'checkbox' ? e.checked : e.value]))")
    report.equal({k: values.get(k) for k in ("timeout", "verify_ssl", "default_user", "console_url")},
                 {"timeout": "30", "verify_ssl": True, "default_user": "airflow", "console_url": ""},
                 "add form: the extra fields start at their defaults")
    if values.get("proxy") == "***":
        # Airflow masks extra keys containing "proxy"; the hook reads a saved mask as "no proxy".
        say("  note: the add form pre-fills 'Proxy URL' with Airflow's mask '***' (read as unset by the hook)")
    shot = await page.screenshot("connection-add-dify.png")
    say(f"  screenshot {shot.relative_to(ROOT)}")

    # The list's "Test" button: the hook's read-only test against the emulator, run by the API server.
    await page.goto(f"{stack.base}/connections")
    await page.wait_for("document.body.innerText.includes('dify_default')", "the connection list")
    await page.click("document.querySelector('button[aria-label=\"Test Connection\"]')", "the Test button")
    toast = await page.wait_for(
        "[...document.querySelectorAll('[role=status], [role=alert], [data-scope=toast]')]"
        ".map(e => e.innerText).find(t => t.includes('Test Connection'))", "the test result")
    shot = await page.screenshot("connection-test.png")
    say(f"  screenshot {shot.relative_to(ROOT)}")
    if "Successful" not in toast and "Bad Request" in toast:
        # Airflow 3.3.2: the list's Test button sends port=0 for a connection stored without a port and
        # the API answers 400 "host or port to test differs" (every connection type; REST test above).
        report.warn("the connection list's Test button answers 'Bad Request': Airflow 3.3.2's UI sends "
                    "port=0 for a connection without a port (not the provider; see report)")
    else:
        report.check("Successful" in toast and "1.13.2" in toast,
                     "connection list: 'Test' succeeds and reports the Dify version", toast)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="End-to-end: a running Airflow + headless Chromium.")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary AIRFLOW_HOME")
    parser.add_argument("--rest-only", action="store_true",
                        help="skip the browser: the components, the runs and every REST check only")
    args = parser.parse_args(argv)

    stop_on_sigterm()
    began = time.monotonic()
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    LOGS.mkdir(parents=True)
    report = Report()
    home = Path(tempfile.mkdtemp(prefix="dify-e2e-home-"))
    try:
        if not args.rest_only:
            with report.phase("Chromium"):
                say(f"  {CHROMIUM}: {ensure_chromium()}")
        with contextlib.ExitStack() as exits:
            with report.phase("Start the Dify emulator"):
                emulator = exits.enter_context(emulator_process(LOGS / "emulator.log"))
                say(f"  pid {emulator.proc.pid}, serving {emulator.base_url}")
            stack = AirflowStack(home, emulator)
            try:
                prepare(stack, emulator, report)
                runs = run_examples(stack, emulator, report)
                check_results(stack, emulator, runs, report)
                if not args.rest_only:
                    with report.phase("Headless Chromium: the UI"):
                        asyncio.run(check_ui(stack, emulator, runs, report))
                run_chat_example(stack, emulator, report, poll)  # after the UI's checks of dify_default
                if not args.rest_only:  # Airflow 3.3+ only (it says so and skips otherwise)
                    run_hitl_example(stack, emulator, report, poll, lambda: Browser(LOGS / "chromium-hitl.log"))
            finally:
                with report.phase("Stop everything (by pid)"):
                    for line in stack.stop():
                        say(f"  {line}")
    except StepFailedError as exc:
        report.check(False, "the scenario ran to the end", exc)
    except KeyboardInterrupt:
        report.check(False, "the scenario ran to the end", "interrupted")
    finally:
        if not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)

    return report.summary("e2e", time.monotonic() - began, f"artifacts: {ARTIFACTS.relative_to(ROOT)}/ "
                          "(screenshots, logs/)")


if __name__ == "__main__":
    sys.exit(main())
