"""How ``dag.test()`` runs a task and its trigger on Airflow 3 (3.0 to 3.3), for ``airflow_harness``.

The driver interface every generation's module provides: ``LOGICAL_DATE`` (``dag.test()``'s
keyword for the run's date), ``after_initdb()``, ``warm()``, ``patched_run_task(faithful,
current_ti)`` (a context manager swapping ``dag.test()``'s task runner, tagging log lines with
the task instance through the ``current_ti`` context variable), ``read_xcom(...)`` and
``xcom_keys(...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from harness_shared import TriggerFailed, TriggerTimedOut, keys_where

from dify_provider.version_compat import AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_2_PLUS

LOGICAL_DATE = "logical_date"
_harness_log = logging.getLogger("airflow_harness")
_CURRENT_TI: contextvars.ContextVar[tuple[str, int, int] | None] | None = None


def after_initdb() -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()  # type: ignore[no-untyped-call]
    if not AIRFLOW_V_3_1_PLUS:
        _parse_first_reschedule_date()


def _parse_first_reschedule_date() -> None:
    """Airflow 3.0 under ``dag.test()``: ``ti.get_first_reschedule_date`` returns the date as a
    string (apache/airflow#58777, in-process comms skip validation), so a rescheduled sensor
    fails on its second poke subtracting a string from a datetime. Parse it, as later versions do."""
    from airflow.providers.common.compat.sdk import timezone
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    original = RuntimeTaskInstance.get_first_reschedule_date
    if getattr(original, "_parses", False):
        return

    def get_first_reschedule_date(self: Any, context: Any) -> Any:
        value = original(self, context)
        return timezone.parse(value) if isinstance(value, str) else value

    get_first_reschedule_date._parses = True  # type: ignore[attr-defined]
    RuntimeTaskInstance.get_first_reschedule_date = get_first_reschedule_date  # type: ignore[method-assign]


def warm() -> None:
    """Make the in-process Execution API build its routes now (5+ s, once per process).

    Before 3.3 every in-process task and trigger run built a new one (Cadwyn's versioned routes,
    ~2 s each on 2 cores): 3.3's ``lru_cache`` is applied here too, which is all 3.3 changed.
    """
    import httpx
    from airflow.sdk.execution_time import supervisor

    if not hasattr(supervisor.in_process_api_server, "cache_info"):
        supervisor.in_process_api_server = functools.lru_cache(maxsize=1)(supervisor.in_process_api_server)
    api = supervisor.in_process_api_server()
    with httpx.Client(transport=api.transport, base_url="http://in-process.invalid./") as client:
        client.get("health").raise_for_status()


def _xcom_filter(dag_id: str, run_id: str, task_id: str, map_index: int) -> tuple[Any, list[Any]]:
    from airflow.models.xcom import XComModel

    return XComModel, [XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.task_id == task_id,
                       XComModel.map_index == map_index]


def read_xcom(dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> tuple[bool, Any]:
    """(found, value as a task would see it)."""
    from airflow.utils.session import create_session
    from sqlalchemy import select

    if AIRFLOW_V_3_2_PLUS:
        from airflow.sdk.serde import deserialize
    else:
        from airflow.serialization.serde import deserialize
    model, where = _xcom_filter(dag_id, run_id, task_id, map_index)
    with create_session() as session:
        rows = session.execute(select(model.value).where(*where, model.key == key)).all()
    if not rows:
        return False, None
    value = rows[0][0]
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return True, deserialize(value)


def xcom_keys(dag_id: str, run_id: str, task_id: str, map_index: int) -> list[str]:
    return keys_where(*_xcom_filter(dag_id, run_id, task_id, map_index))


class _CommsWithAsend:
    def __init__(self, comms: Any) -> None:
        self._comms = comms

    def send(self, msg: Any) -> Any:
        return self._comms.send(msg)

    async def asend(self, msg: Any) -> Any:
        return self._comms.send(msg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._comms, name)


class _InlineTrigger:
    """Drives a real trigger the way the triggerer does: first event, ``defer(timeout)``, ``cleanup()``.

    ``run_trigger_in_process`` (which provides the supervisor comms that ``aget_connection`` needs)
    only takes the first item of ``run()``; this wrapper turns a timeout or an exception into such an
    item and always awaits ``cleanup()``, as ``TriggerRunner.run_trigger`` does.
    """

    def __init__(self, trigger: Any, timeout: float | None) -> None:
        self.trigger = trigger
        self.timeout = timeout

    async def run(self) -> Any:
        from airflow.sdk.execution_time import task_runner

        comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
        if comms is not None and not hasattr(comms, "asend"):
            # 3.3.2's InProcessSupervisorComms has no asend(), so the Execution API secrets backend
            # fails inside an inline trigger and `await BaseHook.aget_connection()` only finds
            # env-var connections. The real triggerer's comms have asend(); restore parity.
            task_runner.SUPERVISOR_COMMS = _CommsWithAsend(comms)  # type: ignore[assignment]
        events = self.trigger.run()
        try:
            outcome: Any = await asyncio.wait_for(anext(events), self.timeout)
        except TimeoutError:
            outcome = TriggerTimedOut()
        except StopAsyncIteration:
            outcome = TriggerFailed(None)
        except Exception as exc:
            outcome = TriggerFailed(exc)
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()
            with contextlib.suppress(Exception):
                await self.trigger.cleanup()
        yield outcome


@contextlib.contextmanager
def _answers_hitl_requests_as_the_triggerer(supervisor: Any) -> Iterator[None]:
    """The standard provider's ``HITLTrigger`` (3.1-3.2) asks its supervisor for the required
    action's response; the triggerer's supervisor answers that (``triggerer_job_runner``:
    ``GetHITLDetailResponse``, ``UpdateHITLDetail``), a task's, which runs triggers under
    ``dag.test()``, does not. Answer them the triggerer's way, through the same API client."""
    from airflow.jobs.triggerer_job_runner import HITLDetailResponseResult
    from airflow.sdk.execution_time.comms import GetHITLDetailResponse, UpdateHITLDetail

    original = supervisor._handle_request

    def handle(self: Any, msg: Any, log: Any, req_id: int) -> None:
        if isinstance(msg, GetHITLDetailResponse):
            api_resp = self.client.hitl.get_detail_response(ti_id=msg.ti_id)
        elif isinstance(msg, UpdateHITLDetail):
            api_resp = self.client.hitl.update_response(ti_id=msg.ti_id, chosen_options=msg.chosen_options,
                                                        params_input=msg.params_input)
        else:
            original(self, msg, log, req_id)
            return
        self.send_msg(HITLDetailResponseResult.from_api_response(response=api_resp), request_id=req_id, error=None)

    supervisor._handle_request = handle
    try:
        yield
    finally:
        supervisor._handle_request = original


def _fire_trigger_like_production(ti: Any, sdk_ti: Any, timeout: Any) -> None:
    """Run the deferred task's trigger inline and record its outcome with the production code.

    ``dag.test()`` in 3.3.2 rebuilds the trigger from the worker's message and, when it fires,
    *replaces* the task's ``next_kwargs`` with ``{"event": payload}`` (dropping ``defer(kwargs=...)``),
    resumes on ``TaskSuccessEvent``/``TaskFailedEvent`` instead of ending the task, ignores
    ``defer(timeout=...)``, never calls ``cleanup()`` and fails the task without retries when the
    trigger raises. Here, as in a deployment: the trigger is rebuilt from the encrypted kwargs of its
    DB row, the event goes through ``Trigger.submit_event`` (next_kwargs merged, end events end the
    task), an exception or a trigger that ends without an event through ``Trigger.submit_failure``,
    and a timeout is handled as the scheduler's ``check_trigger_timeouts`` does.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import TRIGGER_FAIL_REPR, Trigger, TriggerFailureReason
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select, update

    if AIRFLOW_V_3_2_PLUS:
        from airflow.serialization.decoders import smart_decode_trigger_kwargs
    else:
        from airflow.serialization.serialized_objects import smart_decode_trigger_kwargs

    with create_session() as session:
        trigger_id = session.scalar(select(TaskInstance.trigger_id).where(TaskInstance.id == ti.id))
        row = session.get(Trigger, trigger_id) if trigger_id is not None else None
        if row is None:
            raise RuntimeError(f"deferred task instance {ti} has no trigger row")
        classpath, encrypted_kwargs = row.classpath, row.encrypted_kwargs

    outcome: Any
    try:
        stored = Trigger._decrypt_kwargs(encrypted_kwargs)
        kwargs = {k: smart_decode_trigger_kwargs(v) for k, v in stored.items()}  # type: ignore[no-untyped-call]
        module, _, name = classpath.rpartition(".")
        trigger = getattr(importlib.import_module(module), name)(**kwargs)
        trigger.task_instance = sdk_ti
        trigger.trigger_id = trigger_id
    except Exception as exc:  # the triggerer: "Trigger failed to load code" / "failed to inflate"
        outcome = TriggerFailed(exc)
    else:
        seconds = None if timeout is None else max(timeout.total_seconds(), 0.0)
        inline = _InlineTrigger(trigger, seconds)
        if AIRFLOW_V_3_1_PLUS:
            from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

            with _answers_hitl_requests_as_the_triggerer(InProcessTestSupervisor):
                outcome = InProcessTestSupervisor.run_trigger_in_process(  # type: ignore[no-untyped-call]
                    trigger=inline, ti=sdk_ti
                )
        else:  # 3.0 has no in-process trigger supervisor: dag.test() itself uses asyncio.run
            outcome = asyncio.run(anext(inline.run()))

    if isinstance(outcome, TriggerTimedOut):
        with create_session() as session:
            session.execute(
                update(TaskInstance)
                .where(TaskInstance.id == ti.id)
                .values(
                    state=TaskInstanceState.SCHEDULED,
                    next_method=TRIGGER_FAIL_REPR,
                    next_kwargs={"error": TriggerFailureReason.TRIGGER_TIMEOUT},
                    trigger_id=None,
                )
            )
    elif isinstance(outcome, TriggerFailed):
        Trigger.submit_failure(trigger_id, outcome.error)
    else:
        Trigger.submit_event(trigger_id, outcome)
    Trigger.clean_unused()


def _run_task_like_production(*, ti: Any, task: Any = None, run_triggerer: bool = False) -> Any:
    """Replacement for ``airflow.sdk.definitions.dag._run_task`` (3.3.2) used by ``dag.test()``.

    Same task execution (``run_task_in_process``), but deferrals are resolved by
    :func:`_fire_trigger_like_production`, and log lines are tagged with the task instance.
    """
    from uuid import UUID

    from airflow.sdk.api.datamodels._generated import TaskInstance as TaskInstanceSDK
    from airflow.sdk.execution_time.comms import DeferTask
    from airflow.sdk.execution_time.supervisor import run_task_in_process
    from airflow.utils.state import State, TaskInstanceState

    if task is None:  # 3.0's dag.test() passes the task on the task instance
        task = ti.task
    if not AIRFLOW_V_3_1_PLUS and ti.next_method is not None:
        # A new try: resumptions within a try happen in the loop below. Airflow 3.0 leaves the
        # last try's trigger failure in next_method, so the retry would resume into it instead of
        # executing again; the scheduler's re-queueing clears it (3.1+ also here).
        ti.next_method, ti.next_kwargs = None, None
        with _session() as session:
            session.merge(ti)
    result: Any = None
    token = _current().set((ti.task_id, ti.map_index, ti.try_number))
    try:
        while True:
            ti.set_state(TaskInstanceState.QUEUED)
            versioned = {"dag_version_id": UUID(str(ti.dag_version_id))} if AIRFLOW_V_3_1_PLUS else {}
            sdk_ti = TaskInstanceSDK(
                id=UUID(str(ti.id)),
                task_id=ti.task_id,
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                try_number=ti.try_number,
                map_index=ti.map_index,
                **versioned,
            )
            result = run_task_in_process(ti=sdk_ti, task=task)
            if str(result.ti.state) == "awaiting_input":
                # Parked by the Execution API (3.3); a person may have answered already, which made
                # it SCHEDULED: writing the parked state again would undo that answer.
                ti.refresh_from_db()
                return result
            ti.set_state(result.ti.state)
            if AIRFLOW_V_3_1_PLUS:
                from airflow.serialization.serialized_objects import create_scheduler_operator

                ti.task = create_scheduler_operator(result.ti.task)
            else:
                ti.task = result.ti.task
            if not (ti.state == TaskInstanceState.DEFERRED and isinstance(result.msg, DeferTask)):
                return result
            if not run_triggerer:
                return result
            _fire_trigger_like_production(ti, sdk_ti, result.msg.trigger_timeout)
            ti.refresh_from_db()
            if ti.state != TaskInstanceState.SCHEDULED:
                return result  # ended from the triggerer (TaskSuccessEvent & co.)
    except Exception:
        _harness_log.exception("task %s failed outside the task runner", ti)
        if ti.state not in State.finished:
            ti.set_state(TaskInstanceState.FAILED)
        return None
    finally:
        _current().reset(token)


def _run_task_tagging_only(*, ti: Any, task: Any = None, run_triggerer: bool = False) -> Any:
    token = _current().set((ti.task_id, ti.map_index, ti.try_number))
    try:
        given = {} if task is None else {"task": task}
        return _ORIGINAL_RUN_TASK[0](ti=ti, run_triggerer=run_triggerer, **given)
    finally:
        _current().reset(token)


_ORIGINAL_RUN_TASK: list[Any] = []


@contextlib.contextmanager
def patched_run_task(faithful_triggers: bool, current_ti: Any) -> Iterator[None]:
    global _CURRENT_TI
    from airflow.sdk.definitions import dag as dag_module

    _CURRENT_TI = current_ti
    original = dag_module._run_task
    if not _ORIGINAL_RUN_TASK:
        _ORIGINAL_RUN_TASK.append(original)
    dag_module._run_task = (  # type: ignore[assignment]
        _run_task_like_production if faithful_triggers else _run_task_tagging_only
    )
    try:
        yield
    finally:
        dag_module._run_task = original  # type: ignore[assignment]




def _session() -> Any:
    from airflow.utils.session import create_session

    return create_session()


def _current() -> contextvars.ContextVar[tuple[str, int, int] | None]:
    assert _CURRENT_TI is not None, "patched_run_task() is not active"
    return _CURRENT_TI
