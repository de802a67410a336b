"""A chat-family stream: the message assembled from its events, sync and async.

The reading (request, retries, inactivity timeout, ``abort()``, ``hang_up_at()``) is the run
stream's own (:mod:`dify_provider.client._streams`); only what the events mean is added here,
in :class:`ChatStreamState`, which both flavours share.
"""

from __future__ import annotations

from typing import Any

from dify_provider.client import errors as e
from dify_provider.client._api import StreamState
from dify_provider.client._core import Call
from dify_provider.client._streams import AsyncEventStream, SyncEventStream
from dify_provider.client.chat.events import (
    AgentMessageEvent,
    AgentThoughtEvent,
    MessageEndEvent,
    MessageEvent,
    MessageFileEvent,
    MessageReplaceEvent,
    parse_chat_event,
)
from dify_provider.client.chat.models import ChatUsage, RetrieverResource
from dify_provider.client.models import StreamEvent, WorkflowFinishedEvent, WorkflowStartedEvent

_IDS = ("task_id", "message_id", "conversation_id", "workflow_run_id")


class ChatStreamState(StreamState):
    """What a chat stream has told so far. Each id is remembered from the first event that
    carries it: ``task_id`` (for the stop call), ``message_id``, ``conversation_id`` (not for
    completion apps) and, for a chatflow, ``workflow_run_id``.

    When it ends (:attr:`finished`): at an ``error`` event, which raises the typed error as a run
    stream does; for a chatflow (a ``workflow_started`` was seen) at ``workflow_finished`` or
    ``workflow_paused`` (Dify sends ``message_end`` before ``workflow_finished``; when the run is
    stopped, after it, so a stopped chatflow's stream ends without usage); for chat, agent-chat
    and completion apps at ``message_end``. Text-to-speech chunks that Dify sends after
    ``message_end`` (autoplay on) are not read.

    What is checked: every event names the message the first one did, and ``message_end`` ends
    that message (a stream mixing messages raises :class:`~dify_provider.client.errors.DifyStreamError`
    rather than return an answer assembled from two). The text itself cannot be checked:
    ``message_end`` carries no answer. A ``message_replace`` (output moderation, sent just before
    ``message_end``) is the whole answer, so :attr:`answer` becomes its text.
    """

    def __init__(self, call: Call[Any], idle_timeout: float) -> None:
        super().__init__(call, idle_timeout)
        self.message_id: str | None = None
        self.conversation_id: str | None = None
        #: From ``message_end``; None before it (and for a stopped chatflow).
        self.usage: ChatUsage | None = None
        self.retriever_resources: list[RetrieverResource] = []
        #: Files the app made (``message_file`` events), in the order sent.
        self.files: list[MessageFileEvent] = []
        self.message_end: MessageEndEvent | None = None
        #: A chatflow's last event: the run's status, error, total_steps, elapsed_time (``.result``).
        self.workflow_finished: WorkflowFinishedEvent | None = None
        #: The ``message_replace`` that replaced the answer, if one did.
        self.replaced: MessageReplaceEvent | None = None
        self._chunks: list[str] = []
        self._thoughts: dict[str, AgentThoughtEvent] = {}
        self._chatflow = False

    @property
    def answer(self) -> str:
        """The answer so far: ``message``/``agent_message`` chunks, after a ``message_replace``'s text."""
        return "".join(self._chunks)

    @property
    def agent_thoughts(self) -> list[AgentThoughtEvent]:
        """An agent's steps, each in its last-sent state, in the order they began."""
        return list(self._thoughts.values())

    @property
    def is_chatflow(self) -> bool:
        return self._chatflow

    def parse(self, payload: dict[str, Any]) -> StreamEvent:
        return parse_chat_event(payload)

    def note(self, event: StreamEvent) -> None:
        self._remember_ids(event)
        super().note(event)  # workflow_finished and workflow_paused end it
        if isinstance(event, WorkflowStartedEvent):
            self._chatflow = True
        elif isinstance(event, MessageEvent | AgentMessageEvent):
            self._chunks.append(event.answer)
        elif isinstance(event, MessageFileEvent):
            if event.is_text_chunk:
                self._chunks.append(event.answer or "")
            else:
                self.files.append(event)
        elif isinstance(event, MessageReplaceEvent):
            self._chunks = [event.answer]
            self.replaced = event
        elif isinstance(event, AgentThoughtEvent):
            self._thoughts[event.id] = event  # a known id keeps its place
        elif isinstance(event, MessageEndEvent):
            self._end(event)
        elif isinstance(event, WorkflowFinishedEvent):
            self.workflow_finished = event

    def _remember_ids(self, event: StreamEvent) -> None:
        for name in _IDS:
            value = getattr(event, name)
            if not value:
                continue
            known = getattr(self, name)
            if known is None:
                setattr(self, name, value)
            elif name == "message_id" and value != known:
                raise self._mixed(value)

    def _end(self, event: MessageEndEvent) -> None:
        if event.id and self.message_id and event.id != self.message_id:
            raise self._mixed(event.id)
        self.message_end = event
        self.usage = event.usage
        self.retriever_resources = list(event.retriever_resources)
        if not self._chatflow:
            self.finished = True

    def _mixed(self, other: str) -> e.DifyStreamError:
        return e.DifyStreamError(f"the stream from {self._call.path} of message {self.message_id} also spoke of "
                                 f"message {other}; its answer cannot be trusted")

    def ended_early(self) -> e.DifyStreamEndedError:
        if self.workflow_run_id:
            done = "the message was complete, " if self.message_end is not None else ""
            where = f" ({done}run {self.workflow_run_id} may still be going: poll it)"
        elif self.message_id:
            where = f" (message {self.message_id} may be incomplete)"
        else:
            where = ""
        return e.DifyStreamEndedError(f"the stream from {self._call.path} ended before a terminal event{where}")

    def summary(self) -> dict[str, Any]:
        """JSON-safe view for XCom, like :meth:`ChatResponse.summary` plus the chatflow's run."""
        result = self.workflow_finished.result if self.workflow_finished is not None else None
        return {
            "task_id": self.task_id,
            "message_id": self.message_id,
            "conversation_id": self.conversation_id,
            "workflow_run_id": self.workflow_run_id,
            "answer": self.answer,
            "usage": self.usage.as_dict() if self.usage else None,
            "workflow_status": str(result.status) if result else None,
            "workflow_error": result.error if result else None,
        }


class ChatStream(SyncEventStream, ChatStreamState):
    """An open ``/chat-messages`` or ``/completion-messages`` stream: iterate for typed events
    (:mod:`~dify_provider.client.chat.events`, and a chatflow's workflow events); the answer,
    usage, citations, files and agent steps accumulate on it (:class:`ChatStreamState`).

    ``close()`` hangs up; :meth:`abort` (any thread) and :meth:`hang_up_at` end it early, as for a
    :class:`~dify_provider.client.sync.WorkflowStream`.
    """


class AsyncChatStream(AsyncEventStream, ChatStreamState):
    """Async twin of :class:`ChatStream`."""
