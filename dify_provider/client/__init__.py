"""Framework-free client for the Dify service API.

Nothing below this package imports Airflow, so a Prefect or Dagster integration can reuse it::

    from dify_provider.client import ClientConfig, DifyClient

    with DifyClient(ClientConfig(api_key="app-...", base_url="https://api.dify.ai/v1")) as dify:
        for event in dify.run_workflow({"text": "hi"}, "me", response_mode="streaming"):
            print(event.event)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Lazy: a DAG file imports the operators at every parse, and they need only the errors, the
# statuses and the argument checks from here; the HTTP clients and the response models load on
# first use (``bench/``, DAG-parse overhead). The names are the same either way.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "dify_provider.client._core": (
        "DEFAULT_BASE_URL", "ClientConfig", "RetryPolicy", "normalize_base_url",
    ),
    "dify_provider.client.async_": (
        "AsyncDifyClient", "AsyncWorkflowStream",
    ),
    "dify_provider.client.chat.events": (
        "AgentMessageEvent", "AgentThoughtEvent", "MessageEndEvent", "MessageEvent", "MessageFileEvent",
        "MessageReplaceEvent", "TtsMessageEndEvent", "TtsMessageEvent", "parse_chat_event",
    ),
    "dify_provider.client.chat.models": (
        "AgentThought", "AppMeta", "ChatMetadata", "ChatResponse", "ChatUsage", "CompletionResponse",
        "Conversation", "ConversationPage", "Message", "MessageFile", "MessagePage", "RetrieverResource",
        "SiteInfo",
    ),
    "dify_provider.client.chat.stream": (
        "AsyncChatStream", "ChatStream", "ChatStreamState",
    ),
    "dify_provider.client.errors": (
        "DifyAPIError", "DifyAuthError", "DifyConfigError", "DifyConnectionError", "DifyConversationCompletedError",
        "DifyError", "DifyFormClosedError", "DifyInvalidInputError", "DifyModelProviderError", "DifyNotChatAppError",
        "DifyNotFoundError", "DifyNotWorkflowAppError", "DifyProviderQuotaExceededError", "DifyQuotaExceededError",
        "DifyRateLimitError",
        "DifyResponseError", "DifyRunError", "DifyServerError", "DifyStreamEndedError", "DifyStreamError",
        "DifyStreamTimeoutError", "DifyTimeoutError", "DifyTransportError",
    ),
    "dify_provider.client.human_input.models": (
        "FormAction", "FormInput", "HumanInputForm", "PendingForm",
    ),
    "dify_provider.client.models": (
        "AppInfo", "AppParameters", "BlockingRunResponse", "ServerInfo", "StopResult", "StreamEvent",
        "WorkflowFinishedEvent", "WorkflowLogPage", "WorkflowPausedEvent", "WorkflowRun", "WorkflowRunResult",
        "WorkflowStartedEvent",
    ),
    "dify_provider.client.status": (
        "TERMINAL_STATUSES", "Decision", "Reason", "Verdict", "WaitPolicy", "WorkflowRunStatus", "judge",
    ),
    "dify_provider.client.sync": (
        "DifyClient", "WorkflowStream",
    ),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


# For type checkers and editors (``X as X`` marks a re-export); at run time ``__getattr__`` imports.
if TYPE_CHECKING:
    from dify_provider.client._core import (
        DEFAULT_BASE_URL as DEFAULT_BASE_URL,
    )
    from dify_provider.client._core import (
        ClientConfig as ClientConfig,
    )
    from dify_provider.client._core import (
        RetryPolicy as RetryPolicy,
    )
    from dify_provider.client._core import (
        normalize_base_url as normalize_base_url,
    )
    from dify_provider.client.async_ import (
        AsyncDifyClient as AsyncDifyClient,
    )
    from dify_provider.client.async_ import (
        AsyncWorkflowStream as AsyncWorkflowStream,
    )
    from dify_provider.client.chat.events import (
        AgentMessageEvent as AgentMessageEvent,
    )
    from dify_provider.client.chat.events import (
        AgentThoughtEvent as AgentThoughtEvent,
    )
    from dify_provider.client.chat.events import (
        MessageEndEvent as MessageEndEvent,
    )
    from dify_provider.client.chat.events import (
        MessageEvent as MessageEvent,
    )
    from dify_provider.client.chat.events import (
        MessageFileEvent as MessageFileEvent,
    )
    from dify_provider.client.chat.events import (
        MessageReplaceEvent as MessageReplaceEvent,
    )
    from dify_provider.client.chat.events import (
        TtsMessageEndEvent as TtsMessageEndEvent,
    )
    from dify_provider.client.chat.events import (
        TtsMessageEvent as TtsMessageEvent,
    )
    from dify_provider.client.chat.events import (
        parse_chat_event as parse_chat_event,
    )
    from dify_provider.client.chat.models import (
        AgentThought as AgentThought,
    )
    from dify_provider.client.chat.models import (
        AppMeta as AppMeta,
    )
    from dify_provider.client.chat.models import (
        ChatMetadata as ChatMetadata,
    )
    from dify_provider.client.chat.models import (
        ChatResponse as ChatResponse,
    )
    from dify_provider.client.chat.models import (
        ChatUsage as ChatUsage,
    )
    from dify_provider.client.chat.models import (
        CompletionResponse as CompletionResponse,
    )
    from dify_provider.client.chat.models import (
        Conversation as Conversation,
    )
    from dify_provider.client.chat.models import (
        ConversationPage as ConversationPage,
    )
    from dify_provider.client.chat.models import (
        Message as Message,
    )
    from dify_provider.client.chat.models import (
        MessageFile as MessageFile,
    )
    from dify_provider.client.chat.models import (
        MessagePage as MessagePage,
    )
    from dify_provider.client.chat.models import (
        RetrieverResource as RetrieverResource,
    )
    from dify_provider.client.chat.models import (
        SiteInfo as SiteInfo,
    )
    from dify_provider.client.chat.stream import (
        AsyncChatStream as AsyncChatStream,
    )
    from dify_provider.client.chat.stream import (
        ChatStream as ChatStream,
    )
    from dify_provider.client.chat.stream import (
        ChatStreamState as ChatStreamState,
    )
    from dify_provider.client.errors import (
        DifyAPIError as DifyAPIError,
    )
    from dify_provider.client.errors import (
        DifyAuthError as DifyAuthError,
    )
    from dify_provider.client.errors import (
        DifyConfigError as DifyConfigError,
    )
    from dify_provider.client.errors import (
        DifyConnectionError as DifyConnectionError,
    )
    from dify_provider.client.errors import (
        DifyConversationCompletedError as DifyConversationCompletedError,
    )
    from dify_provider.client.errors import (
        DifyError as DifyError,
    )
    from dify_provider.client.errors import (
        DifyFormClosedError as DifyFormClosedError,
    )
    from dify_provider.client.errors import (
        DifyInvalidInputError as DifyInvalidInputError,
    )
    from dify_provider.client.errors import (
        DifyModelProviderError as DifyModelProviderError,
    )
    from dify_provider.client.errors import (
        DifyNotChatAppError as DifyNotChatAppError,
    )
    from dify_provider.client.errors import (
        DifyNotFoundError as DifyNotFoundError,
    )
    from dify_provider.client.errors import (
        DifyNotWorkflowAppError as DifyNotWorkflowAppError,
    )
    from dify_provider.client.errors import (
        DifyProviderQuotaExceededError as DifyProviderQuotaExceededError,
    )
    from dify_provider.client.errors import (
        DifyQuotaExceededError as DifyQuotaExceededError,
    )
    from dify_provider.client.errors import (
        DifyRateLimitError as DifyRateLimitError,
    )
    from dify_provider.client.errors import (
        DifyResponseError as DifyResponseError,
    )
    from dify_provider.client.errors import (
        DifyRunError as DifyRunError,
    )
    from dify_provider.client.errors import (
        DifyServerError as DifyServerError,
    )
    from dify_provider.client.errors import (
        DifyStreamEndedError as DifyStreamEndedError,
    )
    from dify_provider.client.errors import (
        DifyStreamError as DifyStreamError,
    )
    from dify_provider.client.errors import (
        DifyStreamTimeoutError as DifyStreamTimeoutError,
    )
    from dify_provider.client.errors import (
        DifyTimeoutError as DifyTimeoutError,
    )
    from dify_provider.client.errors import (
        DifyTransportError as DifyTransportError,
    )
    from dify_provider.client.human_input.models import (
        FormAction as FormAction,
    )
    from dify_provider.client.human_input.models import (
        FormInput as FormInput,
    )
    from dify_provider.client.human_input.models import (
        HumanInputForm as HumanInputForm,
    )
    from dify_provider.client.human_input.models import (
        PendingForm as PendingForm,
    )
    from dify_provider.client.models import (
        AppInfo as AppInfo,
    )
    from dify_provider.client.models import (
        AppParameters as AppParameters,
    )
    from dify_provider.client.models import (
        BlockingRunResponse as BlockingRunResponse,
    )
    from dify_provider.client.models import (
        ServerInfo as ServerInfo,
    )
    from dify_provider.client.models import (
        StopResult as StopResult,
    )
    from dify_provider.client.models import (
        StreamEvent as StreamEvent,
    )
    from dify_provider.client.models import (
        WorkflowFinishedEvent as WorkflowFinishedEvent,
    )
    from dify_provider.client.models import (
        WorkflowLogPage as WorkflowLogPage,
    )
    from dify_provider.client.models import (
        WorkflowPausedEvent as WorkflowPausedEvent,
    )
    from dify_provider.client.models import (
        WorkflowRun as WorkflowRun,
    )
    from dify_provider.client.models import (
        WorkflowRunResult as WorkflowRunResult,
    )
    from dify_provider.client.models import (
        WorkflowStartedEvent as WorkflowStartedEvent,
    )
    from dify_provider.client.status import (
        TERMINAL_STATUSES as TERMINAL_STATUSES,
    )
    from dify_provider.client.status import (
        Decision as Decision,
    )
    from dify_provider.client.status import (
        Reason as Reason,
    )
    from dify_provider.client.status import (
        Verdict as Verdict,
    )
    from dify_provider.client.status import (
        WaitPolicy as WaitPolicy,
    )
    from dify_provider.client.status import (
        WorkflowRunStatus as WorkflowRunStatus,
    )
    from dify_provider.client.status import (
        judge as judge,
    )
    from dify_provider.client.sync import (
        DifyClient as DifyClient,
    )
    from dify_provider.client.sync import (
        WorkflowStream as WorkflowStream,
    )
