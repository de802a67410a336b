"""The server-side record of conversations and their messages (chat, agent-chat, advanced-chat and
completion apps), and the store the registry keeps them in.

A :class:`ChatMessage` is one ``POST /chat-messages`` or ``/completion-messages``. A chatflow's
message drives a workflow :class:`~dify_provider.testing.runs.Run` (its ``run``; the run points
back through ``Run.message``); the other modes' messages are driven by
:class:`~dify_provider.testing.chat_state.ChatEngine` and carry their own event log and subscribers.
Tests only ever see :class:`MessageSnapshot` copies.

What ``GET /messages`` shows is what Dify has *saved*: a message row is written empty when the
message starts and filled in (answer, metadata) only when it ends, so a running message reads as an
empty answer with status ``normal``, and a failed one as an empty answer with status ``error``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dify_provider.testing.models import EmulatedApp, Scenario

if TYPE_CHECKING:
    from dify_provider.testing.runs import Item, Run

#: ``parent_message_id`` of every service-API message (Dify threads them linearly).
UUID_NIL = "00000000-0000-0000-0000-000000000000"

#: Where a message is in its life. Dify's own ``status`` column (``normal``/``error``/``paused``)
#: is :attr:`ChatMessage.api_status`.
MessageState = Literal["running", "succeeded", "failed", "stopped", "paused"]


@dataclass(frozen=True, slots=True)
class MessageSnapshot:
    """A copy of one message at the moment it was taken.

    ``status`` is the message's life (``running`` until it ends; ``succeeded``, ``failed``,
    ``stopped``, or ``paused`` for a chatflow waiting for input); ``answer`` is what was streamed
    so far; ``usage`` the ``metadata.usage`` its ``message_end`` carries (None until then);
    ``workflow_run_id`` the run of a chatflow message; ``turn`` its place in the conversation
    (``sys.dialogue_count``).
    """

    id: str
    conversation_id: str
    task_id: str
    app: str
    mode: str
    user: str
    query: str
    inputs: dict[str, Any]
    answer: str
    status: MessageState
    error: str | None
    turn: int
    workflow_run_id: str | None
    created_at: int
    held: bool
    orphaned: bool
    usage: dict[str, Any] | None


@dataclass(eq=False)
class Conversation:
    id: str
    app: EmulatedApp
    user: str
    name: str
    inputs: dict[str, Any]
    seq: int
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    #: Order of the last update (``updated_at`` may tie within a clock tick).
    touched: int = 0
    messages: list[ChatMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.updated_at = self.updated_at or self.created_at
        self.touched = self.touched or self.seq


@dataclass(eq=False)
class ChatMessage:
    id: str
    task_id: str
    conversation: Conversation
    query: str
    inputs: dict[str, Any]
    turn: int
    seq: int
    scenario: Scenario
    streaming: bool
    created_at: float = field(default_factory=time.time)
    state: MessageState = "running"
    #: Streamed so far (the chatflow's ``message`` chunks, the others' answer chunks).
    answer: str = ""
    #: Set once the message ended the way Dify saves it (answer, metadata); never for an orphan.
    saved: bool = False
    #: Dify's ``message.error``.
    error: str | None = None
    usage: dict[str, Any] | None = None
    run: Run | None = None
    #: The agent's thought id (agent-chat).
    thought_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    held: bool = False
    #: A streaming client of a non-workflow app hung up: its in-process pipeline, which saves the
    #: message, went with it.
    orphaned: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    subscribers: set[asyncio.Queue[Item]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def app(self) -> EmulatedApp:
        return self.conversation.app

    @property
    def user(self) -> str:
        return self.conversation.user

    @property
    def mode(self) -> str:
        return self.app.mode

    @property
    def running(self) -> bool:
        return self.state == "running" and not self.orphaned

    @property
    def api_status(self) -> str:
        """Dify's ``message.status`` column."""
        return {"failed": "error", "paused": "paused"}.get(self.state, "normal")

    @property
    def variables(self) -> dict[str, Any]:
        """What answer templates may name: the inputs and the ``sys.*`` a chatflow would have."""
        return {
            **self.inputs,
            "sys.query": self.query,
            "sys.dialogue_count": self.turn,
            "sys.conversation_id": self.conversation.id,
            "sys.user_id": self.user,
        }

    def snapshot(self) -> MessageSnapshot:
        return MessageSnapshot(
            id=self.id,
            conversation_id=self.conversation.id,
            task_id=self.task_id,
            app=self.app.name,
            mode=self.mode,
            user=self.user,
            query=self.query,
            inputs=dict(self.inputs),
            answer=self.answer,
            status=self.state,
            error=self.error,
            turn=self.turn,
            workflow_run_id=None if self.run is None else self.run.id,
            created_at=int(self.created_at),
            held=self.held if self.run is None else self.run.held,
            orphaned=self.orphaned if self.run is None else self.run.orphaned,
            usage=None if self.usage is None else dict(self.usage),
        )


class ChatLog:
    """Conversations and messages by id, messages by task id; guarded by the registry's ``cond``."""

    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {}
        self.messages: dict[str, ChatMessage] = {}
        self._by_task: dict[str, ChatMessage] = {}
        self._seq = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def conversation(self, app: EmulatedApp, user: str, conversation_id: str) -> Conversation | None:
        """The conversation, if it is this app's and this user's (``ConversationService.get_conversation``)."""
        found = self.conversations.get(conversation_id)
        return found if found is not None and found.app.name == app.name and found.user == user else None

    def conversations_of(self, app: EmulatedApp, user: str) -> list[Conversation]:
        return [c for c in self.conversations.values() if c.app.name == app.name and c.user == user]

    def add(self, message: ChatMessage) -> None:
        conversation = message.conversation
        if not conversation.messages:  # created in the message's transaction: the same timestamp
            conversation.created_at = message.created_at
        self.conversations.setdefault(conversation.id, conversation)
        conversation.messages.append(message)
        conversation.updated_at, conversation.touched = message.created_at, message.seq
        self.messages[message.id] = message
        self._by_task[message.task_id] = message

    def by_task(self, task_id: str) -> ChatMessage | None:
        return self._by_task.get(task_id)

    def clear(self) -> None:
        self.conversations.clear()
        self.messages.clear()
        self._by_task.clear()
