"""Real-shaped Dify bodies, copied from /work/shared/docs/dify-api.md sections 3, 4 and 6."""

from __future__ import annotations

import json
from typing import Any

from ._harness import APP_ID, FILE_ID, RUN_ID, TASK_ID, WORKFLOW_UUID

CREATED_AT = 1705407629  # 2024-01-16 12:20:29 UTC
FINISHED_AT = 1705407630

# 3.3: inputs is a JSON-encoded string with the system variables; outputs an object.
RUN_INPUTS = {
    "query": "hello",
    "sys.files": [],
    "sys.user_id": "airflow",
    "sys.app_id": APP_ID,
    "sys.workflow_id": WORKFLOW_UUID,
    "sys.workflow_run_id": RUN_ID,
}
RUN_DETAIL: dict[str, Any] = {
    "id": RUN_ID,
    "workflow_id": WORKFLOW_UUID,
    "status": "succeeded",
    "inputs": json.dumps(RUN_INPUTS),
    "outputs": {"text": "Hello there!"},
    "error": None,
    "total_steps": 3,
    "total_tokens": 150,
    "created_at": CREATED_AT,
    "finished_at": FINISHED_AT,
    "elapsed_time": 1.23,
}
# 3.3, observed while running (~1.3): totals filled in at finish.
RUN_DETAIL_RUNNING: dict[str, Any] = {
    **RUN_DETAIL,
    "status": "running",
    "outputs": {},
    "total_steps": 0,
    "total_tokens": 0,
    "finished_at": None,
    "elapsed_time": 0.0,
}
# 3.3, early-2024 servers: unknown id -> HTTP 200 with every field null.
RUN_DETAIL_ALL_NULL: dict[str, Any] = dict.fromkeys(RUN_DETAIL)

# 3.2: a node failure is HTTP 200 with data.status "failed".
BLOCKING_FAILED: dict[str, Any] = {
    "task_id": TASK_ID,
    "workflow_run_id": RUN_ID,
    "data": {
        "id": RUN_ID,
        "workflow_id": WORKFLOW_UUID,
        "status": "failed",
        "outputs": None,
        "error": "Node LLM run failed: [openai] Rate limit reached",
        "elapsed_time": 1.23,
        "total_tokens": 150,
        "total_steps": 3,
        "created_at": CREATED_AT,
        "finished_at": FINISHED_AT,
    },
}
BLOCKING_SUCCEEDED: dict[str, Any] = {
    **BLOCKING_FAILED,
    "data": {**BLOCKING_FAILED["data"], "status": "succeeded", "outputs": {"text": "Hello there!"}, "error": None},
}

# 3.5
LOGS_PAGE: dict[str, Any] = {
    "page": 1,
    "limit": 20,
    "total": 1,
    "has_more": False,
    "data": [
        {
            "id": "5a8e3c2b-1f4d-4e6a-9b7c-0d1e2f3a4b5c",
            "workflow_run": {
                "id": RUN_ID,
                "version": "2024-01-16 12:00:00.000000",
                "status": "succeeded",
                "error": None,
                "elapsed_time": 1.23,
                "total_tokens": 150,
                "total_steps": 3,
                "created_at": CREATED_AT,
                "finished_at": FINISHED_AT,
                "exceptions_count": 0,
                "triggered_from": "app-run",
            },
            "created_from": "service-api",
            "created_by_role": "end_user",
            "created_by_account": None,
            "created_by_end_user": {
                "id": "0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e",
                "type": "service-api",
                "is_anonymous": False,
                "session_id": "airflow",
            },
            "details": None,
            "created_at": CREATED_AT,
        }
    ],
}

# 3.9
APP_INFO: dict[str, Any] = {
    "name": "Summarise tickets",
    "description": "Summarises support tickets",
    "tags": ["support"],
    "mode": "workflow",
    "author_name": "Ada",
}
APP_PARAMETERS: dict[str, Any] = {
    "opening_statement": "",
    "suggested_questions": [],
    "suggested_questions_after_answer": {"enabled": False},
    "speech_to_text": {"enabled": False},
    "text_to_speech": {"enabled": False, "voice": "", "language": "", "autoPlay": "disabled"},
    "retriever_resource": {"enabled": False},
    "annotation_reply": {"enabled": False},
    "more_like_this": {"enabled": False},
    "sensitive_word_avoidance": {"enabled": False},
    "user_input_form": [
        {"text-input": {"label": "Query", "variable": "query", "required": True, "max_length": 48, "default": ""}},
        {"paragraph": {"label": "Context", "variable": "context", "required": False, "default": ""}},
        {"select": {"label": "Tone", "variable": "tone", "required": True, "default": "formal",
                    "options": ["formal", "casual"]}},
    ],
    "file_upload": {"image": {"enabled": False, "number_limits": 3, "detail": "high",
                              "transfer_methods": ["remote_url", "local_file"]}},
    "system_parameters": {"file_size_limit": 15, "image_file_size_limit": 10, "audio_file_size_limit": 50,
                          "video_file_size_limit": 100, "workflow_file_upload_limit": 10},
}

# section 1, GET / (no auth)
SERVER_INFO: dict[str, Any] = {"welcome": "Dify OpenAPI", "api_version": "v1", "server_version": "1.13.0"}

# 3.8, HTTP 201
UPLOADED: dict[str, Any] = {
    "id": FILE_ID,
    "reference": None,
    "name": "report.pdf",
    "size": 12,
    "extension": "pdf",
    "mime_type": "application/pdf",
    "created_by": "0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e",
    "created_at": CREATED_AT,
    "preview_url": None,
    "source_url": "https://upload.dify.ai/files/72fa9618/file-preview?timestamp=1&nonce=2&sign=3",
    "original_url": None,
    "user_id": None,
    "tenant_id": "6f3e2d1c-0b9a-8f7e-6d5c-4b3a2f1e0d9c",
    "conversation_id": None,
    "file_key": None,
}

# 3.4
STOP_OK: dict[str, Any] = {"result": "success"}


# section 6: error envelopes
def envelope(status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "status": status, **extra}


AUTH_MESSAGES = (
    "Authorization header must be provided and start with 'Bearer'",
    "Authorization scheme must be 'Bearer'",
    "Access token is invalid",
)
TOO_MANY = envelope(429, "too_many_requests",
                    "Too many requests. Please try again later. The current maximum concurrent requests allowed is 2.")
QUOTA = envelope(429, "rate_limit_error", "Workflow execution quota limit reached for tenant 6f3e2d1c")
INTERNAL = envelope(500, "internal_server_error", "Internal Server Error, please contact support.")
NOT_FOUND = envelope(404, "not_found", "Workflow run not found.")
NOT_WORKFLOW_APP = envelope(400, "not_workflow_app", "Please check if your app mode matches the right API route.")
INVALID_USER = envelope(400, "invalid_param", "Arg user must be provided.", params="user")
APP_UNAVAILABLE = envelope(400, "app_unavailable", "App unavailable, please check your app configurations.")
FORBIDDEN = envelope(403, "forbidden", "The app's API service has been disabled.")
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

# --- 4.2: stream events ------------------------------------------------------------------------

WORKFLOW_STARTED: dict[str, Any] = {
    "event": "workflow_started",
    "task_id": TASK_ID,
    "workflow_run_id": RUN_ID,
    "data": {"id": RUN_ID, "workflow_id": WORKFLOW_UUID, "inputs": {"query": "hello"},
             "created_at": CREATED_AT, "reason": "initial"},
}
NODE_STARTED: dict[str, Any] = {
    "event": "node_started",
    "task_id": TASK_ID,
    "workflow_run_id": RUN_ID,
    "data": {"id": "d1b7a2c3-0000-4000-8000-000000000001", "node_id": "llm", "node_type": "llm",
             "title": "LLM", "index": 1, "predecessor_node_id": "start", "inputs": None,
             "inputs_truncated": False, "created_at": CREATED_AT, "extras": {}, "iteration_id": None,
             "loop_id": None},
}
REASONING_CHUNK: dict[str, Any] = {  # not modelled by the library: must come through as StreamEvent
    "event": "reasoning_chunk",
    "task_id": TASK_ID,
    "workflow_run_id": RUN_ID,
    "message_id": None,
    "data": {"reasoning": "The user greets me.", "node_id": "llm", "is_final": False},
}
TEXT_CHUNK: dict[str, Any] = {
    "event": "text_chunk",
    "task_id": TASK_ID,
    "workflow_run_id": RUN_ID,
    "data": {"text": "Héllo ☃ there!", "from_variable_selector": ["llm", "text"]},
}
NODE_FINISHED: dict[str, Any] = {
    "event": "node_finished",
    "task_id": TASK_ID,
    "workflow_run_id": RUN_ID,
    "data": {"id": "d1b7a2c3-0000-4000-8000-000000000001", "node_id": "llm", "node_type": "llm",
             "title": "LLM", "index": 1, "predecessor_node_id": "start", "inputs": {},
             "process_data": {}, "outputs": {"text": "Héllo ☃ there!"}, "status": "succeeded", "error": None,
             "elapsed_time": 1.1, "execution_metadata": {"total_tokens": 150, "total_price": "0.0003",
                                                          "currency": "USD"},
             "created_at": CREATED_AT, "finished_at": FINISHED_AT, "files": [], "iteration_id": None,
             "loop_id": None},
}
WORKFLOW_FINISHED: dict[str, Any] = {
    "event": "workflow_finished",
    "task_id": TASK_ID,
    "workflow_run_id": RUN_ID,
    "data": {"id": RUN_ID, "workflow_id": WORKFLOW_UUID, "status": "succeeded",
             "outputs": {"text": "Héllo ☃ there!"}, "error": None, "elapsed_time": 1.23, "total_tokens": 150,
             "total_steps": 3, "created_at": CREATED_AT, "finished_at": FINISHED_AT,
             "created_by": {"id": "0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e", "user": "airflow"},
             "exceptions_count": 0, "files": []},
}
HUMAN_INPUT_REQUIRED: dict[str, Any] = {
    "event": "human_input_required",
    "task_id": TASK_ID,
    "workflow_run_id": RUN_ID,
    "data": {"form_id": "f-1", "form_token": "tok-1", "node_id": "approve", "node_title": "Approve",
             "form_content": "Approve?", "inputs": [], "actions": [{"id": "ok", "title": "OK",
                                                                    "button_style": "primary"}],
             "display_in_ui": True, "resolved_default_values": {}, "expiration_time": None},
}
WORKFLOW_PAUSED: dict[str, Any] = {
    "event": "workflow_paused",
    "task_id": TASK_ID,
    "workflow_run_id": RUN_ID,
    "data": {"workflow_run_id": RUN_ID, "paused_nodes": ["approve"], "outputs": {},
             "reasons": [{"TYPE": "human_input_required", "form_token": "tok-1"}], "status": "paused",
             "created_at": CREATED_AT, "elapsed_time": 0.5, "total_tokens": 0, "total_steps": 2},
}
ERROR_INVALID_PARAM: dict[str, Any] = {
    "event": "error",
    "workflow_run_id": RUN_ID,
    "status": 400,
    "code": "invalid_param",
    "message": "query is required in input form",
}
ERROR_INTERNAL: dict[str, Any] = {
    "event": "error",
    "workflow_run_id": RUN_ID,
    "status": 500,
    "code": "internal_server_error",
    "message": "Internal Server Error, please contact support.",
}
