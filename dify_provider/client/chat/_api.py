"""The chat-family endpoints as :class:`~dify_provider.client._core.Call` specs, validated before
anything is sent. The sync and async mixins both call these builders.

What Dify 1.13 expects, read in its source (``api/controllers/service_api/app/completion.py``,
``message.py``, ``conversation.py``):

- ``POST /chat-messages`` takes ``query`` (required; chat, agent-chat and advanced-chat refuse an
  empty one), ``inputs``, ``user``, ``response_mode``, ``conversation_id`` (blank = a new
  conversation, else a UUID), ``files``, ``auto_generate_name``, ``workflow_id`` (chatflow only).
  Agent-chat apps refuse blocking mode (400 ``invalid_param``).
- ``POST /completion-messages`` has a top-level ``query`` too (default ``""``), but what a
  completion app's prompt reads is its input variables: the default template's prompt is
  ``{{query}}`` over a required *input* named ``query``; Dify's docs and its own SDKs send the
  text as ``inputs.query``; a top-level ``query`` would instead become an extra user turn (chat
  models) or a ``{{#query#}}`` suffix. So :func:`completion_message` puts ``query`` in ``inputs``.
- ``GET /messages`` and ``GET /conversations`` read ``user`` from the query string and serve
  the shared ``DEFAULT-USER`` without one: the user is always sent.
"""

from __future__ import annotations

from typing import Any

from dify_provider.client import errors as e
from dify_provider.client._checks import check_files, check_inputs, check_response_mode, check_user, check_uuid
from dify_provider.client._core import Call, ClientConfig, Retry, parser
from dify_provider.client.chat._checks import (
    check_flag,
    check_limit,
    check_optional_uuid,
    check_query,
    check_sort_by,
)
from dify_provider.client.chat.models import (
    AppMeta,
    ChatResponse,
    CompletionResponse,
    ConversationPage,
    MessagePage,
    SiteInfo,
)
from dify_provider.client.models import StopResult


def chat_message(config: ClientConfig, query: Any, inputs: Any, user: str | None, response_mode: Any, *,
                 conversation_id: Any, files: Any, auto_generate_name: Any, workflow_id: Any) -> Call[ChatResponse]:
    mode = check_response_mode(response_mode)
    body: dict[str, Any] = {
        "query": check_query(query),
        "inputs": check_inputs(inputs),
        "user": check_user(user, config.user),
        "response_mode": mode,
        "auto_generate_name": check_flag("auto_generate_name", auto_generate_name),
    }
    conversation = check_optional_uuid("conversation_id", conversation_id)
    if conversation is not None:
        body["conversation_id"] = conversation
    checked_files = check_files(files)
    if checked_files is not None:
        body["files"] = checked_files
    workflow = check_optional_uuid("workflow_id", workflow_id)
    if workflow is not None:
        body["workflow_id"] = workflow
    # Retry.START: Dify has no idempotency key here either; a re-sent message is a second paid answer.
    return Call("POST", "/chat-messages", parser(ChatResponse), retry=Retry.START, json=body)


def completion_message(config: ClientConfig, inputs: Any, user: str | None, response_mode: Any, *,
                       query: Any, files: Any) -> Call[CompletionResponse]:
    mode = check_response_mode(response_mode)
    checked_inputs = check_inputs(inputs)
    if query is not None:
        text = check_query(query)
        if checked_inputs.get("query", text) != text:
            raise e.DifyConfigError("query", "differs from inputs['query']; a completion app reads the text from "
                                             "inputs['query'], so give it once")
        checked_inputs["query"] = text
    body: dict[str, Any] = {"inputs": checked_inputs, "user": check_user(user, config.user), "response_mode": mode}
    checked_files = check_files(files)
    if checked_files is not None:
        body["files"] = checked_files
    return Call("POST", "/completion-messages", parser(CompletionResponse), retry=Retry.START, json=body)


def stop_chat_message(config: ClientConfig, task_id: str, user: str | None) -> Call[StopResult]:
    # Dify answers success either way, but stops a chat or agent-chat task only for the ``user`` who
    # started it (AppQueueManager.set_stop_flag); a chatflow's it stops for anyone (GraphEngine command).
    return Call("POST", f"/chat-messages/{check_uuid('task_id', task_id)}/stop", parser(StopResult),
                json={"user": check_user(user, config.user)})


def stop_completion_message(config: ClientConfig, task_id: str, user: str | None) -> Call[StopResult]:
    return Call("POST", f"/completion-messages/{check_uuid('task_id', task_id)}/stop", parser(StopResult),
                json={"user": check_user(user, config.user)})


def list_messages(config: ClientConfig, conversation_id: str, user: str | None, *, first_id: str | None,
                  limit: int) -> Call[MessagePage]:
    params: dict[str, Any] = {
        "conversation_id": check_uuid("conversation_id", conversation_id),
        "user": check_user(user, config.user),
        "limit": check_limit(limit),
    }
    first = check_optional_uuid("first_id", first_id)
    if first is not None:
        params["first_id"] = first
    return Call("GET", "/messages", parser(MessagePage), params=params)


def list_conversations(config: ClientConfig, user: str | None, *, last_id: str | None, limit: int,
                       sort_by: str) -> Call[ConversationPage]:
    params: dict[str, Any] = {
        "user": check_user(user, config.user),
        "limit": check_limit(limit),
        "sort_by": check_sort_by(sort_by),
    }
    last = check_optional_uuid("last_id", last_id)
    if last is not None:
        params["last_id"] = last
    return Call("GET", "/conversations", parser(ConversationPage), params=params)


def get_site() -> Call[SiteInfo]:
    return Call("GET", "/site", parser(SiteInfo))


def get_meta() -> Call[AppMeta]:
    return Call("GET", "/meta", parser(AppMeta))
