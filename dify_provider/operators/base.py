"""What every operator that starts a Dify run shares: waiting, deferring, stopping, re-attaching.

A workflow run and a chatflow message are both a Dify workflow run once started: they are
awaited through the same run-detail endpoint, handed to the same trigger, stopped when the task
is killed or times out, and remembered for a retry in the same record. This base holds that
machinery once; an operator adds how it starts its run, reads its stream and stops its task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, BaseOperator, conf

from dify_provider.client import errors as e
from dify_provider.client.status import Reason, Verdict, WaitPolicy
from dify_provider.client.usage import Budget
from dify_provider.client.waiting import PollSchedule, Snapshot, snapshot_of_error, snapshot_of_run, timeout_snapshot
from dify_provider.lineage import DifyLineageMixin
from dify_provider.links import LINK_XCOM_KEY, DifyRunLink, console_logs_url
from dify_provider.operators.human_input import HumanInputBridge, check_mode
from dify_provider.operators.run_memory import RunMemory
from dify_provider.operators.streaming import may_hang_up
from dify_provider.operators.usage import BudgetExceededError, UsageAccount, lineage_facts
from dify_provider.outcome import WaitLogger
from dify_provider.provider_info import DIFY_DEFAULT_CONN_ID
from dify_provider.tracing import TRACE_XCOM_KEY, trace_headers
from dify_provider.version_compat import AIRFLOW_V_3_0_PLUS, TRIGGER_ON_KILL, warn_unavailable

# The hook, the HTTP client and the trigger are imported where they are used: a DAG file
# imports the operators at every parse, and needs none of them to build a task.
if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from dify_provider.client.human_input.models import PendingForm
    from dify_provider.client.sync import DifyClient, StreamDeadline
    from dify_provider.hooks.dify import DifyHook


@dataclass
class RunTry:
    """What every step of one try needs (the operator object itself outlives none of it)."""

    client: DifyClient
    context: Context
    memory: RunMemory
    user: str
    started: float
    account: UsageAccount


class DifyRunOperatorBase(HumanInputBridge, DifyLineageMixin, BaseOperator):
    """Shared by the operators that start a Dify run; not for use in DAGs by itself."""

    operator_extra_links = (DifyRunLink(),)
    ui_color = "#d2e3fc"
    #: Wait for the run's end (the workflow operator lets a DAG turn that off).
    wait_for_termination = True
    #: How log lines name the run, and what the task never does after its stream broke.
    run_noun = "run"
    not_again = "not re-starting it"

    def __init__(
        self,
        *,
        user: str | None = None,
        deferrable: bool | None = None,
        poll_interval: float = 5.0,
        max_poll_interval: float | None = None,
        timeout: float = 7 * 24 * 3600,
        fail_on_partial: bool = False,
        fail_on_paused: bool = False,
        max_total_tokens: int | None = None,
        max_total_price: str | None = None,
        human_input: str = "wait",
        dify_conn_id: str = DIFY_DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.human_input = check_mode(self.task_id, human_input)
        # Checked at DAG parse: a budget that cannot be enforced must not let a run start.
        self.budget = Budget.of(max_total_tokens, max_total_price)
        self.max_total_tokens, self.max_total_price = max_total_tokens, max_total_price
        self.user = user
        # Read when the DAG is parsed, not when this module is imported, so env changes apply.
        self.deferrable = (conf.getboolean("operators", "default_deferrable", fallback=False)
                           if deferrable is None else deferrable)
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.timeout = timeout
        self.fail_on_partial = fail_on_partial
        self.fail_on_paused = fail_on_paused or human_input == "fail"
        self.dify_conn_id = dify_conn_id
        # Fail at DAG parse time on a bad schedule rather than mid-run.
        PollSchedule(poll_interval, max_poll_interval)
        if self.deferrable and not TRIGGER_ON_KILL:
            warn_unavailable(self.task_id, "stopping the Dify run when the deferred task is killed (marked failed "
                             "or cleared)", "Airflow 3.3+ (the triggerer calls BaseTrigger.on_kill)",
                             "the run goes on; timeout and execution_timeout still stop it")
        self._dify_task_id: str | None = None
        self._dify_run_id: str | None = None
        self._seen_form: PendingForm | None = None

    @cached_property
    def hook(self) -> DifyHook:
        from dify_provider.hooks.dify import DifyHook

        return DifyHook(dify_conn_id=self.dify_conn_id)

    @property
    def policy(self) -> WaitPolicy:
        return WaitPolicy(fail_on_partial=self.fail_on_partial, fail_on_paused=self.fail_on_paused)

    # --- what an operator adds ---------------------------------------------------------------

    def _on_stream_event(self, t: RunTry, stream: Any) -> None:
        """Called for each event the run's stream sends while it is followed (ids, progress)."""

    def _follow_stream(self, t: RunTry, stream: Any, run_id: str, deadline: StreamDeadline) -> Snapshot | None:
        """Read the stream to the end: completion is seen the moment Dify sends it. Returns
        ``None`` when polling must take over (stream broke, run paused)."""
        from dify_provider.client.human_input.models import PendingForm
        from dify_provider.client.models import HumanInputRequiredEvent, WorkflowFinishedEvent, WorkflowPausedEvent

        try:
            for event in stream:
                self._on_stream_event(t, stream)
                self._count(t, t.account.see(event))
                if isinstance(event, WorkflowFinishedEvent):
                    return snapshot_of_run(event.result.as_run(), self.policy)
                if isinstance(event, HumanInputRequiredEvent):
                    self._seen_form = PendingForm.of(event.data)
                if isinstance(event, WorkflowPausedEvent):
                    self.log.info("Run %s paused for human input", run_id)
                    return None
        except e.DifyError as exc:
            if deadline.fired:
                return self._timed_out_on_stream(run_id, t.started)
            # An ``error`` event (HTTP 200 already sent) and a broken connection alike leave the
            # run's own record as the one truth about how it ended.
            what = (f"Dify sent an error event on the stream of {self.run_noun} {run_id}"
                    if isinstance(exc, e.DifyAPIError) else f"The stream of {self.run_noun} {run_id} broke")
            self.log.warning("%s (%s); polling the run instead (%s)", what, exc, self.not_again)
            return None
        except Exception:
            if deadline.fired:
                return self._timed_out_on_stream(run_id, t.started)
            raise
        return None

    def _finish(self, context: Context, memory: RunMemory, snapshot: Snapshot, **extra: Any) -> Any:
        """Push the results, conclude, and return the task's value."""
        raise NotImplementedError

    def _send_stop(self, client: DifyClient, task_id: str, user: str | None) -> None:
        """Ask Dify to stop the Dify task (the stream's ``task_id``) this operator started."""
        raise NotImplementedError

    def _deferred_kwargs(self, t: RunTry) -> dict[str, Any]:
        """What ``execute_complete`` needs besides the event, kept across the deferral."""
        return {"dify_task_id": self._dify_task_id, "user": t.user}

    # --- shared steps ------------------------------------------------------------------------

    def _client(self, context: Context | None = None) -> DifyClient:
        """The try's client; with ``context``, every request carries the try's trace id."""
        try:
            return self.hook.get_client(headers=trace_headers(context) if context is not None else None)
        except e.DifyConfigError as exc:  # the connection is wrong: a retry would read it again
            raise AirflowFailException(str(exc)) from exc

    @contextlib.contextmanager
    def _kept(self, memory: RunMemory, context: Context) -> Iterator[None]:
        """Around a try: its record kept for the retries, and the spend so far saved into it
        however the try ends (a budget counts what a failed try spent)."""
        with memory.kept_for_retries(context):
            try:
                yield
            except BaseException:
                account = getattr(self, "_account", None)
                if account is not None and account.context is context:
                    with contextlib.suppress(Exception):  # never hide the try's own error
                        account.save()
                raise

    def _new_try(self, client: DifyClient, context: Context, memory: RunMemory, user: str) -> RunTry:
        """Start a try's bookkeeping; a try whose task already spent its budget goes no further
        (and stops the run an earlier try left going, which would spend more)."""
        account = self._account = UsageAccount(context, memory, self.budget, self.log)
        t = self._try = RunTry(client, context, memory, user, time.time(), account)
        try:
            account.refuse_if_spent(self._app_label())
        except BudgetExceededError as exc:
            record = memory.get()
            if record.get("task_id") and not (record.get("stopped") or record.get("delivered")):
                self._dify_run_id, self._dify_task_id = record.get("workflow_run_id"), record["task_id"]
                self._stop_run(client, record.get("user") or user, memory, why=f"budget exceeded: {exc}")
            raise
        trace_id = self._trace_id = dict(client.config.extra_headers).get("X-Trace-Id")
        if trace_id:
            context["ti"].xcom_push(key=TRACE_XCOM_KEY, value=trace_id)
            self.log.info("Dify trace id %s (sent as X-Trace-Id; Dify's tracing integrations show it)", trace_id)
        return t

    def _count(self, t: RunTry, breach: str | None) -> None:
        """After an event or a poll grew the spend: past the budget, stop the run and fail."""
        if breach is None:
            return
        run_id = t.account.run_id or "(not announced yet)"
        self.log.error("Budget exceeded: %s; stopping Dify %s %s", breach, self.run_noun, run_id)
        if self._dify_task_id:
            self._stop_run(t.client, t.user, t.memory, why=f"budget exceeded: {breach}")
        self._note_lineage(t.account.report(app=self._app_label(), budget_exceeded=True), "stopped", run_id)
        raise BudgetExceededError(
            f"Dify {self.run_noun} {run_id} stopped: {breach}. Budget {self.budget.describe()} over all tries of "
            "this task; it fails without retries. Raise max_total_tokens / max_total_price to let it spend more."
        )

    def _app_label(self) -> str:
        """What metrics call the app: its name when this try read it, else the connection id."""
        return getattr(self, "_app_name", None) or self.dify_conn_id

    def _report_usage(self, context: Context, memory: RunMemory, snapshot: Snapshot) -> dict[str, Any]:
        """The try's ``usage`` (XCom, log line, metrics), from its account or, after a deferral,
        from the run's record alone."""
        account = getattr(self, "_account", None)
        if account is None or account.context is not context:
            account = self._account = UsageAccount(context, memory, self.budget, self.log)
        if snapshot.run_id and account.run_id is None:
            account.attach(snapshot.run_id)
        account.see_run_total(snapshot.detail.get("total_tokens"))
        elapsed = snapshot.detail.get("elapsed_time")
        elapsed = elapsed if isinstance(elapsed, int | float) else None
        usage = account.report(app=self._app_label(), elapsed_time=elapsed)
        self._note_lineage(usage, snapshot.status or None, snapshot.run_id or account.run_id)
        self._push_answers(context, memory)
        return usage

    #: How OpenLineage facts name the app's mode when the operator did not read it.
    app_mode: str | None = None

    def _note_lineage(self, usage: dict[str, Any], status: str | None, run_id: str | None) -> None:
        """What the try's OpenLineage COMPLETE/FAIL event says of its run (:mod:`dify_provider.lineage`)."""
        self._lineage_facts = lineage_facts(self, usage, status, run_id)

    def _push_ids(self, t: RunTry, run_id: str, task_id: str | None, app_id: str | None = None) -> str | None:
        """Store the run's ids where a retry, a kill and the UI link will look; returns the link."""
        self._dify_run_id, self._dify_task_id = run_id, task_id
        ti = t.context["ti"]
        ti.xcom_push(key="workflow_run_id", value=run_id)
        if task_id is not None:  # unknown after a lost start; Airflow 3.0 refuses a None XCom
            ti.xcom_push(key="task_id", value=task_id)
        settings = self.hook.settings
        url = console_logs_url(settings.console_url, settings.app_id or app_id, run_id)
        if url:
            ti.xcom_push(key=LINK_XCOM_KEY, value=url)
        return url

    def _wait(self, t: RunTry, run_id: str, stream: Any, deadline: StreamDeadline | None, **extra: Any) -> Any:
        """Wait for run ``run_id`` on its stream, in the triggerer, or by polling, then finish."""
        t.account.attach(run_id)
        self._wait_extra = extra
        leave = not self.wait_for_termination or self.deferrable
        if leave and self.wait_for_termination and self.budget.active:
            # Dify 1.13 writes a run's tokens into its record only when it ends: a wait in the
            # triggerer could not see the spend grow, so it could not stop the run in time.
            self.log.info("A budget is set (%s): waiting here, on the stream, not in the triggerer, so the run "
                          "can be stopped the moment its spend crosses it", self.budget.describe())
            leave = False
        if leave and stream is not None and not self._may_hang_up(t, run_id):
            leave = False
        if leave and self.wait_for_termination and stream is not None and self._needs_stream_for_forms(t):
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
            self._seen_form = None
            snapshot = self._follow_stream(t, stream, run_id, deadline)
            if snapshot is None and self._seen_form is not None:
                self._while_paused(t, run_id, self._seen_form)  # parks the task, or the run is waited on
        if snapshot is None:
            snapshot = self._poll_until_done(t.client, run_id, t.started, t)
        if snapshot.reason in (Reason.TIMEOUT, Reason.EXECUTION_TIMEOUT):
            self._stop_run(t.client, t.user, t.memory, why=snapshot.message)
        return self._finish(t.context, t.memory, snapshot, **extra)

    def _may_hang_up(self, t: RunTry, run_id: str) -> bool:
        return may_hang_up(self.log, self.hook.server_version(t.client), run_id, self.dify_conn_id,
                           waiting=self.wait_for_termination)

    @staticmethod
    def _timed_out_on_stream(run_id: str, started: float) -> Snapshot:
        # The stream had announced the run and not ended it: the run was running.
        running = Snapshot(Verdict.WAIT, Reason.RUNNING, run_id, "", status="running")
        return timeout_snapshot(run_id, Reason.TIMEOUT, time.time() - started, running)

    def _poll_until_done(self, client: DifyClient, run_id: str, started: float, t: RunTry | None = None) -> Snapshot:
        schedule = PollSchedule(self.poll_interval, self.max_poll_interval)
        say = WaitLogger(self.log)
        while True:
            try:
                run = client.get_workflow_run(run_id)
                snapshot = snapshot_of_run(run, self.policy)
            except e.DifyError as exc:
                snapshot = snapshot_of_error(run_id, exc)
            else:
                if t is not None and snapshot.verdict is Verdict.WAIT:
                    self._count(t, t.account.see_run_total(run.total_tokens))
            if snapshot.verdict is not Verdict.WAIT:
                return snapshot
            if t is not None and snapshot.reason is Reason.PAUSED:
                self._while_paused(t, run_id)
            say(snapshot)
            elapsed = time.time() - started
            if elapsed >= self.timeout:
                return timeout_snapshot(run_id, Reason.TIMEOUT, elapsed, snapshot)
            time.sleep(min(schedule.delay(elapsed), self.timeout - elapsed))

    def _defer(self, t: RunTry, run_id: str) -> None:
        from dify_provider.triggers.workflow_run import WorkflowRunTrigger

        deadline = time.time() + self.execution_timeout.total_seconds() if self.execution_timeout else None
        trigger = WorkflowRunTrigger(
            run_id, self.dify_conn_id, dify_task_id=self._dify_task_id, user=t.user,
            poll_interval=self.poll_interval, max_poll_interval=self.max_poll_interval, started_at=t.started,
            end_time=t.started + self.timeout, execution_deadline=deadline,
            fail_on_partial=self.fail_on_partial, fail_on_paused=self.fail_on_paused or self._bridging(),
            stop_on_kill=True,
        )
        # The trigger owns both deadlines and reports them as events, so the run can be stopped
        # in execute_complete; Airflow's deferral timeout would skip that, so none is set.
        self.defer(trigger=trigger, method_name="execute_complete", kwargs=self._deferred_kwargs(t))

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
                         dify_task_id: str | None = None, user: str | None = None, **extra: Any) -> Any:
        try:
            snapshot = Snapshot.from_event(event)
        except ValueError as exc:
            raise AirflowException(str(exc)) from None
        self._dify_run_id, self._dify_task_id = snapshot.run_id, dify_task_id
        memory = RunMemory(context)
        if snapshot.reason is Reason.PAUSED and self._bridging():  # the trigger handed a pause over
            return self._paused_in_triggerer(context, memory, snapshot.run_id, dify_task_id, user, extra)
        with self._kept(memory, context):
            if snapshot.reason in (Reason.TIMEOUT, Reason.EXECUTION_TIMEOUT):
                with self._client(context) as client:
                    self._stop_run(client, user, memory, why=snapshot.message)
            return self._finish(context, memory, snapshot, user=user, **extra)

    def _stop_run(self, client: DifyClient, user: str | None, memory: RunMemory | None, *, why: str) -> None:
        if not self._dify_task_id:
            self.log.warning("Cannot stop Dify run %s: its task id is unknown (run re-found after a crash)",
                             self._dify_run_id)
            return
        try:
            self._send_stop(client, self._dify_task_id, user)
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
        attempt: RunTry | None = getattr(self, "_try", None)
        resumed = getattr(self, "_resumed", None) if attempt is None else None  # see pre_execute
        user = attempt.user if attempt else resumed[1] if resumed else self.user
        why = ("the Airflow task was killed" if resumed is None
               else "the Airflow task was killed or its execution_timeout passed while it was deferred")
        with DifyClient(config) as client:
            self._stop_run(client, user, None, why=why)
        memory = attempt.memory if attempt is not None else resumed[0] if resumed is not None else None
        if memory is not None:  # with the spend so far, which the next try's budget counts
            memory.mark_soon(stopped=why, **(attempt.account.facts() if attempt is not None else {}))
