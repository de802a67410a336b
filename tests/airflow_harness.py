"""Run DAGs through real Airflow (``dag.test()``, 2.11 or 3.x) from pytest, in the test's own process.

What differs by Airflow generation lives in a driver module (``harness_af3``, ``harness_af2``);
the descriptions of ``dag.test()``'s shortcomings below are 3.3.2's, ``harness_af2`` lists 2.11's.

Usage (a synchronous test; ``tests/conftest.py`` has already pointed ``AIRFLOW_HOME`` at a
throwaway directory)::

    from airflow_harness import run_dag

    @pytest.mark.airflow
    def test_xcom_flows(dag_id: str) -> None:
        with DAG(dag_id, schedule=None) as dag:
            ...
        result = run_dag(dag)
        assert result.state == "success"
        assert result.ti("pull").try_number == 1
        assert result.xcom("push") == 41
        assert "pulled 41" in result.log("pull")

What this does that a bare ``dag.test()`` does not:

* prepares the metadata DB once per process (:func:`prepare_airflow`) and warms the in-process
  Execution API (its first request costs ~5.5 s on 2 cores: Cadwyn builds the versioned routers);
* writes a DAG built inside a test to the DB first (:func:`sync_dag`), so ``dag.test()`` does not
  fail with "dag is not serialized";
* resolves deferrals the way a deployment does (see :func:`_fire_trigger_like_production`):
  ``dag.test()`` 3.3.2 itself drops ``defer(kwargs=...)`` when the event arrives, resumes the task on
  ``TaskSuccessEvent``, ignores ``defer(timeout=...)``, never calls ``cleanup()`` and cannot read
  metadata-DB connections from a trigger;
* captures every log line a task (and its inline trigger) wrote, per task / map index / try. They
  are *not* passed through the secrets masker (in-process ``dag.test()`` never masks), so asserting
  that a secret is absent is stricter than a deployment's log;
* bounds the run with a watchdog (``timeout``) instead of hanging the test session;
* returns a :class:`DagRunResult` to assert on (states, tries, XComs, logs, task state store).

Everything runs in-process: tasks, the Execution API, and triggers (inline, with ``asyncio.run``; so
call :func:`run_dag` from a *sync* test and run any HTTP server the DAG talks to in a background
thread, not on the test's event loop). Retries with ``retry_delay=timedelta(0)`` and
``mode="reschedule"`` sensors with ``poke_interval=0`` re-run at once; a longer delay is waited out
in real time (``dag.test()`` polls every second).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import json
import logging
import os
import signal
import threading
import time
import traceback
import types
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dify_provider.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_3_PLUS

# How dag.test() runs a task and its trigger differs by Airflow generation; the rest does not.
if AIRFLOW_V_3_0_PLUS:
    import harness_af3 as _DRIVER
else:
    import harness_af2 as _DRIVER  # type: ignore[no-redef]

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import DAG

__all__ = [
    "HOME_MARKER",
    "DagRunResult",
    "DagRunTimeoutError",
    "LogLine",
    "PrepareTimings",
    "TaskInstanceResult",
    "TryResult",
    "connection_env",
    "prepare_airflow",
    "run_dag",
    "sync_dag",
]

#: File that ``tests/conftest.py`` puts in the throwaway ``AIRFLOW_HOME``. :func:`prepare_airflow`
#: refuses to touch a metadata DB unless it lives in a home carrying this marker.
HOME_MARKER = ".dify-provider-test-home"

_MISSING: Any = object()
_harness_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# One-time preparation
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PrepareTimings:
    """Seconds spent by :func:`prepare_airflow` (once per process)."""

    import_airflow: float
    init_db: float
    warm_execution_api: float


def _check_throwaway_home() -> Path:
    home = Path(os.environ.get("AIRFLOW_HOME", ""))
    if not home.is_dir() or not (home / HOME_MARKER).exists():
        raise RuntimeError(
            f"AIRFLOW_HOME={str(home)!r} is not the throwaway home made by tests/conftest.py; "
            "refusing to create or reset a metadata DB there."
        )
    return home


@functools.cache
def prepare_airflow() -> PrepareTimings:
    """Create the metadata DB in the throwaway ``AIRFLOW_HOME`` and warm Airflow up, once.

    Idempotent and cached: every :func:`run_dag` calls it, the ``airflow_db`` fixture calls it
    first so the cost lands in the fixture, not in whichever test happens to run first.
    """
    home = _check_throwaway_home()
    started = time.perf_counter()
    from airflow import settings
    from airflow.utils import db

    imported = time.perf_counter()
    url = str(settings.SQL_ALCHEMY_CONN or "")
    if not url.startswith("sqlite:") or str(home) not in url:
        raise RuntimeError(f"metadata DB {url!r} is not inside the throwaway AIRFLOW_HOME {home}")
    # A fresh SQLite file: initdb() creates the schema from the ORM models (no migrations).
    db.initdb()
    _DRIVER.after_initdb()
    initialised = time.perf_counter()
    _DRIVER.warm()
    warmed = time.perf_counter()
    return PrepareTimings(
        import_airflow=imported - started,
        init_db=initialised - imported,
        warm_execution_api=warmed - initialised,
    )


def sync_dag(dag: DAG) -> None:
    """Write ``dag`` (built in a test, no file in the DAGs folder) to the metadata DB; the
    provider ships this for its users as :func:`dify_provider.testing.airflow.register_dag`."""
    from dify_provider.testing.airflow import register_dag

    register_dag(dag)


def connection_env(conn_id: str, **fields: Any) -> tuple[str, str]:
    """Return ``(name, value)`` of the ``AIRFLOW_CONN_<ID>`` env var (JSON form) for a connection.

    ``monkeypatch.setenv(*connection_env("dify_default", conn_type="dify", host=url, password=key))``
    makes the connection visible to ``BaseHook.get_connection`` in tasks and to
    ``await BaseHook.aget_connection`` in triggers under :func:`run_dag` (the env var is read at
    lookup time, so setting it after Airflow was imported works).
    """
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LogLine:
    """One log call made while a task instance (or its inline trigger) was running."""

    task_id: str
    map_index: int
    try_number: int
    level: str
    logger: str
    event: str
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        extra = "".join(f" {key}={value!r}" for key, value in self.fields.items())
        return f"{self.level.upper()} [{self.logger}] {self.event}{extra}"


@dataclasses.dataclass(frozen=True)
class TryResult:
    try_number: int
    state: str | None


@dataclasses.dataclass(frozen=True)
class TaskInstanceResult:
    """Final state of one task instance, with the state each earlier try ended in."""

    task_id: str
    map_index: int
    state: str | None
    try_number: int
    max_tries: int
    tries: tuple[TryResult, ...]
    """Every try in order, the current one last (earlier tries come from TaskInstanceHistory)."""


class DagRunTimeoutError(AssertionError):
    """The DAG run did not finish within ``run_dag(timeout=...)`` seconds."""

    def __init__(self, message: str, result: DagRunResult | None) -> None:
        super().__init__(message)
        self.result = result


@dataclasses.dataclass
class DagRunResult:
    """What a :func:`run_dag` call produced. XComs and the task state store are read from the DB."""

    dag_id: str
    run_id: str
    state: str
    duration: float
    task_instances: dict[tuple[str, int], TaskInstanceResult]
    log_lines: list[LogLine]

    def ti(self, task_id: str, map_index: int = -1) -> TaskInstanceResult:
        try:
            return self.task_instances[(task_id, map_index)]
        except KeyError:
            known = sorted(f"{t}[{m}]" if m >= 0 else t for t, m in self.task_instances)
            raise KeyError(f"no task instance {task_id!r} map_index={map_index}; have {known}") from None

    @property
    def states(self) -> dict[str, str | None]:
        """``{task_id: state}``; mapped instances appear as ``"task_id[i]"``."""
        return {
            (task_id if map_index < 0 else f"{task_id}[{map_index}]"): ti.state
            for (task_id, map_index), ti in sorted(self.task_instances.items())
        }

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1, default: Any = _MISSING) -> Any:
        """The XCom value ``task_id`` pushed under ``key`` (deserialized as a task would see it).

        Raises ``KeyError`` when there is none and no ``default`` was given. Airflow clears a task's
        XComs at the start of each try, so this is what the last try pushed.
        """
        found, value = _DRIVER.read_xcom(self.dag_id, self.run_id, task_id, map_index, key)
        if not found:
            if default is not _MISSING:
                return default
            raise KeyError(f"no XCom {key!r} from {task_id!r} map_index={map_index} in run {self.run_id}")
        return value

    def xcom_keys(self, task_id: str, map_index: int = -1) -> list[str]:
        return _DRIVER.xcom_keys(self.dag_id, self.run_id, task_id, map_index)

    def state_store(self, task_id: str, key: str, map_index: int = -1, default: Any = None) -> Any:
        """A value the task wrote to its task state (``dify_provider.task_state``): Airflow's task
        state store on 3.3+, the provider's stand-in Variable before."""
        if not AIRFLOW_V_3_3_PLUS:
            from airflow.models.variable import Variable

            from dify_provider.task_state import VariableTaskState

            ti = types.SimpleNamespace(dag_id=self.dag_id, run_id=self.run_id, task_id=task_id, map_index=map_index)
            value = Variable.get(VariableTaskState(ti).name(key), None, True)
            return default if value is None else value
        from airflow._shared.state import TaskScope
        from airflow.state import get_state_backend

        scope = TaskScope(dag_id=self.dag_id, run_id=self.run_id, task_id=task_id, map_index=map_index)
        stored = get_state_backend().get(scope, key)
        return default if stored is None else json.loads(stored)

    def logs(self, task_id: str | None = None, map_index: int = -1, try_number: int | None = None) -> list[LogLine]:
        """Captured log lines, optionally only those of one task instance and/or one try."""
        return [
            line
            for line in self.log_lines
            if (task_id is None or (line.task_id == task_id and line.map_index == map_index))
            and (try_number is None or line.try_number == try_number)
        ]

    def log(self, task_id: str, map_index: int = -1, try_number: int | None = None) -> str:
        """The task's captured log as text, one line per log call (see :class:`LogLine`)."""
        return "\n".join(str(line) for line in self.logs(task_id, map_index, try_number))


# --------------------------------------------------------------------------------------------
# Log capture
# --------------------------------------------------------------------------------------------

# (task_id, map_index, try_number) of the task instance dag.test() is running right now.
_CURRENT_TI: contextvars.ContextVar[tuple[str, int, int] | None] = contextvars.ContextVar(
    "dify_harness_current_ti", default=None
)
# The in-process Execution API runs on another thread but inherits the context; its lines are not
# part of a task's log in a deployment.
_SERVER_SIDE_LOGGERS = ("airflow.api_fastapi.",)
# Airflow's task-to-supervisor protocol chatter (DEBUG). Airflow 3.0 writes each message's body,
# including its own requests to mask a secret, which carry the secret by design.
_COMMS_EVENTS = frozenset({"Sending request", "Received message from task runner"})
_DROPPED_FIELDS = frozenset(
    {
        "event",
        "level",
        "logger",
        "logger_name",
        "timestamp",
        "loc",
        "positional_args",
        "exc_info",
        "exception",
        "stack_info",
        "_record",
        "_from_structlog",
    }
)


def _format_exc_info(exc_info: Any) -> str:
    if exc_info is True:
        import sys

        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info[0] is not None:
        return "".join(traceback.format_exception(*exc_info)).rstrip()
    return ""


class _LogCapture:
    """Collect structlog and stdlib log calls made while ``_CURRENT_TI`` is set."""

    def __init__(self) -> None:
        self.lines: list[LogLine] = []
        self._lock = threading.Lock()

    def _add(self, level: str, logger: str, event: str, fields: dict[str, Any]) -> None:
        current = _CURRENT_TI.get()
        if current is None or logger.startswith(_SERVER_SIDE_LOGGERS) or (level == "debug" and event in _COMMS_EVENTS):
            return
        task_id, map_index, try_number = current
        with self._lock:
            self.lines.append(LogLine(task_id, map_index, try_number, level, logger, event, fields))

    # structlog processor, inserted just before the final renderer
    def processor(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        if _CURRENT_TI.get() is not None and isinstance(event_dict, dict):
            event = str(event_dict.get("event", ""))
            exc = _format_exc_info(event_dict.get("exc_info")) or str(event_dict.get("exception") or "")
            if exc:
                event = f"{event}\n{exc}"
            fields = {k: v for k, v in event_dict.items() if k not in _DROPPED_FIELDS}
            name = event_dict.get("logger") or event_dict.get("logger_name") or ""
            self._add(str(event_dict.get("level", method_name)), str(name), event, fields)
        return event_dict

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        capture = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                message = record.getMessage()
                if record.exc_info:
                    message = f"{message}\n{_format_exc_info(record.exc_info)}"
                capture._add(record.levelname.lower(), record.name, message, {})

        processors: list[Any] = []
        if AIRFLOW_V_3_0_PLUS:  # Airflow 3 logs through structlog; 2 through the standard library only
            import structlog

            processors = structlog.get_config()["processors"]
            processors.insert(max(len(processors) - 1, 0), self.processor)
        handler = _Handler(level=logging.DEBUG)
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            yield
        finally:
            root.removeHandler(handler)
            with contextlib.suppress(ValueError):
                processors.remove(self.processor)


# --------------------------------------------------------------------------------------------
# Watchdog
# --------------------------------------------------------------------------------------------


class _Expired(BaseException):
    """Raised in the main thread when the watchdog fires (BaseException: passes ``except Exception``)."""


@contextlib.contextmanager
def _watchdog(seconds: float | None) -> Iterator[threading.Event]:
    """Interrupt the main thread after ``seconds``: a SIGUSR1 sent to it raises :class:`_Expired`.

    Not SIGALRM: the task runner's ``execution_timeout`` uses SIGALRM/ITIMER_REAL itself. The signal
    is re-sent every 0.5 s until the run is unwound, because the task runner turns the first
    interruption inside a task into an ordinary task failure (``except BaseException``).
    """
    fired = threading.Event()
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield fired
        return
    done = threading.Event()
    main_thread = threading.get_ident()

    def on_signal(signum: int, frame: Any) -> None:
        if fired.is_set() and not done.is_set():
            raise _Expired

    def watch() -> None:
        if done.wait(seconds):
            return
        fired.set()
        while not done.is_set():
            signal.pthread_kill(main_thread, signal.SIGUSR1)
            done.wait(0.5)

    previous = signal.signal(signal.SIGUSR1, on_signal)
    thread = threading.Thread(target=watch, name="run_dag-watchdog", daemon=True)
    thread.start()
    try:
        yield fired
    finally:
        done.set()
        thread.join()
        signal.signal(signal.SIGUSR1, previous)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def _collect(dag_id: str, run_id: str, duration: float, lines: list[LogLine]) -> DagRunResult:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run_state = session.scalar(select(DagRun.state).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        history: dict[tuple[str, int], list[TryResult]] = {}
        for task_id, map_index, try_number, state in session.execute(
            select(
                TaskInstanceHistory.task_id,
                TaskInstanceHistory.map_index,
                TaskInstanceHistory.try_number,
                TaskInstanceHistory.state,
            )
            .where(TaskInstanceHistory.dag_id == dag_id, TaskInstanceHistory.run_id == run_id)
            .order_by(TaskInstanceHistory.try_number)
        ):
            history.setdefault((task_id, map_index), []).append(
                TryResult(try_number, None if state is None else str(state))
            )
        tis: dict[tuple[str, int], TaskInstanceResult] = {}
        for task_id, map_index, state, try_number, max_tries in session.execute(
            select(
                TaskInstance.task_id,
                TaskInstance.map_index,
                TaskInstance.state,
                TaskInstance.try_number,
                TaskInstance.max_tries,
            ).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ):
            state_str = None if state is None else str(state)
            tries = [t for t in history.get((task_id, map_index), []) if t.try_number < try_number]
            if try_number:
                tries.append(TryResult(try_number, state_str))
            tis[(task_id, map_index)] = TaskInstanceResult(
                task_id=task_id,
                map_index=map_index,
                state=state_str,
                try_number=try_number,
                max_tries=max_tries,
                tries=tuple(tries),
            )
    return DagRunResult(
        dag_id=dag_id,
        run_id=run_id,
        state=str(run_state),
        duration=duration,
        task_instances=tis,
        log_lines=lines,
    )


def run_dag(
    dag: DAG,
    *,
    conf: dict[str, Any] | None = None,
    logical_date: datetime | None = None,
    timeout: float | None = 120.0,
    mark_success_pattern: str | None = None,
    faithful_triggers: bool = True,
) -> DagRunResult:
    """Run ``dag`` once with ``dag.test()`` and return what happened; never raises for task failures.

    :param conf: the DAG run's ``conf`` (``dag_run.conf`` / params).
    :param logical_date: defaults to now (a new run each call).
    :param timeout: wall-clock seconds before the run is interrupted and
        :class:`DagRunTimeoutError` is raised (``None``: no limit; only in the main thread).
    :param mark_success_pattern: regex of task ids to mark successful instead of running.
    :param faithful_triggers: resolve deferrals as a deployment does (see
        :func:`_fire_trigger_like_production`); ``False`` keeps ``dag.test()``'s own inline runner.

    Deferrable tasks complete: ``dag.test()`` runs the trigger inline until its first event, then
    resumes the task. Retries (with ``retry_delay=timedelta(0)``) and ``mode="reschedule"`` sensors
    (with ``poke_interval=0``) re-run within the same call; a non-zero delay is waited out in real
    time, in 1-second steps.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "run_dag() must be called from a synchronous test: dag.test() runs triggers with "
            "asyncio.run(), which cannot start inside a running event loop."
        )
    prepare_airflow()
    sync_dag(dag)

    from airflow import settings

    capture = _LogCapture()
    run_id: str | None = None
    started = time.perf_counter()
    test_kwargs: dict[str, Any] = {"run_conf": conf, "mark_success_pattern": mark_success_pattern}
    if logical_date is not None:
        test_kwargs[_DRIVER.LOGICAL_DATE] = logical_date
    expired = False
    with _watchdog(timeout) as fired, capture.installed(), _DRIVER.patched_run_task(faithful_triggers, _CURRENT_TI):
        try:
            dag_run = dag.test(**test_kwargs)
            run_id = dag_run.run_id
        except _Expired:
            expired = True
        # A task that swallowed the first interruption can still let dag.test() return.
        expired = expired or fired.is_set()
    duration = time.perf_counter() - started
    if expired:
        if settings.Session is not None:
            settings.Session.remove()
        partial = _collect_latest(dag.dag_id, duration, capture.lines)
        summary = partial.states if partial else {}
        raise DagRunTimeoutError(
            f"DAG {dag.dag_id!r} did not finish within {timeout} s; task states: {summary}", partial
        )
    assert run_id is not None
    return _collect(dag.dag_id, run_id, duration, capture.lines)


def _collect_latest(dag_id: str, duration: float, lines: list[LogLine]) -> DagRunResult | None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run_id = session.scalar(
            select(DagRun.run_id).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(1)
        )
    return None if run_id is None else _collect(dag_id, run_id, duration, lines)
