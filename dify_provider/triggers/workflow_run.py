"""``WorkflowRunTrigger``: waits for a Dify workflow run inside the triggerer."""

from __future__ import annotations

from typing import Any

from dify_provider.client.errors import DifyError
from dify_provider.client.status import WaitPolicy
from dify_provider.client.waiting import DIFY_RUN, Snapshot, snapshot_of_error, snapshot_of_run
from dify_provider.hooks.dify import SharedAsyncClients
from dify_provider.provider_info import DIFY_DEFAULT_CONN_ID
from dify_provider.triggers.base import RunPollingTrigger


class WorkflowRunTrigger(RunPollingTrigger):
    """Polls ``GET /workflows/run/{id}`` through the triggerer-wide shared client.

    Serialised state: connection id, run id, poll settings, absolute deadlines, status options
    (``fail_on_partial``, ``fail_on_paused``), the console link for log messages, and (for runs
    our operator started) the Dify task id (``dify_task_id``) and ``user`` needed to stop the run
    on kill. Never the API key.

    The Dify task id is not kept as ``self.task_id``: Airflow 3.3's ``BaseTrigger`` sets that to
    the *Airflow* task's id when the triggerer attaches the task instance, so a stop on kill sent
    ``'killed'`` to Dify instead of the run's task id (found by ``make e2e-distributed``).
    ``task_id=`` is still accepted from triggers that earlier versions serialised.
    """

    run_kind = DIFY_RUN

    def __init__(self, workflow_run_id: str, dify_conn_id: str = DIFY_DEFAULT_CONN_ID, *,
                 dify_task_id: str | None = None, user: str | None = None, console_link: str | None = None,
                 fail_on_partial: bool = False, fail_on_paused: bool = False, task_id: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(run_id=workflow_run_id, conn_id=dify_conn_id, **kwargs)
        self.workflow_run_id = workflow_run_id
        self.dify_conn_id = dify_conn_id
        self.dify_task_id = dify_task_id or task_id
        self.user = user
        self.console_link = console_link
        self.fail_on_partial = fail_on_partial
        self.fail_on_paused = fail_on_paused
        self.policy = WaitPolicy(fail_on_partial=fail_on_partial, fail_on_paused=fail_on_paused)

    def own_kwargs(self) -> dict[str, Any]:
        return {"workflow_run_id": self.workflow_run_id, "dify_conn_id": self.dify_conn_id,
                "dify_task_id": self.dify_task_id, "user": self.user, "console_link": self.console_link,
                "fail_on_partial": self.fail_on_partial, "fail_on_paused": self.fail_on_paused}

    async def poll(self) -> Snapshot:
        try:
            client = await SharedAsyncClients.get(self.dify_conn_id)
            run = await client.get_workflow_run(self.workflow_run_id)
        except DifyError as exc:
            return snapshot_of_error(self.workflow_run_id, exc)
        return snapshot_of_run(run, self.policy, console_link=self.console_link)

    async def stop_run(self) -> None:
        if self.dify_task_id is None:
            return
        client = await SharedAsyncClients.get(self.dify_conn_id)
        await client.stop_workflow_task(self.dify_task_id, self.user)
