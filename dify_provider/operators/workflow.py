"""``DifyRunWorkflowOperator``: run a published Dify workflow as a task.

The run is started in streaming mode because the first event names the run and its task id at
once: from then on the run can be found again (retry), stopped (kill, timeout) and linked (UI),
even if the connection drops. Dify has no idempotency key, so a start is never re-sent after
the request may have reached the server; retries re-attach instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from dify_provider.client import errors as e
from dify_provider.client._checks import check_files, check_inputs, check_uuid
from dify_provider.client.status import Reason, Verdict, WaitPolicy, is_terminal
from dify_provider.client.waiting import (
    PollSchedule,
    Snapshot,
    snapshot_of_error,
    snapshot_of_run,
    timeout_snapshot,
)
from dify_provider.links import LINK_XCOM_KEY, DifyRunLink, console_logs_url
from dify_provider.outcome import WaitLogger, conclude
from dify_provider.provider_info import DIFY_DEFAULT_CONN_ID

# The hook, the HTTP client, the response models and the trigger are imported where they are
# used: a DAG file imports this module at every parse, and needs none of them to build the task.
if TYPE_CHECKING:
    from airflow.sdk import Context

    from dify_provider.client.sync import DifyClient, WorkflowStream
    from dify_provider.hooks.dify import DifyHook

#: task_state_store key; survives retries of the same task instance (Airflow 3.3+).
STATE_KEY = "dify_workflow_run"
#: Dify >= 1.13 runs streaming executions in Celery workers: hanging up no longer kills them.
DETACH_SAFE_VERSION = (1, 13)
XCOM_KEYS = ("status", "total_tokens", "total_steps", "elapsed_time", "created_at", "finished_at")


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
        stream is closed, so the operator stays on the stream and says why).
    :param poll_interval: seconds between polls when polling (deferred, or after a broken stream).
    :param max_poll_interval: turn on polling backoff up to this many seconds.
    :param timeout: seconds to wait for the run; when exceeded the run is stopped and the task fails.
    :param fail_on_partial: fail on ``partial-succeeded`` (default: succeed with a warning).
    :param fail_on_paused: fail when the run pauses for human input (default: keep waiting).
    :param check_required_inputs: read ``GET /parameters`` first and fail before starting a run
        if a required input variable is missing.
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
        started = time.time()
        with self.hook.get_client() as client:
            attached = self._find_previous_run(client, context, user)
            if attached is not None:
                return self._wait(client, context, attached, user, None, started)
            if self.check_required_inputs:
                self._check_required(client, inputs)
            stream = client.run_workflow(inputs, user, response_mode="streaming", files=files,
                                         workflow_id=workflow_id)
            run_id = self._read_until_started(stream, client, context, user, started)
            return self._wait(client, context, run_id, user, stream, started)

    def _checked_arguments(self) -> tuple[dict[str, Any], list[dict[str, Any]] | None, str | None]:
        try:
            return (check_inputs(self.inputs), check_files(self.files),
                    None if self.workflow_id in (None, "") else check_uuid("workflow_id", self.workflow_id))
        except e.DifyConfigError as exc:
            raise AirflowFailException(str(exc)) from exc

    def _check_required(self, client: DifyClient, inputs: dict[str, Any]) -> None:
        try:
            required = client.get_parameters().required_variables
        except e.DifyError as exc:
            raise _airflow_error(exc) from exc
        missing = [name for name in required if inputs.get(name) in (None, "")]
        if missing:
            raise AirflowFailException(
                f"inputs: missing required workflow input(s) {', '.join(map(repr, missing))}; the app's "
                f"input form requires them (set them in `inputs`, or pass check_required_inputs=False)"
            )

    # --- retry safety ------------------------------------------------------------------------

    def _find_previous_run(self, client: DifyClient, context: Context, user: str) -> str | None:
        """On a retry, return the id of a run this task instance already started and that is
        still going, to re-attach to. ``None`` means: start a new run.

        A finished run is never reused, even one that succeeded: a user who clears a task (same
        DAG run, so the same end-user id) asks for a new run, not for yesterday's answer.
        """
        if int(getattr(context.get("ti"), "try_number", 1) or 1) <= 1:
            return None
        remembered = _state_get(context)
        candidates: list[str] = []
        if remembered and remembered.get("workflow_run_id"):
            self._dify_task_id = remembered.get("task_id")
            candidates.append(str(remembered["workflow_run_id"]))
        elif self.user is None:
            # No state store (or a crash before it was written): Dify's logs by our end-user id.
            try:
                page = client.list_workflow_logs(created_by_end_user_session_id=user, limit=5)
                candidates += [entry.workflow_run.id for entry in page.data]
            except e.DifyError as exc:
                self.log.warning("could not look for an earlier run of this task in Dify's logs: %s", exc)
        for run_id in candidates:
            try:
                run = client.get_workflow_run(run_id)
            except e.DifyError:
                continue
            if not is_terminal(run.status):
                self.log.info("Retry %s: re-attaching to Dify workflow run %s (status %s) started by an "
                              "earlier try, instead of starting a new one",
                              getattr(context.get("ti"), "try_number", "?"), run_id, run.status)
                self._remember(context, run_id, self._dify_task_id, user)
                return run_id
        return None

    def _remember(self, context: Context, run_id: str, task_id: str | None, user: str) -> None:
        self._dify_run_id, self._dify_task_id = run_id, task_id
        _state_set(context, {"workflow_run_id": run_id, "task_id": task_id, "user": user})
        ti = context["ti"]
        ti.xcom_push(key="workflow_run_id", value=run_id)
        ti.xcom_push(key="task_id", value=task_id)
        settings = self.hook.settings
        url = console_logs_url(settings.console_url, settings.app_id, run_id)
        if url:
            ti.xcom_push(key=LINK_XCOM_KEY, value=url)

    # --- starting ------------------------------------------------------------------------------

    def _read_until_started(self, stream: WorkflowStream, client: DifyClient, context: Context, user: str,
                            started: float) -> str:
        from dify_provider.client.models import WorkflowStartedEvent

        try:
            for event in stream:
                if isinstance(event, WorkflowStartedEvent):
                    self._remember(context, event.workflow_run_id, event.task_id, user)
                    settings = self.hook.settings
                    app_id = settings.app_id or event.inputs.get("sys.app_id")
                    url = console_logs_url(settings.console_url, app_id, event.workflow_run_id)
                    if url and not settings.app_id:
                        context["ti"].xcom_push(key=LINK_XCOM_KEY, value=url)
                    self.log.info("Started Dify workflow run %s (task %s)%s", event.workflow_run_id,
                                  event.task_id, f": {url}" if url else "")
                    return event.workflow_run_id
        except e.DifyError as exc:
            if isinstance(exc, e.DifyAPIError | e.DifyConfigError) or getattr(exc, "sent", True) is False:
                raise _airflow_error(exc) from exc
            # The request may have started a run we never heard of: do not send it again.
            found = self._find_run_after(client, user, started)
            if found:
                self.log.warning("The start request broke (%s) but Dify has run %s for this task: attaching",
                                 exc, found)
                self._remember(context, found, None, user)
                return found
            raise AirflowException(
                f"starting the Dify run failed ambiguously ({exc}); it was not re-sent because Dify has no "
                "idempotency key and a second request could start a second paid run. A retry of this task "
                "looks for the run in Dify's logs before starting another."
            ) from exc
        raise AirflowException("the Dify stream ended before announcing the run (no workflow_started event)")

    def _find_run_after(self, client: DifyClient, user: str, started: float) -> str | None:
        try:
            page = client.list_workflow_logs(created_by_end_user_session_id=user, limit=5)
        except e.DifyError:
            return None
        for entry in page.data:
            if (entry.workflow_run.created_at or 0) >= int(started) - 1:
                return entry.workflow_run.id
        return None

    # --- waiting -------------------------------------------------------------------------------

    def _wait(self, client: DifyClient, context: Context, run_id: str, user: str,
              stream: WorkflowStream | None, started: float) -> Any:
        if not self.wait_for_termination and (stream is None or self._detach_safe(client)):
            if stream is not None:
                stream.close()
            self.log.info("wait_for_termination=False: not waiting for run %s", run_id)
            return None
        if stream is not None and self.deferrable and not self._detach_safe(client):
            self.log.warning("Not deferring: this Dify server is older than 1.13 and stops a streaming run "
                             "when the stream is closed, so the worker stays on the stream.")
        elif self.deferrable:
            if stream is not None:
                stream.close()
            self._defer(run_id, user, started)
        snapshot = self._follow_stream(stream, run_id, started) if stream is not None else None
        if snapshot is None:
            snapshot = self._poll_until_done(client, run_id, started)
        if snapshot.reason in (Reason.TIMEOUT, Reason.EXECUTION_TIMEOUT):
            self._stop_run(client, user, why=snapshot.message)
        return self._finish(context, snapshot)

    def _detach_safe(self, client: DifyClient) -> bool:
        try:
            return client.get_server_version().at_least(*DETACH_SAFE_VERSION)
        except e.DifyError:
            return False  # cannot tell: assume the old behaviour, which is the safe assumption

    def _follow_stream(self, stream: WorkflowStream, run_id: str, started: float) -> Snapshot | None:
        """Read the stream to the end: completion is seen the moment Dify sends it. Returns
        ``None`` when polling must take over (stream broke, run paused)."""
        from dify_provider.client.models import WorkflowFinishedEvent, WorkflowPausedEvent

        timed_out = threading.Event()

        def hang_up() -> None:
            timed_out.set()
            stream.close()

        watchdog = threading.Timer(max(0.0, started + self.timeout - time.time()), hang_up)
        watchdog.daemon = True
        watchdog.start()
        try:
            for event in stream:
                if isinstance(event, WorkflowFinishedEvent):
                    return snapshot_of_run(event.result.as_run(), self.policy)
                if isinstance(event, WorkflowPausedEvent):
                    self.log.info("Run %s paused for human input; polling until it resumes", run_id)
                    return None
        except e.DifyError as exc:
            if timed_out.is_set():
                return timeout_snapshot(run_id, Reason.TIMEOUT, time.time() - started, None)
            # An ``error`` event (HTTP 200 already sent) and a broken connection alike leave the
            # run's own record as the one truth about how it ended.
            what = (f"Dify sent an error event on the stream of run {run_id}" if isinstance(exc, e.DifyAPIError)
                    else f"The stream of run {run_id} broke")
            self.log.warning("%s (%s); polling the run instead (not re-starting it)", what, exc)
            return None
        except Exception:
            if timed_out.is_set():
                return timeout_snapshot(run_id, Reason.TIMEOUT, time.time() - started, None)
            raise
        finally:
            watchdog.cancel()
        return None

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

    def _defer(self, run_id: str, user: str, started: float) -> None:
        from dify_provider.triggers.workflow_run import WorkflowRunTrigger

        deadline = time.time() + self.execution_timeout.total_seconds() if self.execution_timeout else None
        trigger = WorkflowRunTrigger(
            run_id, self.dify_conn_id, task_id=self._dify_task_id, user=user,
            poll_interval=self.poll_interval, max_poll_interval=self.max_poll_interval, started_at=started,
            end_time=started + self.timeout, execution_deadline=deadline,
            fail_on_partial=self.fail_on_partial, fail_on_paused=self.fail_on_paused, stop_on_kill=True,
        )
        # The trigger owns both deadlines and reports them as events, so the run can be stopped
        # in execute_complete; Airflow's deferral timeout would skip that, so none is set.
        self.defer(trigger=trigger, method_name="execute_complete",
                   kwargs={"dify_task_id": self._dify_task_id, "user": user})

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         dify_task_id: str | None = None, user: str | None = None) -> Any:
        try:
            snapshot = Snapshot.from_event(event)
        except ValueError as exc:
            raise AirflowException(str(exc)) from None
        self._dify_run_id, self._dify_task_id = snapshot.run_id, dify_task_id
        if snapshot.reason in (Reason.TIMEOUT, Reason.EXECUTION_TIMEOUT):
            with self.hook.get_client() as client:
                self._stop_run(client, user, why=snapshot.message)
        return self._finish(context, snapshot)

    # --- ending --------------------------------------------------------------------------------

    def _finish(self, context: Context, snapshot: Snapshot) -> Any:
        detail = snapshot.detail
        ti = context["ti"]
        for key in XCOM_KEYS:
            if key in detail:
                ti.xcom_push(key=key, value=detail[key])
        conclude(snapshot, self.log)
        return detail.get("outputs", {})

    def _stop_run(self, client: DifyClient, user: str | None, *, why: str) -> None:
        if not self._dify_task_id:
            self.log.warning("Cannot stop Dify run %s: its task id is unknown (run re-found after a crash)",
                             self._dify_run_id)
            return
        try:
            client.stop_workflow_task(self._dify_task_id, user)
            self.log.info("Stopped Dify run %s (task %s): %s", self._dify_run_id, self._dify_task_id, why)
        except e.DifyError as exc:
            self.log.error("Could not stop Dify run %s: %s", self._dify_run_id, exc)

    def on_kill(self) -> None:
        """Task killed (marked failed, cleared, execution_timeout): stop the remote run."""
        if not self._dify_task_id:
            return
        from dify_provider.client import DifyClient, RetryPolicy

        config = dataclasses.replace(self.hook.settings.config, timeout=10.0,
                                     retry=RetryPolicy(max_attempts=2, max_elapsed=15.0))
        with DifyClient(config) as client:
            self._stop_run(client, self.user, why="the Airflow task was killed")


def default_user(context: Context) -> str:
    """``airflow:<dag>:<task>:<run>[:<map index>]``, hashed when longer than Dify's 255 chars."""
    ti = context["ti"]
    parts = ["airflow", ti.dag_id, ti.task_id, ti.run_id]
    if getattr(ti, "map_index", -1) not in (-1, None):
        parts.append(str(ti.map_index))
    user = ":".join(parts)
    if len(user) > 255:
        user = user[:200] + ":" + hashlib.sha256(user.encode()).hexdigest()[:32]
    return user


def _state_get(context: Context) -> dict[str, Any] | None:
    store = context.get("task_state_store")
    if store is None:
        return None
    value = store.get(STATE_KEY)
    return value if isinstance(value, dict) else None


def _state_set(context: Context, value: dict[str, Any]) -> None:
    store = context.get("task_state_store")
    if store is not None:
        store.set(STATE_KEY, value)


def _airflow_error(exc: e.DifyError) -> AirflowException:
    """Input, auth and quota problems fail without retries: the same request would fail again."""
    if isinstance(exc, e.DifyInvalidInputError | e.DifyAuthError | e.DifyQuotaExceededError
                  | e.DifyNotFoundError | e.DifyConfigError):
        return AirflowFailException(str(exc))
    return AirflowException(str(exc))

