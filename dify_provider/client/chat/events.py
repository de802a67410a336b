"""The events of a chat-family stream (``/chat-messages``, ``/completion-messages``).

A chatflow's stream also carries the workflow, node and HITL events of a workflow run (typed by
:mod:`dify_provider.client.models`), each with the ``message_id`` and ``conversation_id`` of the
message. Shapes from Dify 1.13's ``core/app/entities/task_entities.py`` and the converters that
wrap them (``core/app/apps/*/generate_response_converter.py``).
"""

# No ``from __future__ import annotations``: see dify_provider/client/models.py.
from typing import Any, Literal

from pydantic import Field, field_validator

from dify_provider.client.chat.models import ChatMetadata, ChatUsage, RetrieverResource
from dify_provider.client.models import StreamEvent, parse_event


class _ChatEvent(StreamEvent):
    #: The message's creation time (Unix seconds), repeated on every event.
    created_at: int | None = None


class MessageEvent(_ChatEvent):
    """A chunk of the answer."""

    event: Literal["message"] = "message"
    id: str | None = None
    answer: str = ""
    from_variable_selector: list[str] | None = None


class AgentMessageEvent(_ChatEvent):
    """A chunk of an agent app's answer."""

    event: Literal["agent_message"] = "agent_message"
    id: str | None = None
    answer: str = ""


class AgentThoughtEvent(_ChatEvent):
    """An agent step; Dify sends the same ``id`` again as the step progresses (thought, then the
    tool's observation): the last one sent is the step's state."""

    event: Literal["agent_thought"] = "agent_thought"
    id: str
    position: int = 0
    thought: str | None = None
    observation: str | None = None
    tool: str | None = None
    tool_labels: dict[str, Any] = Field(default_factory=dict)
    tool_input: str | None = None
    message_files: list[str] = Field(default_factory=list)

    @field_validator("tool_labels", mode="before")
    @classmethod
    def _no_labels(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("message_files", mode="before")
    @classmethod
    def _no_files(cls, value: Any) -> Any:
        return [] if value is None else value


class MessageFileEvent(_ChatEvent):
    """A file the app made. Quirk of Dify (``MessageCycleManager.get_message_event_type``): once a
    message has an assistant file, its text chunks are sent with this event name too, shaped like
    a ``message`` event (``answer``, no ``url``): see :attr:`is_text_chunk`."""

    event: Literal["message_file"] = "message_file"
    id: str | None = None
    type: str | None = None
    belongs_to: str | None = None
    url: str | None = None
    answer: str | None = None

    @property
    def is_text_chunk(self) -> bool:
        return self.answer is not None and self.url is None


class MessageEndEvent(_ChatEvent):
    """The message is complete: usage and citations. Whether the stream ends here depends on the
    app (a chatflow's ends at ``workflow_finished``, which follows): see ``ChatStream.finished``."""

    event: Literal["message_end"] = "message_end"
    id: str | None = None
    metadata: ChatMetadata = Field(default_factory=ChatMetadata)
    files: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("metadata", mode="before")
    @classmethod
    def _no_metadata(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("files", mode="before")
    @classmethod
    def _no_files(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def usage(self) -> ChatUsage | None:
        return self.metadata.usage

    @property
    def retriever_resources(self) -> list[RetrieverResource]:
        return self.metadata.retriever_resources


class MessageReplaceEvent(_ChatEvent):
    """The whole answer so far is replaced (output moderation): ``answer`` is the new text."""

    event: Literal["message_replace"] = "message_replace"
    answer: str = ""
    reason: str = ""


class TtsMessageEvent(_ChatEvent):
    """A chunk of the spoken answer (base64 MP3), when the app's text-to-speech autoplay is on."""

    event: Literal["tts_message"] = "tts_message"
    audio: str = ""


class TtsMessageEndEvent(_ChatEvent):
    event: Literal["tts_message_end"] = "tts_message_end"
    audio: str = ""


_CHAT_EVENT_TYPES: dict[str, type[StreamEvent]] = {
    cls.model_fields["event"].default: cls
    for cls in (
        MessageEvent,
        AgentMessageEvent,
        AgentThoughtEvent,
        MessageFileEvent,
        MessageEndEvent,
        MessageReplaceEvent,
        TtsMessageEvent,
        TtsMessageEndEvent,
    )
}


def parse_chat_event(payload: dict[str, Any]) -> StreamEvent:
    """A chat-family frame to its typed event: the chat events above, else what
    :func:`~dify_provider.client.models.parse_event` makes of it (a chatflow's workflow, node and
    HITL events, ``error``, and unknown types kept as :class:`StreamEvent`)."""
    cls = _CHAT_EVENT_TYPES.get(str(payload.get("event", "")))
    return cls.model_validate(payload) if cls is not None else parse_event(payload)
