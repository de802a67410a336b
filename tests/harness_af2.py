"""How ``dag.test()`` runs a task and its trigger on Airflow 2.11, for ``airflow_harness``.

The same driver interface as :mod:`harness_af3` (see its docstring). Airflow 2 runs everything
through the ORM in this process: the task (``TaskInstance._run_raw_task``), XComs, Variables and
connections all read and write the metadata DB directly; there is no Execution API to warm, no
DAG bundle to register, and its logs go through the standard library only (task loggers
propagate to the root logger, where ``airflow_harness`` captures them).

``dag.test()`` 2.11 (``airflow/models/dag.py::_run_task``) runs a deferred task's trigger inline
and then *replaces* ``next_kwargs`` with ``{"event": payload}``, dropping ``defer(kwargs=...)``; it
also ignores ``defer(timeout=...)``, never calls ``cleanup()``, cannot end a task from the trigger
(``TaskSuccessEvent`` resumes it instead) and fails the task without retries when the trigger
raises. :func:`_run_task_like_production` resolves deferrals as a deployment does instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import logging
from collections.abc import Iterator
from typing import Any

from harness_shared import TriggerFailed, TriggerTimedOut, keys_where

#: ``dag.test()``'s keyword for the run's date (``logical_date`` in Airflow 3).
LOGICAL_DATE = "execution_date"
_harness_log = logging.getLogger("airflow_harness")
_CURRENT_TI: contextvars.ContextVar[tuple[str, int, int] | None] | None = None


def after_initdb() -> None:
    """Put Airflow's logging config back: ``initdb()`` runs Alembic, whose ``fileConfig`` sets the
    root logger to WARNING with a stderr handler of its own, so triggers' and hooks' INFO lines
    (loggers outside ``airflow.task``) would be lost, as they are not in a deployment."""
    from airflow.logging_config import configure_logging

    configure_logging()


def warm() -> None:
    """Import what the first task run would otherwise import inside its (timed) ``run_dag``."""
    import airflow.models.dag
    import airflow.models.taskinstance
    import airflow.models.trigger
    import airflow.models.xcom
    import airflow.triggers.base  # noqa: F401


def _xcom_filter(dag_id: str, run_id: str, task_id: str, map_index: int) -> tuple[Any, list[Any]]:
    from airflow.models.xcom import XCom

    return XCom, [XCom.dag_id == dag_id, XCom.run_id == run_id, XCom.task_id == task_id,
                  XCom.map_index == map_index]


def read_xcom(dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> tuple[bool, Any]:
    """(found, value as a task would see it: through the configured XCom backend's deserializer)."""
    import types

    from airflow.models.xcom import XCom
    from airflow.utils.session import create_session
    from sqlalchemy import select

    model, where = _xcom_filter(dag_id, run_id, task_id, map_index)
    with create_session() as session:
        # The stored bytes (a loaded ORM row holds the value already decoded for the UI instead).
        rows = session.execute(select(model.value).where(*where, model.key == key)).all()
    if not rows:
        return False, None
    return True, XCom.deserialize_value(types.SimpleNamespace(value=rows[0][0]))


def xcom_keys(dag_id: str, run_id: str, task_id: str, map_index: int) -> list[str]:
    return keys_where(*_xcom_filter(dag_id, run_id, task_id, map_index))


async def _first_outcome(trigger: Any, timeout: float | None) -> Any:
    """The first event of ``trigger.run()``, or why there is none; ``cleanup()`` always awaited,
    as ``TriggerRunner.run_trigger`` does (it also cancels the trigger at its timeout)."""
    events = trigger.run()
    try:
        return await asyncio.wait_for(anext(events), timeout)
    except TimeoutError:
        return TriggerTimedOut()
    except StopAsyncIteration:
        _harness_log.error("Trigger %r exited without sending an event. Dependent tasks will be failed.", trigger)
        return TriggerFailed(None)
    except Exception as exc:
        trigger.log.exception("Trigger %r exited with error %s", trigger, exc)
        return TriggerFailed(exc)
    finally:
        with contextlib.suppress(Exception):
            await events.aclose()
        with contextlib.suppress(Exception):
            await trigger.cleanup()


def _fire_trigger_like_production(ti: Any, session: Any) -> None:
    """Run the deferred task's trigger inline and record its outcome with the production code.

    As in a deployment: the trigger is rebuilt from the encrypted kwargs of its DB row (what
    ``serialize()`` gave, through ``BaseSerialization``), ``task_instance`` is the ORM task
    instance, the event goes through ``Trigger.submit_event`` (``next_kwargs`` merged, end events
    end the task), an exception or a ``run()`` that ends without an event through
    ``Trigger.submit_failure``, and ``defer(timeout)`` / ``execution_timeout`` (the row's
    ``trigger_timeout``) is handled as the scheduler's ``check_trigger_timeouts`` does.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils import timezone
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import update

    trigger_id = ti.trigger_id
    row = session.get(Trigger, trigger_id) if trigger_id is not None else None
    if row is None:
        raise RuntimeError(f"deferred task instance {ti} has no trigger row")
    outcome: Any
    try:
        kwargs = Trigger._decrypt_kwargs(row.encrypted_kwargs)
        module, _, name = row.classpath.rpartition(".")
        trigger = getattr(importlib.import_module(module), name)(**kwargs)
        trigger.task_instance = ti
        trigger.trigger_id = trigger_id
    except Exception as exc:  # the triggerer: "Trigger failed to load code" / "failed to inflate"
        _harness_log.exception("Trigger %s failed to load", row.classpath)
        outcome = TriggerFailed(exc)
    else:
        timeout = None
        if ti.trigger_timeout is not None:
            timeout = max((timezone.coerce_datetime(ti.trigger_timeout) - timezone.utcnow()).total_seconds(), 0.0)
        outcome = asyncio.run(_first_outcome(trigger, timeout))

    if isinstance(outcome, TriggerTimedOut):
        session.execute(
            update(TaskInstance)
            .where(TaskInstance.dag_id == ti.dag_id, TaskInstance.run_id == ti.run_id,
                   TaskInstance.task_id == ti.task_id, TaskInstance.map_index == ti.map_index)
            .values(
                state=TaskInstanceState.SCHEDULED,
                next_method="__fail__",
                next_kwargs={"error": "Trigger/execution timeout"},
                trigger_id=None,
            )
        )
        session.commit()
    elif isinstance(outcome, TriggerFailed):
        Trigger.submit_failure(trigger_id, outcome.error, session=session)
        session.commit()
    else:
        Trigger.submit_event(trigger_id, outcome, session=session)
        session.commit()
    Trigger.clean_unused(session=session)
    session.commit()


def _mark_running(ti: Any, session: Any) -> None:
    """What the worker's ``_check_and_change_state_before_execution`` does once the deps are met
    (``dag.test()`` 2.11 skips it, so a failed try left no TaskInstanceHistory row): the start
    date (kept when resuming from a deferral, the first poke's when rescheduled), RUNNING."""
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils import timezone
    from airflow.utils.state import TaskInstanceState

    log = ti.log
    if ti.next_method:
        log.info("Resuming after deferral")
    else:
        ti.start_date = timezone.utcnow()
        first_poke = session.scalar(
            TaskReschedule.stmt_for_task_instance(ti, descending=False)
            .with_only_columns(TaskReschedule.start_date).limit(1)
        )
        if first_poke:
            ti.start_date = first_poke
        log.info("Starting attempt %s of %s", ti.try_number, ti.max_tries + 1)
    ti.state = TaskInstanceState.RUNNING
    ti.end_date = None
    session.merge(ti)
    session.commit()


def _run_task_like_production(*, ti: Any, inline_trigger: bool = False, mark_success: bool = False,
                              session: Any) -> None:
    """Replacement for ``airflow.models.dag._run_task`` (2.11) used by ``dag.test()``.

    Same task execution (``TaskInstance._run_raw_task``, which records a deferral as a worker
    does: trigger row, ``next_kwargs``, ``trigger_timeout``), but deferrals are resolved by
    :func:`_fire_trigger_like_production`, and log lines are tagged with the task instance.
    """
    from airflow.exceptions import AirflowTaskTimeout
    from airflow.utils.state import TaskInstanceState

    token = _current().set((ti.task_id, ti.map_index, ti.try_number))
    task = ti.task  # the DAG's operator: each run (and resumption) works on a fresh copy of it,
    try:            # as a worker process does, not on the copy the last run left behind
        while True:
            ti.task = task
            _mark_running(ti, session)
            try:
                ti._run_raw_task(session=session, mark_success=mark_success)
            except (Exception, AirflowTaskTimeout):  # Airflow 2's AirflowTaskTimeout is a BaseException
                # _run_raw_task recorded the failure (state, traceback in the task's log) and
                # re-raised it; dag.test() would only log it once more (or, for a timeout, stop).
                session.commit()
                return
            session.commit()
            if ti.state != TaskInstanceState.DEFERRED or not inline_trigger:
                return  # done, or a real triggerer is running and will resume it
            try:
                _fire_trigger_like_production(ti, session)
                ti.refresh_from_db(session=session)
            except Exception:  # a harness bug: fail the task rather than leave dag.test() waiting on it
                _harness_log.exception("deferred task %s failed outside the task runner", ti)
                session.rollback()
                ti.set_state(TaskInstanceState.FAILED, session=session)
                session.commit()
                return
            if ti.state != TaskInstanceState.SCHEDULED:
                return  # ended from the trigger (TaskSuccessEvent & co.)
    finally:
        _current().reset(token)


def _run_task_tagging_only(*, ti: Any, inline_trigger: bool = False, mark_success: bool = False,
                           session: Any) -> None:
    token = _current().set((ti.task_id, ti.map_index, ti.try_number))
    try:
        _ORIGINAL_RUN_TASK[0](ti=ti, inline_trigger=inline_trigger, mark_success=mark_success, session=session)
    finally:
        _current().reset(token)


_ORIGINAL_RUN_TASK: list[Any] = []


def _sleep_until_due(seconds: float) -> None:
    """``dag.test()``'s wait when nothing can run yet (``time.sleep(1)``), cut short to the
    moment a rescheduled sensor is due (``poke_interval=0.05`` would otherwise cost a whole second
    per poke). Retry delays are still waited out in steps of ``seconds``."""
    import time

    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils import timezone
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    now = timezone.utcnow()
    with create_session() as session:
        due = session.scalar(select(func.min(TaskReschedule.reschedule_date))
                             .where(TaskReschedule.reschedule_date > now))
    if due is not None:
        seconds = min(seconds, (timezone.coerce_datetime(due) - now).total_seconds() + 0.005)
    time.sleep(max(seconds, 0.0))


class _DagModuleTime:
    """Stands in for the ``time`` module inside ``airflow.models.dag`` (only ``sleep`` differs)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def sleep(self, seconds: float) -> None:
        _sleep_until_due(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextlib.contextmanager
def patched_run_task(faithful_triggers: bool, current_ti: Any) -> Iterator[None]:
    global _CURRENT_TI
    from airflow.models import dag as dag_module

    _CURRENT_TI = current_ti
    original = dag_module._run_task
    if not _ORIGINAL_RUN_TASK:
        _ORIGINAL_RUN_TASK.append(original)
    dag_module._run_task = _run_task_like_production if faithful_triggers else _run_task_tagging_only
    real_time = dag_module.time
    dag_module.time = _DagModuleTime(real_time)
    try:
        yield
    finally:
        dag_module._run_task = original
        dag_module.time = real_time


def _current() -> contextvars.ContextVar[tuple[str, int, int] | None]:
    assert _CURRENT_TI is not None, "patched_run_task() is not active"
    return _CURRENT_TI
