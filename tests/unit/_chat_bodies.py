"""Chat-family bodies: the recordings of a real Dify 1.13.2 (``tests/contract/recordings``), and
frames shaped as Dify 1.13's converters build them (``ChatAppGenerateResponseConverter``:
``{event, conversation_id, message_id, created_at}`` + the stream response's own fields)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from ._harness import TASK_ID, frame, sse_response

RECORDINGS = Path(__file__).parents[1] / "contract" / "recordings"


def recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def recorded_sse(name: str) -> tuple[bytes, list[bytes]]:
    """The byte-exact SSE body, and the same bytes cut where the real server's chunks ended."""
    body = (RECORDINGS / f"{name}.sse.txt").read_bytes()
    chunks, at = [], 0
    for _, size in recording(name)["timing"]["chunks"]:
        chunks.append(body[at:at + size])
        at += size
    assert at == len(body), "the recording's chunk sizes do not add up to its body"
    return body, chunks


def recorded_response(*, chunk_size: int | None = None, extra: bytes = b"", then: Exception | None = None,
                      cut_after: str | None = None) -> httpx.Response:
    """The recorded chatflow stream (75) as an SSE response: as recorded, re-chunked, cut right
    after one event's frame, or followed by ``extra`` bytes and ``then`` an exception."""
    body, chunks = recorded_sse(STREAM_75)
    if cut_after is not None:
        at = body.index(f'"event":"{cut_after}"'.encode())
        body = body[:body.index(b"\n\n", at) + 2]
        chunks = [body]
    elif chunk_size is not None:
        chunks = [body[i:i + chunk_size] for i in range(0, len(body), chunk_size)]
    return sse_response(*chunks, extra, then=then) if extra or then else sse_response(*chunks)


BLOCKING_71 = recording("71-chat-app-chat-messages-blocking")["response"]["body"]
NOT_CHAT_APP_74 = recording("74-workflow-app-chat-messages")["response"]["body"]
SITE_04 = recording("04-get-site")["response"]["body"]
META_04B = recording("04b-get-meta")["response"]["body"]
STREAM_75 = "75-chat-app-chat-messages-streaming"
# What the recording's frames say (read off the .sse.txt).
REC_TASK_ID = "c9adf3cd-3dfc-4261-a0b8-4f60c3cce2af"
REC_MESSAGE_ID = "2ea7505f-96b1-43b2-be96-4c0f7df5b4f3"
REC_CONVERSATION_ID = "207d1072-b65e-43cb-a220-6a122b354954"
REC_RUN_ID = "4c514cb1-a790-4d07-af3f-686545703a14"

MESSAGE_ID = "5ad4cb98-f0c7-4085-b384-88c403be6290"
CONVERSATION_ID = "45701982-8118-4bc5-8e9b-64562b4555f2"
OTHER_MESSAGE_ID = "0b6a7a8c-1111-4c2e-9d3f-2a7e5c6b8d90"
THOUGHT_ID = "8dcb8e8f-7c4b-4bf0-a3e4-7d1b6c0e2a11"
FILE_MSG_ID = "c2b6e1f0-9a4d-4f7e-8b3c-5d2a1e0f9c87"
CREATED_AT = 1705395332

USAGE: dict[str, Any] = {
    "prompt_tokens": 1033, "prompt_unit_price": "0.001", "prompt_price_unit": "0.001", "prompt_price": "0.0010330",
    "completion_tokens": 135, "completion_unit_price": "0.002", "completion_price_unit": "0.001",
    "completion_price": "0.0002700", "total_tokens": 1168, "total_price": "0.0013030", "currency": "USD",
    "latency": 1.381760165997548, "time_to_first_token": 0.42, "time_to_generate": 0.96,
}
RESOURCE: dict[str, Any] = {
    "position": 1, "dataset_id": "101b4c97-fc2e-463c-90b1-5261a4cdcafb", "dataset_name": "iPhone",
    "document_id": "8dd1ad74-0b5f-4175-b735-7d98bbbb4e00", "document_name": "iPhone List",
    "segment_id": "ed599c7f-2766-4294-9d1d-e5235a61270a", "score": 0.98457545, "content": "\"Model\",\"Release\"",
}


def _wrap(event: str, **fields: Any) -> dict[str, Any]:
    return {"event": event, "conversation_id": CONVERSATION_ID, "message_id": MESSAGE_ID, "created_at": CREATED_AT,
            "task_id": TASK_ID, **fields}


def message(answer: str) -> bytes:
    return frame(_wrap("message", id=MESSAGE_ID, answer=answer, from_variable_selector=None))


def agent_message(answer: str) -> bytes:
    return frame(_wrap("agent_message", id=MESSAGE_ID, answer=answer))


def agent_thought(position: int, **fields: Any) -> bytes:
    base = {"id": THOUGHT_ID, "position": position, "thought": "", "observation": "", "tool": "", "tool_labels": {},
            "tool_input": "", "message_files": []}
    return frame(_wrap("agent_thought", **{**base, **fields}))


def message_end(message_id: str = MESSAGE_ID, **metadata: Any) -> bytes:
    meta = {"annotation_reply": None, "retriever_resources": [RESOURCE], "usage": USAGE, **metadata}
    return frame(_wrap("message_end", id=message_id, metadata=meta, files=None))


MESSAGE_FILE = frame(_wrap("message_file", id=FILE_MSG_ID, type="image", belongs_to="assistant",
                           url="https://files.example/tools/abc.png?sign=x"))
# Dify sends the text chunks of a message that has an assistant file under this name, shaped as `message`.
MESSAGE_FILE_TEXT = frame(_wrap("message_file", id=MESSAGE_ID, answer=" Here it is.", from_variable_selector=None))
MESSAGE_REPLACE = frame(_wrap("message_replace", answer="I cannot answer that.", reason="output_moderation"))
TTS = frame(_wrap("tts_message", audio="SUQzBAAAAAAA"))
TTS_END = frame(_wrap("tts_message_end", audio=""))
# The converter's in-stream error: no task_id (ErrorStreamResponse's dict is replaced by code/status/message).
PROVIDER_QUOTA_ERROR = frame({"event": "error", "conversation_id": CONVERSATION_ID, "message_id": MESSAGE_ID,
                              "created_at": CREATED_AT, "code": "provider_quota_exceeded", "status": 400,
                              "message": "Your quota for Dify Hosted Model Provider has been exhausted."})

COMPLETION_BLOCKING: dict[str, Any] = {
    "event": "message", "task_id": TASK_ID, "id": MESSAGE_ID, "message_id": MESSAGE_ID, "mode": "completion",
    "answer": "Bonjour", "metadata": {"usage": USAGE}, "created_at": CREATED_AT,
}
# Completion streams carry message_id and created_at, no conversation_id (CompletionAppStreamResponse).
COMPLETION_MESSAGE = frame({"event": "message", "message_id": MESSAGE_ID, "created_at": CREATED_AT,
                            "task_id": TASK_ID, "id": MESSAGE_ID, "answer": "Bonjour"})
COMPLETION_END = frame({"event": "message_end", "message_id": MESSAGE_ID, "created_at": CREATED_AT,
                        "task_id": TASK_ID, "id": MESSAGE_ID, "metadata": {"usage": USAGE}, "files": None})

MESSAGES_PAGE: dict[str, Any] = {
    "limit": 2, "has_more": True,
    "data": [
        {"id": OTHER_MESSAGE_ID, "conversation_id": CONVERSATION_ID, "parent_message_id": None,
         "inputs": {"name": "dify"}, "query": "iphone 13 pro", "answer": "The iPhone 13 Pro...",
         "feedback": {"rating": "like"}, "retriever_resources": [RESOURCE], "created_at": CREATED_AT,
         "agent_thoughts": [], "message_files": [], "status": "normal", "error": None, "extra_contents": []},
        {"id": MESSAGE_ID, "conversation_id": CONVERSATION_ID, "parent_message_id": OTHER_MESSAGE_ID,
         "inputs": {}, "query": "and the 14?", "answer": "It...", "feedback": None, "retriever_resources": [],
         "created_at": CREATED_AT + 9,
         "agent_thoughts": [{"id": THOUGHT_ID, "chain_id": None, "message_id": MESSAGE_ID, "position": 1,
                             "thought": "look it up", "tool": "search", "tool_labels": {"search": {"en_US": "S"}},
                             "tool_input": "{}", "created_at": CREATED_AT, "observation": "found", "files": []}],
         "message_files": [{"id": FILE_MSG_ID, "filename": "a.png", "type": "image", "url": "https://f/a.png",
                            "mime_type": "image/png", "size": 10, "transfer_method": "tool_file",
                            "belongs_to": "assistant", "upload_file_id": None}],
         "status": "normal", "error": None, "extra_contents": []},
    ],
}
CONVERSATIONS_PAGE: dict[str, Any] = {
    "limit": 1, "has_more": True,
    "data": [{"id": CONVERSATION_ID, "name": "New chat", "inputs": {"book": "book", "myName": "Lucy"},
              "status": "normal", "introduction": "", "created_at": CREATED_AT, "updated_at": CREATED_AT + 5}],
}
