"""``DifyRunWorkflowOperator``: run a published Dify workflow as a task.

The run is started in streaming mode because the first event names the run and its task id at
once: from then on the run can be found again (retry), stopped (kill, timeout) and linked (UI),
even if the connection drops. Dify has no idempotency key, so a start is never re-sent after
the request may have reached the server; retries re-attach instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from dify_provider.client import errors as e
from dify_provider.client._checks import check_files, check_inputs, check_uuid
from dify_provider.client.waiting import Snapshot, human_duration
from dify_provider.operators.app_mode import read_mode, wrong_app_error
from dify_provider.operators.base import DifyRunOperatorBase, RunTry
from dify_provider.operators.resume import EarlierRun, earlier_run
from dify_provider.operators.run_memory import RunMemory, default_user, try_number
from dify_provider.operators.streaming import silent_start_error
from dify_provider.outcome import airflow_error, conclude
from dify_provider.provider_info import DIFY_DEFAULT_CONN_ID

# The HTTP client and the response models are imported where they are used: a DAG file
# imports this module at every parse, and needs none of them to build the task.
if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from dify_provider.client.sync import DifyClient, StreamDeadline, WorkflowStream

XCOM_KEYS = ("status", "total_tokens", "total_steps", "elapsed_time", "created_at", "finished_at")


class DifyRunWorkflowOperator(DifyRunOperatorBase):
    """Start a run of a published Dify workflow, wait for it, push outputs and usage to XCom.

    The return value (``ti.xcom_pull(task_ids=...)``) is the run's ``outputs`` dict. XCom keys:
    ``workflow_run_id``, ``task_id`` and ``trace_id`` (as soon as the run starts), then ``status``,
    ``total_tokens``, ``total_steps``, ``elapsed_time``, ``created_at``, ``finished_at`` and
    ``usage`` (tokens, price, currency, per node: :mod:`dify_provider.operators.usage`).

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
    :param fail_on_paused: fail when the run pauses for human input (default: keep waiting);
        the same as ``human_input="fail"``.
    :param human_input: when the run pauses on a Human Input node: ``"wait"`` (default: someone
        answers in Dify), ``"fail"``, or ``"airflow"`` (Airflow 3.1+: the form becomes this task's
        required action in the Airflow UI; the answer is posted to Dify and the task waits on; XCom
        ``human_input``; see README "Human input").
    :param check_required_inputs: read ``GET /parameters`` first and fail before starting a run
        if an input is missing or would be refused (type, length, options), as Dify would: in
        streaming mode Dify 1.13 answers a refused input with silence, not with an error.
    :param max_total_tokens: budget in tokens over all tries of this task instance: crossing it
        stops the run and fails the task without retries (see README, "Usage and budgets").
    :param max_total_price: budget in money, an amount and the app's currency (``"0.50 USD"``).
    :param dify_conn_id: connection of type ``dify``.
    """

    template_fields = ("inputs", "user", "files", "workflow_id", "dify_conn_id")
    app_mode = "workflow"
    template_fields_renderers = {"inputs": "json", "files": "json"}

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
        max_total_tokens: int | None = None,
        max_total_price: str | None = None,
        human_input: str = "wait",
        dify_conn_id: str = DIFY_DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(user=user, deferrable=deferrable, poll_interval=poll_interval,
                         max_poll_interval=max_poll_interval, timeout=timeout, fail_on_partial=fail_on_partial,
                         fail_on_paused=fail_on_paused, max_total_tokens=max_total_tokens,
                         max_total_price=max_total_price, human_input=human_input, dify_conn_id=dify_conn_id,
                         **kwargs)
        self.inputs = inputs if inputs is not None else {}
        self.files = files
        self.workflow_id = workflow_id
        self.wait_for_termination = wait_for_termination
        self.check_required_inputs = check_required_inputs

    # --- execute ---------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        inputs, files, workflow_id = self._checked_arguments()
        user = self.user or default_user(context)
        memory = RunMemory(context)
        with self._kept(memory, context), self._client(context) as client:
            t = self._new_try(client, context, memory, user)
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

    def _take_over(self, t: RunTry, earlier: EarlierRun) -> Any:
        self._remember(t, earlier.run_id, earlier.task_id)
        if earlier.done is not None:
            return self._finish(t.context, t.memory, earlier.done)
        return self._wait(t, earlier.run_id, None, None)

    def _remember(self, t: RunTry, run_id: str, task_id: str | None, app_id: str | None = None) -> str | None:
        t.memory.started(run_id, task_id, t.user)
        return self._push_ids(t, run_id, task_id, app_id)

    # --- starting ------------------------------------------------------------------------------

    def _read_until_started(self, t: RunTry, stream: WorkflowStream, deadline: StreamDeadline,
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
            if isinstance(exc, e.DifyNotWorkflowAppError):
                mode = read_mode(t.client, self.dify_conn_id, required=False)
                raise wrong_app_error(self.dify_conn_id, mode, type(self).__name__) from exc
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

    def _silent_start(self, t: RunTry, inputs: dict[str, Any], exc: e.DifyError) -> AirflowException:
        try:
            problems = t.client.get_parameters().input_problems(inputs)
        except e.DifyError:
            problems = []
        return silent_start_error(self.hook.server_version(t.client), problems, exc, t.user)

    def _find_run_after(self, t: RunTry) -> str | None:
        try:
            page = t.client.list_workflow_logs(created_by_end_user_session_id=t.user, limit=5)
        except e.DifyError:
            return None
        for entry in page.data:
            if (entry.workflow_run.created_at or 0) >= int(t.started) - 1:
                return entry.workflow_run.id
        return None

    # --- ending --------------------------------------------------------------------------------

    def _finish(self, context: Context, memory: RunMemory, snapshot: Snapshot, **extra: Any) -> Any:
        detail = snapshot.detail
        ti = context["ti"]
        for key in XCOM_KEYS:
            if detail.get(key) is not None:  # Airflow 3.0 refuses a None XCom
                ti.xcom_push(key=key, value=detail[key])
        self._report_usage(context, memory, snapshot)
        conclude(snapshot, self.log)
        # From here a retry (or a clear) asks for a new run, not for this one's answer again.
        memory.delivered()
        return detail.get("outputs", {})

    def _send_stop(self, client: DifyClient, task_id: str, user: str | None) -> None:
        client.stop_workflow_task(task_id, user)
