"""Framework-free client for the Dify service API.

Nothing below this package imports Airflow, so a Prefect or Dagster integration can reuse it::

    from dify_provider.client import ClientConfig, DifyClient

    with DifyClient(ClientConfig(api_key="app-...", base_url="https://api.dify.ai/v1")) as dify:
        for event in dify.run_workflow({"text": "hi"}, "me", response_mode="streaming"):
            print(event.event)
"""

from dify_provider.client._core import DEFAULT_BASE_URL, ClientConfig, RetryPolicy, normalize_base_url
from dify_provider.client.async_ import AsyncDifyClient, AsyncWorkflowStream
from dify_provider.client.errors import (
    DifyAPIError,
    DifyAuthError,
    DifyConfigError,
    DifyConnectionError,
    DifyError,
    DifyInvalidInputError,
    DifyNotFoundError,
    DifyNotWorkflowAppError,
    DifyQuotaExceededError,
    DifyRateLimitError,
    DifyResponseError,
    DifyRunError,
    DifyServerError,
    DifyStreamError,
    DifyStreamTimeoutError,
    DifyTimeoutError,
    DifyTransportError,
)
from dify_provider.client.models import (
    AppInfo,
    AppParameters,
    BlockingRunResponse,
    ServerInfo,
    StreamEvent,
    WorkflowFinishedEvent,
    WorkflowLogPage,
    WorkflowPausedEvent,
    WorkflowRun,
    WorkflowRunResult,
    WorkflowStartedEvent,
)
from dify_provider.client.status import (
    TERMINAL_STATUSES,
    Decision,
    Reason,
    Verdict,
    WaitPolicy,
    WorkflowRunStatus,
    judge,
)
from dify_provider.client.sync import DifyClient, WorkflowStream

__all__ = [
    "DEFAULT_BASE_URL",
    "TERMINAL_STATUSES",
    "AppInfo",
    "AppParameters",
    "AsyncDifyClient",
    "AsyncWorkflowStream",
    "BlockingRunResponse",
    "ClientConfig",
    "Decision",
    "DifyAPIError",
    "DifyAuthError",
    "DifyClient",
    "DifyConfigError",
    "DifyConnectionError",
    "DifyError",
    "DifyInvalidInputError",
    "DifyNotFoundError",
    "DifyNotWorkflowAppError",
    "DifyQuotaExceededError",
    "DifyRateLimitError",
    "DifyResponseError",
    "DifyRunError",
    "DifyServerError",
    "DifyStreamError",
    "DifyStreamTimeoutError",
    "DifyTimeoutError",
    "DifyTransportError",
    "Reason",
    "RetryPolicy",
    "ServerInfo",
    "StreamEvent",
    "Verdict",
    "WaitPolicy",
    "WorkflowFinishedEvent",
    "WorkflowLogPage",
    "WorkflowPausedEvent",
    "WorkflowRun",
    "WorkflowRunResult",
    "WorkflowRunStatus",
    "WorkflowStartedEvent",
    "WorkflowStream",
    "judge",
    "normalize_base_url",
]
