"""The JSON bodies and SSE payloads of the chat API, as Dify 1.13.2 shapes them: pure functions of
a :class:`~dify_provider.testing.chats.ChatMessage`.

Sources (Dify ``api/``): the stream frames are ``core/app/apps/*/generate_response_converter.py``
(every chat-mode frame starts ``event, conversation_id, message_id, created_at``; completion frames
have no ``conversation_id``) over ``core/app/entities/task_entities.py``; the blocking bodies are
the same converters; message metadata is ``TaskStateMetadata`` (``annotation_reply``,
``retriever_resources``, ``usage``: an ``LLMUsage`` whose prices are ``Decimal`` strings);
``GET /messages`` and ``GET /conversations`` items are ``fields/message_fields.py`` and
``fields/conversation_fields.py``. Recordings 71 and 75 pin the chatflow's.

The usage is deterministic so tests can assert it: ``prompt_tokens`` = characters of the query
plus of the non-empty input values, ``completion_tokens`` = characters of the answer, priced at
:data:`PROMPT_UNIT_PRICE` / :data:`COMPLETION_UNIT_PRICE` per :data:`PRICE_UNIT` token (Dify's
``tokens x unit_price x unit``, rounded half-up to 7 places), ``latency`` :data:`LATENCY`.
"""

from __future__ import annotations

import hashlib
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from dify_provider.testing.chats import UUID_NIL, ChatMessage, Conversation
from dify_provider.testing.forms import actions_json, inputs_json
from dify_provider.testing.models import EMULATOR_NAMESPACE

if TYPE_CHECKING:
    from dify_provider.testing.runs import PendingForm, Run

PROMPT_UNIT_PRICE = Decimal("0.5")
COMPLETION_UNIT_PRICE = Decimal("1.5")
PRICE_UNIT = Decimal("0.001")
LATENCY = 0.5
#: A chatflow's streaming metrics (``time_to_first_token``, ``time_to_generate``) once it streamed.
CHATFLOW_TIMINGS = (0.05, 0.1)
_PLACES = Decimal("0.0000001")

#: The one passage apps with ``retriever_resource=True`` cite (``RetrievalSourceMetadata``).
CITATION: dict[str, Any] = {
    "position": 1,
    "dataset_id": str(uuid.uuid5(EMULATOR_NAMESPACE, "dataset:emulator-knowledge")),
    "dataset_name": "Emulator Knowledge",
    "document_id": str(uuid.uuid5(EMULATOR_NAMESPACE, "document:emulator-guide")),
    "document_name": "emulator-guide.md",
    "data_source_type": "upload_file",
    "segment_id": str(uuid.uuid5(EMULATOR_NAMESPACE, "segment:emulator-guide:1")),
    "retriever_from": "api",
    "score": 0.9,
    "hit_count": 1,
    "word_count": 8,
    "segment_position": 1,
    "index_node_hash": hashlib.sha256(b"emulator-guide:1").hexdigest(),
    "content": "The Dify emulator answers every question deterministically.",
    "page": None,
    "doc_metadata": None,
    "title": None,
    "files": None,
    "summary": None,
}


def _price(tokens: int, unit_price: Decimal) -> Decimal:
    return (tokens * unit_price * PRICE_UNIT).quantize(_PLACES, rounding=ROUND_HALF_UP)


def empty_usage() -> dict[str, Any]:
    """``LLMUsage.empty_usage()`` as the pipelines dump it (a chatflow without an LLM node)."""
    zero = "0.0"
    return {
        "prompt_tokens": 0, "prompt_unit_price": zero, "prompt_price_unit": zero, "prompt_price": zero,
        "completion_tokens": 0, "completion_unit_price": zero, "completion_price_unit": zero,
        "completion_price": zero, "total_tokens": 0, "total_price": zero, "currency": "USD", "latency": 0.0,
        "time_to_first_token": None, "time_to_generate": None,
    }  # fmt: skip


def prompt_tokens(message: ChatMessage) -> int:
    return len(message.query) + sum(len(str(value)) for value in message.inputs.values() if value not in (None, ""))


def usage(message: ChatMessage) -> dict[str, Any]:
    """The message's usage for the answer streamed so far (see the module docstring)."""
    prompt, completion = prompt_tokens(message), len(message.answer)
    prompt_price, completion_price = _price(prompt, PROMPT_UNIT_PRICE), _price(completion, COMPLETION_UNIT_PRICE)
    return {
        "prompt_tokens": prompt,
        "prompt_unit_price": str(PROMPT_UNIT_PRICE),
        "prompt_price_unit": str(PRICE_UNIT),
        "prompt_price": str(prompt_price),
        "completion_tokens": completion,
        "completion_unit_price": str(COMPLETION_UNIT_PRICE),
        "completion_price_unit": str(PRICE_UNIT),
        "completion_price": str(completion_price),
        "total_tokens": prompt + completion,
        "total_price": str(prompt_price + completion_price),
        "currency": "USD",
        "latency": LATENCY,
        "time_to_first_token": None,
        "time_to_generate": None,
    }


def final_usage(message: ChatMessage) -> dict[str, Any]:
    """``metadata.usage`` at the end: a chatflow's is its LLM nodes' (none ran: zeros) plus the
    streaming metrics its pipeline adds once text streamed; the other modes' is the model's."""
    if message.run is None:
        return message.usage or usage(message)
    shown = dict(message.usage or empty_usage())
    if message.answer.strip():
        shown["time_to_first_token"], shown["time_to_generate"] = CHATFLOW_TIMINGS
    return shown


def retriever_resources(message: ChatMessage) -> list[dict[str, Any]]:
    if not message.app.retriever_resource:
        return []
    citation = dict(CITATION)
    if message.run is not None:
        citation["retriever_from"] = "workflow"  # the knowledge-retrieval node's (dataset_retrieval.py)
    return [citation]


def metadata(message: ChatMessage) -> dict[str, Any]:
    return {
        "annotation_reply": None,
        "retriever_resources": retriever_resources(message),
        "usage": final_usage(message),
    }


def _head(message: ChatMessage, event: str) -> dict[str, Any]:
    head: dict[str, Any] = {"event": event}
    if message.mode != "completion":
        head["conversation_id"] = message.conversation.id
    head.update(message_id=message.id, created_at=int(message.created_at))
    return head


def ids(message: ChatMessage) -> dict[str, Any]:
    """What a chat converter puts before a frame's own fields (workflow and node frames included)."""
    head = _head(message, "")
    del head["event"]
    return head


def message_event(message: ChatMessage, text: str, selector: list[str] | None = None) -> dict[str, Any]:
    return {**_head(message, "message"), "task_id": message.task_id, "id": message.id, "answer": text,
            "from_variable_selector": selector}


def agent_message(message: ChatMessage, text: str) -> dict[str, Any]:
    return {**_head(message, "agent_message"), "task_id": message.task_id, "id": message.id, "answer": text}


def agent_thought(message: ChatMessage, thought: str) -> dict[str, Any]:
    """The function-calling agent's one thought, empty as its LLM starts, then with the answer."""
    return {
        **_head(message, "agent_thought"),
        "task_id": message.task_id,
        "id": message.thought_id,
        "position": 1,
        "thought": thought,
        "observation": "",
        "tool": "",
        "tool_labels": {},
        "tool_input": "",
        "message_files": [],
    }


def message_end(message: ChatMessage) -> dict[str, Any]:
    # A chatflow sends its recorded files ([]); the easy-UI pipeline None when there are none.
    files: list[Any] | None = [] if message.run is not None else None
    return {**_head(message, "message_end"), "task_id": message.task_id, "id": message.id,
            "metadata": metadata(message), "files": files}


def error_event(message: ChatMessage, status: int, code: str, text: str) -> dict[str, Any]:
    """``_error_to_stream_response``: code and status, then the message (internal errors: code,
    message, status); no ``task_id``."""
    body = {"code": code, "message": text, "status": status} if status >= 500 else {
        "code": code, "status": status, "message": text}
    return {**_head(message, "error"), **body}


def blocking_body(message: ChatMessage) -> dict[str, Any]:
    body: dict[str, Any] = {"event": "message", "task_id": message.task_id, "id": message.id,
                            "message_id": message.id}
    if message.mode != "completion":
        body["conversation_id"] = message.conversation.id
    body.update(mode=message.mode, answer=message.answer, metadata=metadata(message),
                created_at=int(message.created_at))
    return body


def _listed_resource(message: ChatMessage, resource: dict[str, Any]) -> dict[str, Any]:
    # RetrieverResource gives ``id`` and ``message_id`` fresh uuid4s: the metadata has neither.
    keys = ("position", "dataset_id", "dataset_name", "document_id", "document_name", "data_source_type",
            "segment_id", "score", "hit_count", "word_count", "segment_position", "index_node_hash", "content",
            "summary")
    return {"id": str(uuid.uuid4()), "message_id": str(uuid.uuid4()), **{k: resource.get(k) for k in keys},
            "created_at": None}


def _thoughts(message: ChatMessage) -> list[dict[str, Any]]:
    if message.mode != "agent-chat" or not message.saved:
        return []
    return [{
        "id": message.thought_id, "chain_id": None, "message_id": message.id, "position": 1,
        "thought": message.answer, "tool": "", "tool_labels": {}, "tool_input": "",
        "created_at": int(message.created_at), "observation": "", "files": [],
    }]  # fmt: skip


def _form_content(run: Run, form: PendingForm) -> dict[str, Any]:
    """One ``extra_contents`` entry of a chatflow message (``HumanInputContent``, recordings
    hitl/A2, A7): a form not submitted (waiting, or timed out) with its definition and token, which
    is how a 1.13.2 client finds a later form's token; a submitted one with the answer."""
    definition = submission = None
    if form.submitted:
        submission = {"node_id": form.node.node_id, "node_title": form.node.title,
                      "rendered_content": form.answered_content, "action_id": form.action,
                      "action_text": form.spec.action_title(form.action or "")}
    else:
        definition = {"form_id": form.form_id, "node_id": form.node.node_id, "node_title": form.node.title,
                      "form_content": form.content, "inputs": inputs_json(form.spec),
                      "actions": actions_json(form.spec), "display_in_ui": form.spec.delivery == "webapp",
                      "form_token": form.token, "resolved_default_values": dict(form.resolved_defaults),
                      "expiration_time": form.expiration_time}
    return {"workflow_run_id": run.id, "submitted": form.submitted, "form_definition": definition,
            "form_submission_data": submission, "type": "human_input"}


def saved_answer(message: ChatMessage) -> str:
    """The message row's ``answer``: empty until the message ends (or its chatflow pauses)."""
    return message.answer.strip() if message.saved else ""


def message_item(message: ChatMessage) -> dict[str, Any]:
    """A ``GET /messages`` item (``MessageListItem``): what Dify saved of the message."""
    saved = message.saved  # what a failed or unfinished message has: an empty answer, no metadata
    return {
        "id": message.id,
        "conversation_id": message.conversation.id,
        "parent_message_id": UUID_NIL,
        "inputs": message.inputs,
        "query": message.query,
        "answer": saved_answer(message),
        "feedback": None,
        "retriever_resources": [_listed_resource(message, r) for r in retriever_resources(message)] if saved else [],
        "created_at": int(message.created_at),
        "agent_thoughts": _thoughts(message),
        "message_files": [],
        "status": message.api_status,
        "error": message.error,
        "extra_contents": [] if message.run is None else [_form_content(message.run, f) for f in message.run.forms],
    }


def conversation_item(conversation: Conversation) -> dict[str, Any]:
    """A ``GET /conversations`` item (``SimpleConversation``)."""
    return {
        "id": conversation.id,
        "name": conversation.name,
        "inputs": conversation.inputs,
        "status": "normal",
        "introduction": "",
        "created_at": int(conversation.created_at),
        "updated_at": int(conversation.updated_at),
    }


def conversation_name(query: str) -> str:
    """``_init_generate_records``: the query, cut to 20 characters and an ellipsis."""
    query = query or "New conversation"
    return f"{query[:20]}…" if len(query) > 20 else query
