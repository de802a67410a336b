"""``DifyRunWorkflowOperator``: run a published Dify workflow as a task.

The run is started in streaming mode because the first event names the run and its task id at
once: from then on the run can be found again (retry), stopped (kill, timeout) and linked (UI),
even if the connection drops. Dify has no idempotency key, so a start is never re-sent after
the request may have reached the server; retries re-attach instead.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, BaseOperator, conf

from dify_provider.client import errors as e
from dify_provider.client._checks import check_files, check_inputs, check_uuid
from dify_provider.client.status import Reason, Verdict, WaitPolicy
from dify_provider.client.waiting import (
    PollSchedule,
    Snapshot,
    human_duration,
    snapshot_of_error,
    snapshot_of_run,
    timeout_snapshot,
)
from dify_provider.links import LINK_XCOM_KEY, DifyRunLink, console_logs_url
from dify_provider.operators.resume import EarlierRun, earlier_run
from dify_provider.operators.run_memory import RunMemory, default_user, try_number
from dify_provider.operators.streaming import may_hang_up, silent_start_error
from dify_provider.outcome import WaitLogger, airflow_error, conclude
from dify_provider.provider_info import DIFY_DEFAULT_CONN_ID
from dify_provider.version_compat import AIRFLOW_V_3_0_PLUS, TRIGGER_ON_KILL, warn_unavailable

# The hook, the HTTP client, the response models and the trigger are imported where they are
# used: a DAG file imports this module at every parse, and needs none of them to build the task.
if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from dify_provider.client.sync import DifyClient, StreamDeadline, WorkflowStream
    from dify_provider.hooks.dify import DifyHook

XCOM_KEYS = ("status", "total_tokens", "total_steps", "elapsed_time", "created_at", "finished_at")


@dataclass
class _Try:
    """What every step of one try needs (the operator object itself outlives none of it)."""

    client: DifyClient
    context: Context
    memory: RunMemory
    user: str
    started: float


class DifyRunWorkflowOperator(BaseOperator):
    """Start a run of a published Dify workflow, wait for it, push outputs and usage to XCom.

    The return value (``ti.xcom_pull(task_ids=...)``) is the run's ``outputs`` dict. XCom keys:
    ``workflow_run_id`` and ``task_id`` (as soon as the run starts), then ``status``,
    ``total_tokens``, ``total_steps``, ``elapsed_time``, ``created_at``, ``finished_at``.

    :param inputs: workflow input variables (templated, JSON-serialisable dict).
    :param user: Dify end-user id (templated). Default: a stable id of this task instance, so
        Dify's logs show which task ran what, and a retry can find the run again.
    :param files: legacy ``sys.files`` list (templated).
    :param workflow_id: run this published version instead of the latest (templated).
    :param wait_for_termination: wait for the run to end (default). If False, return once it
        started, with the ids in XCom (wait later with ``WorkflowRunSensor``).
    :param deferrable: wait in the triggerer (Dify >= 1.13 only; older servers lose a run whose
        stream is closed, so the operator stays on the stream and says why). The version comes
        from the ``X-Version`` header of Dify's answers, or the connection's ``server_version``.
    :param poll_interval: seconds between polls when polling (deferred, or after a broken stream).
    :param max_poll_interval: turn on polling backoff up to this many seconds.
    :param timeout: seconds to wait for the run; when exceeded the run is stopped and the task
        fails, within about a second of the moment whatever the stream is doing.
    :param fail_on_partial: fail on ``partial-succeeded`` (default: succeed with a warning).
    :param fail_on_paused: fail when the run pauses for human input (default: keep waiting).
    :param check_required_inputs: read ``GET /parameters`` first and fail before starting a run
        if an input is missing or would be refused (type, length, options), as Dify would: in
        streaming mode Dify 1.13 answers a refused input with silence, not with an error.
    :param dify_conn_id: connection of type ``dify``.
    """

    template_fields = ("inputs", "user", "files", "workflow_id", "dify_conn_id")
    template_fields_renderers = {"inputs": "json", "files": "json"}
    operator_extra_links = (DifyRunLink(),)
    ui_color = "#d2e3fc"

    def __init__(
        self,
        *,
        inputs: dict[str, Any] | None = None,
        user: str | None = None,
        files: list[dict[str, Any]] | None = None,
        workflow_id: str | None = None,
        wait_for_termination: bool = True,
        deferrable: bool | None = None,
        poll_interval: float = 5.0,
        max_poll_interval: float | None = None,
        timeout: float = 7 * 24 * 3600,
        fail_on_partial: bool = False,
        fail_on_paused: bool = False,
        check_required_inputs: bool = True,
        dify_conn_id: str = DIFY_DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inputs = inputs if inputs is not None else {}
        self.user = user
        self.files = files
        self.workflow_id = workflow_id
        self.wait_for_termination = wait_for_termination
        # Read when the DAG is parsed, not when this module is imported, so env changes apply.
        self.deferrable = (conf.getboolean("operators", "default_deferrable", fallback=False)
                           if deferrable is None else deferrable)
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.timeout = timeout
        self.fail_on_partial = fail_on_partial
        self.fail_on_paused = fail_on_paused
        self.check_required_inputs = check_required_inputs
        self.dify_conn_id = dify_conn_id
        # Fail at DAG parse time on a bad schedule rather than mid-run.
        PollSchedule(poll_interval, max_poll_interval)
        if self.deferrable and not TRIGGER_ON_KILL:
            warn_unavailable(self.task_id, "stopping the Dify run when the deferred task is killed (marked failed "
                             "or cleared)", "Airflow 3.3+ (the triggerer calls BaseTrigger.on_kill)",
                             "the run goes on; timeout and execution_timeout still stop it")
        self._dify_task_id: str | None = None
        self._dify_run_id: str | None = None

    @cached_property
    def hook(self) -> DifyHook:
        from dify_provider.hooks.dify import DifyHook

        return DifyHook(dify_conn_id=self.dify_conn_id)

    @property
    def policy(self) -> WaitPolicy:
        return WaitPolicy(fail_on_partial=self.fail_on_partial, fail_on_paused=self.fail_on_paused)

    # --- execute ---------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        inputs, files, workflow_id = self._checked_arguments()
        user = self.user or default_user(context)
        memory = RunMemory(context)
        with memory.kept_for_retries(context), self._client() as client:
            t = self._try = _Try(client, context, memory, user, time.time())
            earlier = earlier_run(client, t.memory, self.policy, self.log, try_number=try_number(context),
                                  user=user, find_by_user=self.user is None)
            if earlier is not None:
                return self._take_over(t, earlier)
            if self.check_required_inputs:
                self._check_inputs(client, inputs)
            t.memory.starting(user, t.started)
            stream = client.run_workflow(inputs, user, response_mode="streaming", files=files,
                                         workflow_id=workflow_id)
            # One deadline for the whole stream: a read blocked on a silent stream ends at it.
            with stream.hang_up_at(t.started + self.timeout) as deadline:
                run_id = self._read_until_started(t, stream, deadline, inputs)
                return self._wait(t, run_id, stream, deadline)

    def _client(self) -> DifyClient:
        try:
            return self.hook.get_client()
        except e.DifyConfigError as exc:  # the connection is wrong: a retry would read it again
            raise AirflowFailException(str(exc)) from exc

    def _checked_arguments(self) -> tuple[dict[str, Any], list[dict[str, Any]] | None, str | None]:
        try:
            return (check_inputs(self.inputs), check_files(self.files),
                    None if self.workflow_id in (None, "") else check_uuid("workflow_id", self.workflow_id))
        except e.DifyConfigError as exc:
            raise AirflowFailException(str(exc)) from exc

    def _check_inputs(self, client: DifyClient, inputs: dict[str, Any]) -> None:
        try:
            problems = client.get_parameters().input_problems(inputs)
        except e.DifyError as exc:
            raise airflow_error(exc) from exc
        if problems:
            raise AirflowFailException(
                f"inputs: {'; '.join(problems)}: the app's input form (GET /parameters) says so; fix `inputs`, "
                "or pass check_required_inputs=False to let Dify decide"
            )

    def _take_over(self, t: _Try, earlier: EarlierRun) -> Any:
        self._remember(t, earlier.run_id, earlier.task_id)
        if earlier.done is not None:
            return self._finish(t.context, t.memory, earlier.done)
        return self._wait(t, earlier.run_id, None, None)

    def _remember(self, t: _Try, run_id: str, task_id: str | None, app_id: str | None = None) -> str | None:
        """Store the ids where a retry, a kill and the UI link will look; returns the link."""
        self._dify_run_id, self._dify_task_id = run_id, task_id
        t.memory.started(run_id, task_id, t.user)
        ti = t.context["ti"]
        ti.xcom_push(key="workflow_run_id", value=run_id)
        if task_id is not None:  # unknown after a lost start; Airflow 3.0 refuses a None XCom
            ti.xcom_push(key="task_id", value=task_id)
        settings = self.hook.settings
        url = console_logs_url(settings.console_url, settings.app_id or app_id, run_id)
        if url:
            ti.xcom_push(key=LINK_XCOM_KEY, value=url)
        return url

    # --- starting ------------------------------------------------------------------------------

    def _read_until_started(self, t: _Try, stream: WorkflowStream, deadline: StreamDeadline,
                            inputs: dict[str, Any]) -> str:
        from dify_provider.client.models import WorkflowStartedEvent

        try:
            for event in stream:
                if isinstance(event, WorkflowStartedEvent):
                    url = self._remember(t, event.workflow_run_id, event.task_id, event.inputs.get("sys.app_id"))
                    self.log.info("Started Dify workflow run %s (task %s)%s", event.workflow_run_id,
                                  event.task_id, f": {url}" if url else "")
                    return event.workflow_run_id
        except e.DifyError as exc:
            if deadline.fired:
                raise AirflowException(
                    f"gave up after {human_duration(self.timeout)} (timeout): Dify had not announced the run yet, "
                    "so there was nothing to stop; if it starts later it runs without this task"
                ) from exc
            if isinstance(exc, e.DifyAPIError | e.DifyConfigError) or getattr(exc, "sent", True) is False:
                raise airflow_error(exc) from exc
            # The request may have started a run we never heard of: do not send it again.
            found = self._find_run_after(t)
            if found:
                self.log.warning("The start request broke (%s) but Dify has run %s for this task: attaching",
                                 exc, found)
                self._remember(t, found, None)
                return found
            if isinstance(exc, e.DifyStreamTimeoutError | e.DifyStreamEndedError):
                raise self._silent_start(t, inputs, exc) from exc
            raise AirflowException(
                f"starting the Dify run failed ambiguously ({exc}); it was not re-sent because Dify has no "
                "idempotency key and a second request could start a second paid run. A retry of this task "
                "looks for the run in Dify's logs before starting another."
            ) from exc
        raise AirflowException("the Dify stream ended before announcing the run (no workflow_started event)")

    def _silent_start(self, t: _Try, inputs: dict[str, Any], exc: e.DifyError) -> AirflowException:
        try:
            problems = t.client.get_parameters().input_problems(inputs)
        except e.DifyError:
            problems = []
        return silent_start_error(self.hook.server_version(t.client), problems, exc, t.user)

    def _find_run_after(self, t: _Try) -> str | None:
        try:
            page = t.client.list_workflow_logs(created_by_end_user_session_id=t.user, limit=5)
        except e.DifyError:
            return None
        for entry in page.data:
            if (entry.workflow_run.created_at or 0) >= int(t.started) - 1:
                return entry.workflow_run.id
        return None

    # --- waiting -------------------------------------------------------------------------------

    def _wait(self, t: _Try, run_id: str, stream: WorkflowStream | None, deadline: StreamDeadline | None) -> Any:
        leave = not self.wait_for_termination or self.deferrable
        if leave and stream is not None and not self._may_hang_up(t, run_id):
            leave = False
        if leave and not self.wait_for_termination:
            if stream is not None:
                stream.close()
            self.log.info("wait_for_termination=False: not waiting for run %s", run_id)
            return None
        if leave:
            if stream is not None:
                stream.close()
            self._defer(t, run_id)
        snapshot = None
        if stream is not None and deadline is not None:
            snapshot = self._follow_stream(stream, run_id, t.started, deadline)
        if snapshot is None:
            snapshot = self._poll_until_done(t.client, run_id, t.started)
        if snapshot.reason in (Reason.TIMEOUT, Reason.EXECUTION_TIMEOUT):
            self._stop_run(t.client, t.user, t.memory, why=snapshot.message)
        return self._finish(t.context, t.memory, snapshot)

    def _may_hang_up(self, t: _Try, run_id: str) -> bool:
        return may_hang_up(self.log, self.hook.server_version(t.client), run_id, self.dify_conn_id,
                           waiting=self.wait_for_termination)

    def _follow_stream(self, stream: WorkflowStream, run_id: str, started: float,
                       deadline: StreamDeadline) -> Snapshot | None:
        """Read the stream to the end: completion is seen the moment Dify sends it. Returns
        ``None`` when polling must take over (stream broke, run paused)."""
        from dify_provider.client.models import WorkflowFinishedEvent, WorkflowPausedEvent

        try:
            for event in stream:
                if isinstance(event, WorkflowFinishedEvent):
                    return snapshot_of_run(event.result.as_run(), self.policy)
                if isinstance(event, WorkflowPausedEvent):
                    self.log.info("Run %s paused for human input; polling until it resumes", run_id)
                    return None
        except e.DifyError as exc:
            if deadline.fired:
                return self._timed_out_on_stream(run_id, started)
            # An ``error`` event (HTTP 200 already sent) and a broken connection alike leave the
            # run's own record as the one truth about how it ended.
            what = (f"Dify sent an error event on the stream of run {run_id}" if isinstance(exc, e.DifyAPIError)
                    else f"The stream of run {run_id} broke")
            self.log.warning("%s (%s); polling the run instead (not re-starting it)", what, exc)
            return None
        except Exception:
            if deadline.fired:
                return self._timed_out_on_stream(run_id, started)
            raise
        return None

    @staticmethod
    def _timed_out_on_stream(run_id: str, started: float) -> Snapshot:
        # The stream had announced the run and not ended it: the run was running.
        running = Snapshot(Verdict.WAIT, Reason.RUNNING, run_id, "", status="running")
        return timeout_snapshot(run_id, Reason.TIMEOUT, time.time() - started, running)

    def _poll_until_done(self, client: DifyClient, run_id: str, started: float) -> Snapshot:
        schedule = PollSchedule(self.poll_interval, self.max_poll_interval)
        say = WaitLogger(self.log)
        while True:
            try:
                snapshot = snapshot_of_run(client.get_workflow_run(run_id), self.policy)
            except e.DifyError as exc:
                snapshot = snapshot_of_error(run_id, exc)
            if snapshot.verdict is not Verdict.WAIT:
                return snapshot
            say(snapshot)
            elapsed = time.time() - started
            if elapsed >= self.timeout:
                return timeout_snapshot(run_id, Reason.TIMEOUT, elapsed, snapshot)
            time.sleep(min(schedule.delay(elapsed), self.timeout - elapsed))

    def _defer(self, t: _Try, run_id: str) -> None:
        from dify_provider.triggers.workflow_run import WorkflowRunTrigger

        deadline = time.time() + self.execution_timeout.total_seconds() if self.execution_timeout else None
        trigger = WorkflowRunTrigger(
            run_id, self.dify_conn_id, task_id=self._dify_task_id, user=t.user,
            poll_interval=self.poll_interval, max_poll_interval=self.max_poll_interval, started_at=t.started,
            end_time=t.started + self.timeout, execution_deadline=deadline,
            fail_on_partial=self.fail_on_partial, fail_on_paused=self.fail_on_paused, stop_on_kill=True,
        )
        # The trigger owns both deadlines and reports them as events, so the run can be stopped
        # in execute_complete; Airflow's deferral timeout would skip that, so none is set.
        self.defer(trigger=trigger, method_name="execute_complete",
                   kwargs={"dify_task_id": self._dify_task_id, "user": t.user})

    def pre_execute(self, context: Context) -> Any:
        result = super().pre_execute(context)
        ti = context["ti"]
        if not AIRFLOW_V_3_0_PLUS and getattr(ti, "next_method", None):
            # Airflow 2 enforces execution_timeout across a deferral: resumed past it, the task fails
            # and on_kill() is called without execute_complete, so it must know the run beforehand.
            memory = RunMemory(context)
            record = memory.get()
            self._dify_run_id = record.get("workflow_run_id")
            self._dify_task_id = (getattr(ti, "next_kwargs", None) or {}).get("dify_task_id") or record.get("task_id")
            self._resumed = (memory, record.get("user"))
        return result

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         dify_task_id: str | None = None, user: str | None = None) -> Any:
        try:
            snapshot = Snapshot.from_event(event)
        except ValueError as exc:
            raise AirflowException(str(exc)) from None
        self._dify_run_id, self._dify_task_id = snapshot.run_id, dify_task_id
        memory = RunMemory(context)
        with memory.kept_for_retries(context):
            if snapshot.reason in (Reason.TIMEOUT, Reason.EXECUTION_TIMEOUT):
                with self._client() as client:
                    self._stop_run(client, user, memory, why=snapshot.message)
            return self._finish(context, memory, snapshot)

    # --- ending --------------------------------------------------------------------------------

    def _finish(self, context: Context, memory: RunMemory, snapshot: Snapshot) -> Any:
        detail = snapshot.detail
        ti = context["ti"]
        for key in XCOM_KEYS:
            if detail.get(key) is not None:  # Airflow 3.0 refuses a None XCom
                ti.xcom_push(key=key, value=detail[key])
        conclude(snapshot, self.log)
        # From here a retry (or a clear) asks for a new run, not for this one's answer again.
        memory.delivered()
        return detail.get("outputs", {})

    def _stop_run(self, client: DifyClient, user: str | None, memory: RunMemory | None, *, why: str) -> None:
        if not self._dify_task_id:
            self.log.warning("Cannot stop Dify run %s: its task id is unknown (run re-found after a crash)",
                             self._dify_run_id)
            return
        try:
            client.stop_workflow_task(self._dify_task_id, user)
            self.log.info("Stopped Dify run %s (task %s): %s", self._dify_run_id, self._dify_task_id, why)
        except e.DifyError as exc:
            self.log.error("Could not stop Dify run %s: %s", self._dify_run_id, exc)
            return
        if memory is not None:
            # Dify 1.13 keeps showing a stopped run as running: a retry must not wait on it.
            memory.mark(stopped=why)

    def on_kill(self) -> None:
        """Task killed (marked failed, cleared, execution_timeout): stop the remote run."""
        if not self._dify_task_id:
            return
        from dify_provider.client import DifyClient, RetryPolicy

        config = dataclasses.replace(self.hook.settings.config, timeout=10.0,
                                     retry=RetryPolicy(max_attempts=2, max_elapsed=15.0))
        attempt = getattr(self, "_try", None)
        resumed = getattr(self, "_resumed", None) if attempt is None else None  # see pre_execute
        user = attempt.user if attempt else resumed[1] if resumed else self.user
        why = ("the Airflow task was killed" if resumed is None
               else "the Airflow task was killed or its execution_timeout passed while it was deferred")
        with DifyClient(config) as client:
            self._stop_run(client, user, None, why=why)
        memory = attempt.memory if attempt is not None else resumed[0] if resumed is not None else None
        if memory is not None:
            memory.mark_soon(stopped=why)
