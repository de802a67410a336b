"""Chat messages: ``POST /chat-messages`` (``chat``, ``agent-chat``, ``advanced-chat`` apps) and
``POST /completion-messages`` (``completion`` apps), blocking or streaming, and their stops
``POST /chat-messages/{task_id}/stop`` and ``POST /completion-messages/{task_id}/stop``.

Checks in Dify's order (``controllers/service_api/app/completion.py`` and the app generators):
``user`` (from the JSON body), the app's mode (a workflow key: 400 ``not_chat_app``; a
non-completion key on the completion endpoints: 400 ``app_unavailable``), the payload (pydantic's
words, ``conversation_id`` must be a UUID), a chatflow's pinned ``workflow_id``, then the
generator's: an agent refuses blocking mode, an empty query, an unknown conversation (404
"Conversation Not Exists."), the inputs. A chatflow's streaming request is generated in the
Celery worker on 1.13.2, so the generator's errors there answer as a workflow's invalid inputs do
(``streaming_input_errors``: HTTP 200, a ping, silence). A blocking chatflow whose run pauses on a
form answers 400 ``invalid_param`` on 1.13.x (the run still pauses); from 1.14 the message so far.

A chatflow's stream is its run's (a ping as it opens, ``workflow_started``... ``message_end``,
``workflow_finished``); the other modes' stream from Dify's API process: no ping at open, one per
``ping_interval`` while generating, ending with ``message_end`` (or ``error``). Stops answer
``{"result": "success"}`` whatever they did (:meth:`ChatEngine.stop_task` says what that is).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from dify_provider.testing import chat_payloads
from dify_provider.testing.chats import ChatMessage
from dify_provider.testing.errors import DifyError, app_unavailable, invalid_param
from dify_provider.testing.models import Fault
from dify_provider.testing.routes._core import Ctx, faults_after_start, require_chat_mode, route, stream_timing
from dify_provider.testing.routes.workflows import RUN_JSON, check_workflow_id, input_error_stream
from dify_provider.testing.runs import Item
from dify_provider.testing.sse import MESSAGE_TERMINAL, EventStream, Outcome
from dify_provider.testing.state import EmulatorState
from dify_provider.testing.validation import (
    ChatRequestPayload,
    CompletionRequestPayload,
    json_body,
    parse,
    required_user,
)

#: What a blocking chatflow call answers when its run pauses on 1.13.x (``_to_blocking_response``).
PAUSED_BLOCKING_CHAT = "queue listening stopped unexpectedly."


async def chat_messages(ctx: Ctx) -> Response:
    body = await json_body(ctx.request)
    user = required_user(body.get("user"))
    require_chat_mode(ctx.app)
    payload = parse(ChatRequestPayload, body)
    if ctx.app.mode == "advanced-chat" and payload.workflow_id:
        check_workflow_id(ctx.app, payload.workflow_id)
    streaming = payload.response_mode == "streaming"
    return await _send(ctx, user, payload.query, payload.inputs, payload.files, payload.conversation_id, streaming)


async def completion_messages(ctx: Ctx) -> Response:
    body = await json_body(ctx.request)
    user = required_user(body.get("user"))
    if ctx.app.mode != "completion":
        raise app_unavailable()
    payload = parse(CompletionRequestPayload, body)
    streaming = payload.response_mode == "streaming"
    return await _send(ctx, user, payload.query, payload.inputs, payload.files, None, streaming)


async def _send(
    ctx: Ctx,
    user: str,
    query: str,
    inputs: dict[str, Any],
    files: list[Any] | None,
    conversation_id: str | None,
    streaming: bool,
) -> Response:
    state, app, engine = ctx.state, ctx.app, ctx.state.chat
    try:
        conversation, inputs = engine.check(
            app, user, query=query, inputs=inputs, conversation_id=conversation_id, streaming=streaming
        )
    except DifyError as exc:
        mode = state.config.streaming_input_errors
        if app.mode != "advanced-chat" or not streaming or mode == "http":
            raise
        return input_error_stream(state, exc, mode == "event")  # raised in the Celery worker on 1.13.2
    message = engine.start(
        app, user, query=query, inputs=inputs, files=files or [], conversation=conversation, streaming=streaming
    )
    queue = engine.subscribe(message)
    engine.launch(message)

    def closed(outcome: Outcome) -> None:
        engine.unsubscribe(message, queue)
        if streaming and outcome != "complete":
            engine.client_gone(message)

    early = await faults_after_start(ctx, streaming, closed)
    if isinstance(early, Response):
        return early
    if streaming:

        def failed_in_stream(fault: Fault) -> dict[str, Any]:
            text = fault.message or "Internal Server Error, please contact support."
            return engine.fail(message, text, status=fault.status, code=fault.code or "internal_server_error")

        return _stream(state, message, queue, early, closed, failed_in_stream)
    try:
        while True:
            item = await queue.get()
            if item is None:
                break  # reset
            if item["event"] == "message_end":
                break
            if item["event"] == "workflow_paused" and state.config.pauses_as_113:
                # 1.13.x: the blocking pipeline ends without a message_end, so it raises (recordings
                # hitl/A3, A9); the run stays paused and its message shows the form.
                raise invalid_param(PAUSED_BLOCKING_CHAT)
            if item["event"] == "error":  # the pipeline raises it (a chatflow: "Run failed: ...")
                raise DifyError(item["status"], item["code"], item["message"])
    finally:
        engine.unsubscribe(message, queue)
    return JSONResponse(chat_payloads.blocking_body(message), media_type=RUN_JSON)


def _stream(
    state: EmulatorState,
    message: ChatMessage,
    queue: asyncio.Queue[Item],
    fault: Fault | None,
    closed: Callable[[Outcome], None],
    on_error: Callable[[Fault], dict[str, Any]],
) -> EventStream:
    run = message.run
    if run is not None:
        timing = stream_timing(state, lambda: run.executing)
        return EventStream(queue, **timing, fault=fault, on_close=closed, on_error=on_error)
    # In the API process: the queue manager's listen() pings every ping_interval, none at open.
    config = state.config
    return EventStream(queue, ping_interval=config.ping_interval, ping_at_open=False,
                       executing=lambda: message.running, idle_timeout=config.stream_idle_timeout,
                       fault=fault, on_close=closed, on_error=on_error, terminal=MESSAGE_TERMINAL)


async def stop_chat_message(ctx: Ctx) -> Response:
    body = await json_body(ctx.request)
    user = required_user(body.get("user"))
    require_chat_mode(ctx.app)
    ctx.state.chat.stop_task(ctx.app, user, ctx.request.path_params["task_id"])
    return JSONResponse({"result": "success"})


async def stop_completion_message(ctx: Ctx) -> Response:
    body = await json_body(ctx.request)
    user = required_user(body.get("user"))
    if ctx.app.mode != "completion":
        raise app_unavailable()
    ctx.state.chat.stop_task(ctx.app, user, ctx.request.path_params["task_id"])
    return JSONResponse({"result": "success"})


def routes(state: EmulatorState) -> list[BaseRoute]:
    return [
        route(state, "POST", "/chat-messages", chat_messages),
        route(state, "POST", "/chat-messages/{task_id}/stop", stop_chat_message),
        route(state, "POST", "/completion-messages", completion_messages),
        route(state, "POST", "/completion-messages/{task_id}/stop", stop_completion_message),
    ]
