"""The chat-family methods of :class:`~dify_provider.client.async_.AsyncDifyClient`: the same as
:class:`~dify_provider.client.chat.sync.ChatMethods`, awaited."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias, overload

from dify_provider.client._core import ClientConfig
from dify_provider.client.chat import _api
from dify_provider.client.chat.models import (
    AppMeta,
    ChatResponse,
    CompletionResponse,
    ConversationPage,
    MessagePage,
    SiteInfo,
)
from dify_provider.client.chat.stream import AsyncChatStream
from dify_provider.client.models import StopResult

if TYPE_CHECKING:
    from dify_provider.client._transport import AsyncServiceClient

    _Client: TypeAlias = AsyncServiceClient[ClientConfig]
else:
    _Client = object


class AsyncChatMethods(_Client):
    """See :class:`~dify_provider.client.chat.sync.ChatMethods`."""

    @overload
    async def chat_message(self, query: str, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                           response_mode: Literal["blocking"] = "blocking", conversation_id: str | None = None,
                           files: list[dict[str, Any]] | None = None, auto_generate_name: bool = True,
                           workflow_id: str | None = None) -> ChatResponse: ...

    @overload
    async def chat_message(self, query: str, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                           response_mode: Literal["streaming"], conversation_id: str | None = None,
                           files: list[dict[str, Any]] | None = None, auto_generate_name: bool = True,
                           workflow_id: str | None = None) -> AsyncChatStream: ...

    async def chat_message(self, query: str, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                           response_mode: Literal["blocking", "streaming"] = "blocking",
                           conversation_id: str | None = None, files: list[dict[str, Any]] | None = None,
                           auto_generate_name: bool = True,
                           workflow_id: str | None = None) -> ChatResponse | AsyncChatStream:
        call = _api.chat_message(self.config, query, inputs, user, response_mode, conversation_id=conversation_id,
                                 files=files, auto_generate_name=auto_generate_name, workflow_id=workflow_id)
        if response_mode == "streaming":
            return AsyncChatStream(self, call)
        result: ChatResponse = await self._call(call)
        return result

    @overload
    async def completion_message(self, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                                 query: str | None = None, response_mode: Literal["blocking"] = "blocking",
                                 files: list[dict[str, Any]] | None = None) -> CompletionResponse: ...

    @overload
    async def completion_message(self, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                                 query: str | None = None, response_mode: Literal["streaming"],
                                 files: list[dict[str, Any]] | None = None) -> AsyncChatStream: ...

    async def completion_message(self, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                                 query: str | None = None,
                                 response_mode: Literal["blocking", "streaming"] = "blocking",
                                 files: list[dict[str, Any]] | None = None) -> CompletionResponse | AsyncChatStream:
        call = _api.completion_message(self.config, inputs, user, response_mode, query=query, files=files)
        if response_mode == "streaming":
            return AsyncChatStream(self, call)
        result: CompletionResponse = await self._call(call)
        return result

    async def stop_chat_message(self, task_id: str, user: str | None = None) -> StopResult:
        return await self._call(_api.stop_chat_message(self.config, task_id, user))

    async def stop_completion_message(self, task_id: str, user: str | None = None) -> StopResult:
        return await self._call(_api.stop_completion_message(self.config, task_id, user))

    async def list_messages(self, conversation_id: str, user: str | None = None, *, first_id: str | None = None,
                            limit: int = 20) -> MessagePage:
        return await self._call(_api.list_messages(self.config, conversation_id, user, first_id=first_id,
                                                   limit=limit))

    async def list_conversations(self, user: str | None = None, *, last_id: str | None = None, limit: int = 20,
                                 sort_by: str = "-updated_at") -> ConversationPage:
        return await self._call(_api.list_conversations(self.config, user, last_id=last_id, limit=limit,
                                                        sort_by=sort_by))

    async def get_site(self) -> SiteInfo:
        return await self._call(_api.get_site())

    async def get_meta(self) -> AppMeta:
        return await self._call(_api.get_meta())
