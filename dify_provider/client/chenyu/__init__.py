"""Framework-free client for Chenyu's workflow-progress API (no Airflow import).

Chenyu documents one open endpoint for a run started elsewhere (a "run order"): its progress.
Everything else (pooling, retries, error classes by meaning, the waiting snapshot) is the same
machinery the Dify client uses::

    from dify_provider.client.chenyu import ChenyuClient, ChenyuConfig

    with ChenyuClient(ChenyuConfig(api_key="...")) as chenyu:
        print(chenyu.get_run_progress("wfrun_314ff7d8b7a5beff1388").status)
"""

from dify_provider.client.chenyu._api import DEFAULT_BASE_URL, ChenyuConfig, check_run_order_id
from dify_provider.client.chenyu.client import AsyncChenyuClient, ChenyuClient
from dify_provider.client.chenyu.errors import (
    TASK_NOT_FOUND,
    ChenyuAPIError,
    ChenyuAuthError,
    ChenyuInvalidInputError,
    ChenyuNotFoundError,
    ChenyuRateLimitError,
    ChenyuServerError,
)
from dify_provider.client.chenyu.models import (
    ChenyuEnvelope,
    ChenyuErrorDetail,
    EngineSnapshot,
    QueueInfo,
    RunLogEntry,
    RunProgress,
)
from dify_provider.client.chenyu.status import TERMINAL_STATUSES, ChenyuRunStatus, judge
from dify_provider.client.chenyu.waiting import CHENYU_RUN, snapshot_of_chenyu_error, snapshot_of_progress

__all__ = [
    "CHENYU_RUN",
    "DEFAULT_BASE_URL",
    "TASK_NOT_FOUND",
    "TERMINAL_STATUSES",
    "AsyncChenyuClient",
    "ChenyuAPIError",
    "ChenyuAuthError",
    "ChenyuClient",
    "ChenyuConfig",
    "ChenyuEnvelope",
    "ChenyuErrorDetail",
    "ChenyuInvalidInputError",
    "ChenyuNotFoundError",
    "ChenyuRateLimitError",
    "ChenyuRunStatus",
    "ChenyuServerError",
    "EngineSnapshot",
    "QueueInfo",
    "RunLogEntry",
    "RunProgress",
    "check_run_order_id",
    "judge",
    "snapshot_of_chenyu_error",
    "snapshot_of_progress",
]
