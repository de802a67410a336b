"""``ChenyuRunTrigger``: waits for a Chenyu run order inside the triggerer.

The poll loop, deadlines, backoff, last check at the deadline and progress logging are the
generic :class:`~dify_provider.triggers.base.RunPollingTrigger`'s; this class only says how to
read one Chenyu progress answer.
"""

from __future__ import annotations

from typing import Any

from dify_provider.client.chenyu import CHENYU_RUN, check_run_order_id, snapshot_of_chenyu_error, snapshot_of_progress
from dify_provider.client.errors import DifyError
from dify_provider.client.waiting import Snapshot
from dify_provider.hooks.chenyu import ChenyuHook, SharedChenyuClients
from dify_provider.triggers.base import RunPollingTrigger


class ChenyuRunTrigger(RunPollingTrigger):
    """Polls ``GET /api/open/v2/workflow/run/execution?run_order_id=...`` through the
    triggerer-wide shared client.

    Serialised state: the run order id, the connection id, poll settings and absolute
    deadlines. Never the API key. Chenyu documents no cancel endpoint, so ``stop_on_kill`` is
    refused: killing the task stops the wait, not the run.
    """

    run_kind = CHENYU_RUN

    def __init__(self, run_order_id: str, chenyu_conn_id: str = ChenyuHook.default_conn_name,
                 **kwargs: Any) -> None:
        run_order_id = check_run_order_id(run_order_id)
        super().__init__(run_id=run_order_id, conn_id=chenyu_conn_id, **kwargs)
        self.run_order_id = run_order_id
        self.chenyu_conn_id = chenyu_conn_id

    def own_kwargs(self) -> dict[str, Any]:
        return {"run_order_id": self.run_order_id, "chenyu_conn_id": self.chenyu_conn_id}

    async def poll(self) -> Snapshot:
        try:
            client = await SharedChenyuClients.get(self.chenyu_conn_id)
            progress = await client.get_run_progress(self.run_order_id)
        except DifyError as exc:
            return snapshot_of_chenyu_error(self.run_order_id, exc)
        return snapshot_of_progress(progress, self.run_order_id)
