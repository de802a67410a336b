"""Typed shapes of the chat-family endpoints (chat, agent-chat, advanced-chat, completion apps).

Written from Dify 1.13's own response models (``api/fields/message_fields.py``,
``conversation_fields.py``, ``core/app/entities/task_entities.py``) and the recordings of a real
1.13.2; lenient like :mod:`dify_provider.client.models` (extra fields ignored, nulls tolerated).
"""

# No ``from __future__ import annotations``: see dify_provider/client/models.py.
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator

from dify_provider.client.models import DifyModel, _json_object


def _text(value: Any) -> Any:
    # Dify serialises Decimal prices as strings ("0.0012"); keep them so, exactly.
    return "0" if value is None else value if isinstance(value, str) else str(value)


def _iso(value: int | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


class ChatUsage(DifyModel):
    """Model usage of one message (``metadata.usage``); prices are decimal strings, as sent."""

    prompt_tokens: int = 0
    prompt_unit_price: str = "0"
    prompt_price_unit: str = "0"
    prompt_price: str = "0"
    completion_tokens: int = 0
    completion_unit_price: str = "0"
    completion_price_unit: str = "0"
    completion_price: str = "0"
    total_tokens: int = 0
    total_price: str = "0"
    currency: str | None = None
    #: Seconds from the request to the last token.
    latency: float = 0.0
    time_to_first_token: float | None = None
    time_to_generate: float | None = None

    @field_validator("prompt_unit_price", "prompt_price_unit", "prompt_price", "completion_unit_price",
                     "completion_price_unit", "completion_price", "total_price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> Any:
        return _text(value)

    @field_validator("prompt_tokens", "completion_tokens", "total_tokens", "latency", mode="before")
    @classmethod
    def _zero(cls, value: Any) -> Any:
        return 0 if value is None else value

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, for XCom: every field (tokens, prices as strings, currency, latency)."""
        return self.model_dump()


class RetrieverResource(DifyModel):
    """One citation (``metadata.retriever_resources[]``): a knowledge-base segment the answer used."""

    id: str | None = None
    message_id: str | None = None
    position: int | None = None
    dataset_id: str | None = None
    dataset_name: str | None = None
    document_id: str | None = None
    document_name: str | None = None
    data_source_type: str | None = None
    segment_id: str | None = None
    score: float | None = None
    hit_count: int | None = None
    word_count: int | None = None
    segment_position: int | None = None
    index_node_hash: str | None = None
    content: str | None = None
    summary: str | None = None
    page: int | None = None
    title: str | None = None
    created_at: int | None = None


class ChatMetadata(DifyModel):
    usage: ChatUsage | None = None
    retriever_resources: list[RetrieverResource] = Field(default_factory=list)
    annotation_reply: dict[str, Any] | None = None

    @field_validator("retriever_resources", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        return [] if value is None else value


class _Answer(DifyModel):
    event: str = "message"
    task_id: str
    #: The message's id (Dify sends it twice, as ``id`` and ``message_id``).
    id: str
    message_id: str
    mode: str | None = None
    answer: str = ""
    metadata: ChatMetadata = Field(default_factory=ChatMetadata)
    created_at: int | None = None

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def usage(self) -> ChatUsage | None:
        return self.metadata.usage

    @property
    def retriever_resources(self) -> list[RetrieverResource]:
        return self.metadata.retriever_resources

    def summary(self) -> dict[str, Any]:
        """JSON-safe, small view for XCom: the answer, the ids, usage; no citations' text."""
        return {
            "task_id": self.task_id,
            "message_id": self.message_id,
            "conversation_id": getattr(self, "conversation_id", None),
            "mode": self.mode,
            "answer": self.answer,
            "usage": self.usage.as_dict() if self.usage else None,
            "created_at": _iso(self.created_at),
        }


class ChatResponse(_Answer):
    """``POST /chat-messages`` in blocking mode. Names no workflow run, even for a chatflow."""

    conversation_id: str


class CompletionResponse(_Answer):
    """``POST /completion-messages`` in blocking mode (a completion app has no conversations)."""

    conversation_id: str | None = None


# --- listing ------------------------------------------------------------------------------------


class Feedback(DifyModel):
    rating: str | None = None


class AgentThought(DifyModel):
    """One step of an agent's reasoning: a thought, the tool it called and what it observed."""

    id: str
    message_id: str | None = None
    chain_id: str | None = None
    position: int = 0
    thought: str | None = None
    tool: str | None = None
    tool_labels: Any = None
    tool_input: str | None = None
    observation: str | None = None
    files: list[str] = Field(default_factory=list)
    created_at: int | None = None

    @field_validator("files", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        return [] if value is None else value


class MessageFile(DifyModel):
    id: str
    filename: str | None = None
    type: str | None = None
    url: str | None = None
    mime_type: str | None = None
    size: int | None = None
    transfer_method: str | None = None
    #: ``user`` (sent with the query) or ``assistant`` (made by the app).
    belongs_to: str | None = None
    upload_file_id: str | None = None


class Message(DifyModel):
    """One exchange of a conversation (``GET /messages``): the user's query and the answer."""

    id: str
    conversation_id: str
    parent_message_id: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    query: str = ""
    answer: str = ""
    feedback: Feedback | None = None
    retriever_resources: list[RetrieverResource] = Field(default_factory=list)
    agent_thoughts: list[AgentThought] = Field(default_factory=list)
    message_files: list[MessageFile] = Field(default_factory=list)
    #: ``normal``, ``error`` or ``paused`` (a chatflow waiting for human input).
    status: str | None = None
    error: str | None = None
    extra_contents: list[dict[str, Any]] = Field(default_factory=list)
    created_at: int | None = None

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> dict[str, Any]:
        return _json_object(value)

    @field_validator("retriever_resources", "agent_thoughts", "message_files", "extra_contents", mode="before")
    @classmethod
    def _none(cls, value: Any) -> Any:
        return [] if value is None else value


class MessagePage(DifyModel):
    """A page of ``GET /messages``: the newest ``limit`` messages older than ``first_id``, oldest
    first (Dify's ``MessageService.pagination_by_first_id``)."""

    limit: int
    has_more: bool
    data: list[Message] = Field(default_factory=list)

    @property
    def next_first_id(self) -> str | None:
        """The ``first_id`` of the page of older messages; None on the last page."""
        return self.data[0].id if self.has_more and self.data else None


class Conversation(DifyModel):
    id: str
    name: str = ""
    inputs: dict[str, Any] = Field(default_factory=dict)
    status: str | None = None
    introduction: str | None = None
    created_at: int | None = None
    updated_at: int | None = None

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> dict[str, Any]:
        return _json_object(value)


class ConversationPage(DifyModel):
    """A page of ``GET /conversations``, in the ``sort_by`` order asked for."""

    limit: int
    has_more: bool
    data: list[Conversation] = Field(default_factory=list)

    @property
    def next_last_id(self) -> str | None:
        """The ``last_id`` of the next page; None on the last page."""
        return self.data[-1].id if self.has_more and self.data else None


class SiteInfo(DifyModel):
    """``GET /site``: the app's WebApp settings."""

    title: str | None = None
    chat_color_theme: str | None = None
    chat_color_theme_inverted: bool | None = None
    icon_type: str | None = None
    icon: str | None = None
    icon_background: str | None = None
    icon_url: str | None = None
    description: str | None = None
    copyright: str | None = None
    privacy_policy: str | None = None
    custom_disclaimer: str | None = None
    default_language: str | None = None
    show_workflow_steps: bool | None = None
    use_icon_as_answer_icon: bool | None = None


class AppMeta(DifyModel):
    """``GET /meta``: icons of the tools the app uses (a URL, or ``{background, content}``)."""

    tool_icons: dict[str, Any] = Field(default_factory=dict)
