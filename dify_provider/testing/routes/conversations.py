"""Conversation history of the chat apps: ``GET /messages`` and ``GET /conversations``.

As Dify 1.13.2 pages them (``MessageService.pagination_by_first_id``,
``ConversationService.pagination_by_last_id``): ``user`` is optional here (missing, it is Dify's
``DEFAULT-USER``, who owns nothing, so ``/messages`` answers 404); a conversation is visible to its
own app and user only. ``/messages`` pages backwards from ``first_id`` (the ``limit`` newest
messages older than it, oldest first on the page; ``has_more``: older ones remain) and answers an
empty ``conversation_id`` with an empty page; ``/conversations`` pages forwards from ``last_id``
in ``sort_by`` order (default ``-updated_at``; ``has_more``: a full page with more after it).
Items are what Dify has saved (:func:`~dify_provider.testing.chat_payloads.message_item`).
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from dify_provider.testing.chat_payloads import conversation_item, message_item
from dify_provider.testing.chat_state import CONVERSATION_NOT_EXISTS
from dify_provider.testing.chats import Conversation
from dify_provider.testing.errors import DifyError
from dify_provider.testing.routes._core import Ctx, require_chat_mode, route
from dify_provider.testing.state import EmulatorState
from dify_provider.testing.validation import DEFAULT_USER, ConversationListQuery, MessageListQuery, parse


async def list_messages(ctx: Ctx) -> Response:
    params = ctx.request.query_params
    user = params.get("user") or DEFAULT_USER
    require_chat_mode(ctx.app)
    query = parse(MessageListQuery, dict(params))
    if not query.conversation_id:
        return JSONResponse({"limit": query.limit, "has_more": False, "data": []})
    with ctx.state.cond:
        conversation = ctx.state.chats.conversation(ctx.app, user, query.conversation_id)
        if conversation is None:
            raise DifyError.http(404, CONVERSATION_NOT_EXISTS)
        older = list(conversation.messages)
        if query.first_id:
            first = next((m for m in older if m.id == query.first_id), None)
            if first is None:
                raise DifyError.http(404, "First Message Not Exists.")
            older = [m for m in older if m.seq < first.seq]
        newest = older[::-1][: query.limit + 1]
        page = newest[: query.limit]
        data = [message_item(m) for m in reversed(page)]
    return JSONResponse({"limit": query.limit, "has_more": len(newest) > query.limit, "data": data})


async def list_conversations(ctx: Ctx) -> Response:
    params = ctx.request.query_params
    user = params.get("user") or DEFAULT_USER
    require_chat_mode(ctx.app)
    query = parse(ConversationListQuery, dict(params))
    field = query.sort_by.lstrip("-")
    descending = query.sort_by.startswith("-")

    def key(conversation: Conversation) -> tuple[float, int]:  # timestamps; ties in creation/update order
        if field == "created_at":
            return conversation.created_at, conversation.seq
        return conversation.updated_at, conversation.touched

    with ctx.state.cond:
        mine = ctx.state.chats.conversations_of(ctx.app, user)
        ordered = sorted(mine, key=key, reverse=descending)
        if query.last_id:
            last = next((c for c in mine if c.id == query.last_id), None)
            if last is None:
                raise DifyError.http(404, "Last Conversation Not Exists.")
            ordered = [c for c in ordered if (key(c) < key(last)) == descending and c is not last]
        page = ordered[: query.limit]
        data = [conversation_item(c) for c in page]
    has_more = len(page) == query.limit and len(ordered) > query.limit
    return JSONResponse({"limit": query.limit, "has_more": has_more, "data": data})


def routes(state: EmulatorState) -> list[BaseRoute]:
    return [
        route(state, "GET", "/messages", list_messages),
        route(state, "GET", "/conversations", list_conversations),
    ]
