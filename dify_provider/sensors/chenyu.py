"""``ChenyuRunSensor``: wait for a Chenyu run order started elsewhere."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from dify_provider.client.errors import DifyError
from dify_provider.client.waiting import Snapshot
from dify_provider.provider_info import CHENYU_DEFAULT_CONN_ID
from dify_provider.sensors.base import RunPollingSensor

# The Chenyu client, hook and trigger load when the task runs, not at every DAG parse.
if TYPE_CHECKING:
    from dify_provider.hooks.chenyu import ChenyuHook
    from dify_provider.triggers.chenyu import ChenyuRunTrigger


class ChenyuRunSensor(RunPollingSensor):
    """Polls Chenyu's run progress until the run order ends.

    ``succeeded`` succeeds; ``failed`` and ``canceled`` fail the task (without retries: the run
    is over) with Chenyu's error text; ``queued`` and ``running`` wait, and so does a status
    this provider does not know (with one warning). While waiting the task log shows the queue
    position and estimated wait, the percent done, and each new line of the run's log once.

    On success the XCom return value is the run's summary: ``outputs``, ``status``, durations
    (``actual_execution_duration_sec``, ``queued_sec``, ``total_sec``), the three cost figures
    (``compute_cost``, ``external_model_cost``, ``total_cost``), ids, ``error`` and ISO
    timestamps (``created_at``, ``started_at``, ``terminal_at``).

    :param run_order_id: the run order to wait for (templated), e.g. ``wfrun_314ff7d8b7a5beff1388``.
    :param chenyu_conn_id: connection of type ``chenyu``.

    See :class:`~dify_provider.sensors.base.RunPollingSensor` for the waiting options (poke,
    reschedule or deferrable; ``poke_interval``, ``max_poke_interval``, ``timeout``, ``soft_fail``).
    """

    template_fields = ("run_order_id", "chenyu_conn_id")
    ui_color = "#fdf1e6"

    def __init__(self, *, run_order_id: str, chenyu_conn_id: str = CHENYU_DEFAULT_CONN_ID,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_order_id = run_order_id
        self.chenyu_conn_id = chenyu_conn_id

    @cached_property
    def hook(self) -> ChenyuHook:
        from dify_provider.hooks.chenyu import ChenyuHook

        return ChenyuHook(chenyu_conn_id=self.chenyu_conn_id)

    def validate_run_id(self) -> str:
        from dify_provider.client.chenyu import check_run_order_id

        self.run_order_id = check_run_order_id(self.run_order_id)
        return self.run_order_id

    def poll_once(self) -> Snapshot:
        from dify_provider.client.chenyu import snapshot_of_chenyu_error, snapshot_of_progress

        try:
            with self.hook.get_client() as client:
                progress = client.get_run_progress(self.run_order_id)
        except DifyError as exc:
            return snapshot_of_chenyu_error(self.run_order_id, exc)
        return snapshot_of_progress(progress, self.run_order_id)

    def build_trigger(self, run_id: str, *, last: Snapshot, **common: Any) -> ChenyuRunTrigger:
        from dify_provider.triggers.chenyu import ChenyuRunTrigger

        return ChenyuRunTrigger(run_id, self.chenyu_conn_id, **common)
