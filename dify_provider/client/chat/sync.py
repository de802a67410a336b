"""The chat-family methods of :class:`~dify_provider.client.sync.DifyClient` (a mixin: the
transport, retries and version noting are the client's own)."""

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
from dify_provider.client.chat.stream import ChatStream
from dify_provider.client.models import StopResult

if TYPE_CHECKING:
    from dify_provider.client._transport import SyncServiceClient

    _Client: TypeAlias = SyncServiceClient[ClientConfig]
else:
    _Client = object


class ChatMethods(_Client):
    """``/chat-messages``, ``/completion-messages``, ``/messages``, ``/conversations``, ``/site``,
    ``/meta``. Every argument is checked before anything is sent (``DifyConfigError`` naming it)."""

    @overload
    def chat_message(self, query: str, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                     response_mode: Literal["blocking"] = "blocking", conversation_id: str | None = None,
                     files: list[dict[str, Any]] | None = None, auto_generate_name: bool = True,
                     workflow_id: str | None = None) -> ChatResponse: ...

    @overload
    def chat_message(self, query: str, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                     response_mode: Literal["streaming"], conversation_id: str | None = None,
                     files: list[dict[str, Any]] | None = None, auto_generate_name: bool = True,
                     workflow_id: str | None = None) -> ChatStream: ...

    def chat_message(self, query: str, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                     response_mode: Literal["blocking", "streaming"] = "blocking",
                     conversation_id: str | None = None, files: list[dict[str, Any]] | None = None,
                     auto_generate_name: bool = True, workflow_id: str | None = None) -> ChatResponse | ChatStream:
        """Send a message to a chat, agent-chat or chatflow app (``conversation_id``: continue one;
        ``workflow_id``: a chatflow's published version). Blocking waits for the whole answer
        (agent apps refuse it; proxies cut it at ~60-100 s); streaming returns a
        :class:`ChatStream` at once, and is the only way to learn a chatflow's run id.

        Never re-sent once it may have reached Dify: a second request is a second paid answer.
        """
        call = _api.chat_message(self.config, query, inputs, user, response_mode, conversation_id=conversation_id,
                                 files=files, auto_generate_name=auto_generate_name, workflow_id=workflow_id)
        if response_mode == "streaming":
            return ChatStream(self, call)
        result: ChatResponse = self._call(call)
        return result

    @overload
    def completion_message(self, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                           query: str | None = None, response_mode: Literal["blocking"] = "blocking",
                           files: list[dict[str, Any]] | None = None) -> CompletionResponse: ...

    @overload
    def completion_message(self, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                           query: str | None = None, response_mode: Literal["streaming"],
                           files: list[dict[str, Any]] | None = None) -> ChatStream: ...

    def completion_message(self, inputs: dict[str, Any] | None = None, user: str | None = None, *,
                           query: str | None = None, response_mode: Literal["blocking", "streaming"] = "blocking",
                           files: list[dict[str, Any]] | None = None) -> CompletionResponse | ChatStream:
        """Run a completion (text-generator) app. ``query`` is sent as ``inputs["query"]``, the
        variable a completion app's prompt reads (see :mod:`dify_provider.client.chat._api`)."""
        call = _api.completion_message(self.config, inputs, user, response_mode, query=query, files=files)
        if response_mode == "streaming":
            return ChatStream(self, call)
        result: CompletionResponse = self._call(call)
        return result

    def stop_chat_message(self, task_id: str, user: str | None = None) -> StopResult:
        """Stop a streaming answer by the stream's ``task_id``; ``user`` must be the one who asked."""
        return self._call(_api.stop_chat_message(self.config, task_id, user))

    def stop_completion_message(self, task_id: str, user: str | None = None) -> StopResult:
        return self._call(_api.stop_completion_message(self.config, task_id, user))

    def list_messages(self, conversation_id: str, user: str | None = None, *, first_id: str | None = None,
                      limit: int = 20) -> MessagePage:
        """A conversation's messages, newest page first (``page.next_first_id`` for older ones);
        only the ``user`` who had the conversation sees it."""
        return self._call(_api.list_messages(self.config, conversation_id, user, first_id=first_id, limit=limit))

    def list_conversations(self, user: str | None = None, *, last_id: str | None = None, limit: int = 20,
                           sort_by: str = "-updated_at") -> ConversationPage:
        """The ``user``'s conversations with this app (``page.next_last_id`` for the next page)."""
        return self._call(_api.list_conversations(self.config, user, last_id=last_id, limit=limit, sort_by=sort_by))

    def get_site(self) -> SiteInfo:
        return self._call(_api.get_site())

    def get_meta(self) -> AppMeta:
        return self._call(_api.get_meta())
