"""``ChenyuClient`` / ``AsyncChenyuClient``: read a Chenyu run's progress (no Airflow import).

Both are thin: pooling, timeouts, TLS, proxies and the retry policy (reads retried on transport
errors, 429 with ``Retry-After``, 502/503/504) come from the shared base clients, the endpoint
and the envelope rules from :mod:`._api`. Use as context managers::

    from dify_provider.client.chenyu import ChenyuClient, ChenyuConfig

    with ChenyuClient(ChenyuConfig(api_key="...")) as chenyu:
        progress = chenyu.get_run_progress("wfrun_314ff7d8b7a5beff1388")
        print(progress.status, progress.progress_percent)
"""

from __future__ import annotations

import httpx

from dify_provider.client._transport import AsyncServiceClient, SyncServiceClient
from dify_provider.client.chenyu import _api
from dify_provider.client.chenyu._api import ChenyuConfig
from dify_provider.client.chenyu.models import RunProgress


class ChenyuClient(SyncServiceClient[ChenyuConfig]):
    """Blocking client for workers (poke-mode sensors) and scripts."""

    service = "Chenyu"

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        _api.raise_for_status(response, path)

    def get_run_progress(self, run_order_id: str) -> RunProgress:
        """``GET /api/open/v2/workflow/run/execution?run_order_id=...``: status, queue, percent,
        logs, costs, outputs. A ``code != 0`` answer raises (``TASK_NOT_FOUND``:
        :class:`~dify_provider.client.chenyu.errors.ChenyuNotFoundError`)."""
        return self._call(_api.get_run_progress(run_order_id))


class AsyncChenyuClient(AsyncServiceClient[ChenyuConfig]):
    """Non-blocking twin of :class:`ChenyuClient`, for triggers."""

    service = "Chenyu"

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        _api.raise_for_status(response, path)

    async def get_run_progress(self, run_order_id: str) -> RunProgress:
        return await self._call(_api.get_run_progress(run_order_id))
