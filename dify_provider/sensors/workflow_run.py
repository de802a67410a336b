"""``WorkflowRunSensor``: wait for any Dify workflow run, started by us or by anything else."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from dify_provider.client._checks import check_uuid
from dify_provider.client.errors import DifyError
from dify_provider.client.status import WaitPolicy
from dify_provider.client.waiting import Snapshot, snapshot_of_error, snapshot_of_run
from dify_provider.lineage import DifyLineageMixin, lineage_namespace
from dify_provider.links import console_logs_url
from dify_provider.provider_info import DIFY_DEFAULT_CONN_ID
from dify_provider.sensors.base import RunPollingSensor

# The hook (and its HTTP client) and the trigger load on first use, not at every DAG parse.
if TYPE_CHECKING:
    from dify_provider.hooks.dify import DifyHook
    from dify_provider.triggers.workflow_run import WorkflowRunTrigger


class WorkflowRunSensor(DifyLineageMixin, RunPollingSensor):
    """Pokes ``GET /workflows/run/{workflow_run_id}`` until the run ends.

    On success the XCom return value is the run detail (status, outputs, total_tokens,
    total_steps, elapsed_time, created_at, finished_at, error). ``failed``/``stopped`` fail the
    task with Dify's error text; ``partial-succeeded`` succeeds with a warning; ``paused`` keeps
    waiting (logged once, with where to answer the form).

    :param workflow_run_id: the run to wait for (templated), e.g.
        ``"{{ ti.xcom_pull(task_ids='run', key='workflow_run_id') }}"``.
    :param dify_conn_id: connection of type ``dify`` for the app that owns the run.
    :param fail_on_partial: fail when the run partially succeeded (default: succeed, warn).
    :param fail_on_paused: fail when the run pauses for human input (default: keep waiting).

    See :class:`~dify_provider.sensors.base.RunPollingSensor` for the waiting options.
    """

    template_fields = ("workflow_run_id", "dify_conn_id")
    ui_color = "#e8f0fe"

    def __init__(self, *, workflow_run_id: str, dify_conn_id: str = DIFY_DEFAULT_CONN_ID,
                 fail_on_partial: bool = False, fail_on_paused: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workflow_run_id = workflow_run_id
        self.dify_conn_id = dify_conn_id
        self.fail_on_partial = fail_on_partial
        self.fail_on_paused = fail_on_paused

    @property
    def policy(self) -> WaitPolicy:
        return WaitPolicy(fail_on_partial=self.fail_on_partial, fail_on_paused=self.fail_on_paused)

    @cached_property
    def hook(self) -> DifyHook:
        from dify_provider.hooks.dify import DifyHook

        return DifyHook(dify_conn_id=self.dify_conn_id)

    def validate_run_id(self) -> str:
        self.workflow_run_id = check_uuid("workflow_run_id", self.workflow_run_id)
        return self.workflow_run_id

    def poll_once(self) -> Snapshot:
        try:
            with self.hook.get_client() as client:
                run = client.get_workflow_run(self.workflow_run_id)
        except DifyError as exc:
            return snapshot_of_error(self.workflow_run_id, exc)
        settings = self.hook.settings
        self._app_id = settings.app_id or run.app_id
        self._console_link = console_logs_url(settings.console_url, self._app_id, run.id)
        return snapshot_of_run(run, self.policy, console_link=self._console_link)

    def observe(self, snapshot: Snapshot) -> None:
        """Keep the run's last known facts for OpenLineage: a poll that learnt nothing (a transient
        error) keeps what an earlier one saw, and a sensor that times out reports the last status."""
        namespace, app_id = self._server_facts()
        detail = snapshot.detail
        seen = {
            "namespace": namespace,
            "app": app_id,
            "app_id": app_id,
            "kind": "workflow_run",
            "run_id": snapshot.run_id,
            "status": snapshot.status,
            "total_tokens": detail.get("total_tokens"),
            "elapsed_time": detail.get("elapsed_time"),
        }
        known = dict(self._lineage_facts or {})
        known.update((key, value) for key, value in seen.items() if value is not None)
        self._lineage_facts = known

    def _server_facts(self) -> tuple[str | None, str | None]:
        """(namespace, app id) from the connection; (None, None) when it cannot be read, which has
        already failed the sensor or will: lineage never adds a failure of its own."""
        try:
            settings = self.hook.settings
        except Exception:
            return None, None
        return lineage_namespace(settings.config.base_url), getattr(self, "_app_id", None) or settings.app_id

    def build_trigger(self, run_id: str, *, last: Snapshot, **common: Any) -> WorkflowRunTrigger:
        from dify_provider.triggers.workflow_run import WorkflowRunTrigger

        return WorkflowRunTrigger(run_id, self.dify_conn_id, console_link=getattr(self, "_console_link", None),
                                  fail_on_partial=self.fail_on_partial, fail_on_paused=self.fail_on_paused, **common)
