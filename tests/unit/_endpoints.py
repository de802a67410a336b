"""Every client method as (method name, HTTP method, URL, args, kwargs), for table-driven tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ._chat_bodies import CONVERSATION_ID
from ._harness import BASE, RUN_ID, TASK_ID, WORKFLOW_UUID, url


@dataclass(frozen=True)
class Endpoint:
    method: str
    http: str
    url: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Retry.SAFE (True) or Retry.START (False).
    safe: bool = True
    #: Retry.ONCE: a probe, never retried.
    once: bool = False


ENDPOINTS = [
    Endpoint("get_info", "GET", url("/info")),
    Endpoint("get_parameters", "GET", url("/parameters")),
    Endpoint("get_workflow_run", "GET", url(f"/workflows/run/{RUN_ID}"), (RUN_ID,)),
    Endpoint("list_workflow_logs", "GET", url("/workflows/logs"), kwargs={"status": "failed"}),
    Endpoint("get_server_version", "GET", BASE + "/", once=True),
    Endpoint("stop_workflow_task", "POST", url(f"/workflows/tasks/{TASK_ID}/stop"), (TASK_ID,)),
    Endpoint("run_workflow", "POST", url("/workflows/run"), ({"query": "hello"},), safe=False),
    Endpoint("run_workflow", "POST", url(f"/workflows/{WORKFLOW_UUID}/run"), ({"query": "hello"},),
             {"workflow_id": WORKFLOW_UUID}, safe=False),
    Endpoint("upload_file", "POST", url("/files/upload"), (b"%PDF-1.4 tiny",), {"filename": "report.pdf"},
             safe=False),
    # the chat family (dify_provider.client.chat)
    Endpoint("chat_message", "POST", url("/chat-messages"), ("hello",), safe=False),
    Endpoint("completion_message", "POST", url("/completion-messages"), ({"query": "hello"},), safe=False),
    Endpoint("stop_chat_message", "POST", url(f"/chat-messages/{TASK_ID}/stop"), (TASK_ID,)),
    Endpoint("stop_completion_message", "POST", url(f"/completion-messages/{TASK_ID}/stop"), (TASK_ID,)),
    Endpoint("list_messages", "GET", url("/messages"), (CONVERSATION_ID,)),
    Endpoint("list_conversations", "GET", url("/conversations")),
    Endpoint("get_site", "GET", url("/site")),
    Endpoint("get_meta", "GET", url("/meta")),
]


def endpoint_params(endpoints: list[Endpoint]) -> list[Any]:
    return [pytest.param(ep, id=f"{ep.method}:{ep.url.removeprefix(BASE) or '/'}") for ep in endpoints]


SAFE_ENDPOINTS = [ep for ep in ENDPOINTS if ep.safe and not ep.once]
START_ENDPOINTS = [ep for ep in ENDPOINTS if not ep.safe]
ONCE_ENDPOINTS = [ep for ep in ENDPOINTS if ep.once]
