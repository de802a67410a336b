"""Request checks in Dify's order and with Dify's words, because clients branch on them.

Messages are copied from the sources behind dify-api.md: ``BaseAppGenerator._validate_inputs``
for inputs, the ``validate_app_token`` wrapper for ``user``, Werkzeug's ``get_json`` for bodies,
and pydantic's own text for payload models (newer Dify validates payloads with pydantic and turns
the ``ValidationError`` into ``invalid_param`` verbatim).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request

from dify_provider.testing.errors import MISSING_USER, DifyError, invalid_param
from dify_provider.testing.models import EmulatedApp, InputField


# Class names matter: pydantic puts them in the messages Dify returns verbatim
# ("1 validation error for WorkflowRunPayload ...").
class WorkflowRunPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: dict[str, Any]
    files: list[dict[str, Any]] | None = None
    response_mode: Literal["blocking", "streaming"] | None = None


class FormSubmitPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: dict[str, Any]
    action: str
    user: str


class WorkflowLogQuery(BaseModel):
    keyword: str | None = None
    status: Literal["succeeded", "failed", "stopped"] | None = None
    created_at__before: str | None = None
    created_at__after: str | None = None
    created_by_end_user_session_id: str | None = None
    created_by_account: str | None = None
    page: int = Field(default=1, ge=1, le=99999)
    limit: int = Field(default=20, ge=1, le=100)


def _uuid_value(value: Any) -> str:
    """``libs.helper.uuid_value``."""
    if value == "":
        return str(value)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{value} is not a valid uuid.") from None


def _normalize_uuid(value: str) -> str:
    if not value:
        return ""
    try:
        return _uuid_value(value)
    except ValueError as exc:
        raise ValueError("must be a valid UUID") from exc


#: ``libs.helper.UUIDStrOrEmpty``.
UUIDStrOrEmpty = Annotated[str, AfterValidator(_normalize_uuid)]


class ChatRequestPayload(BaseModel):
    """``controllers/service_api/app/completion.py`` (1.13.2), validator and all."""

    inputs: dict[str, Any]
    query: str
    files: list[dict[str, Any]] | None = None
    response_mode: Literal["blocking", "streaming"] | None = None
    conversation_id: UUIDStrOrEmpty | None = Field(default=None, description="Conversation UUID")
    retriever_from: str = Field(default="dev")
    auto_generate_name: bool = Field(default=True, description="Auto generate conversation name")
    workflow_id: str | None = Field(default=None, description="Workflow ID for advanced chat")

    @field_validator("conversation_id", mode="before")
    @classmethod
    def normalize_conversation_id(cls, value: Any) -> str | None:
        if isinstance(value, str):
            value = value.strip()
        if not value:
            return None
        try:
            return _uuid_value(value)
        except ValueError as exc:
            raise ValueError("conversation_id must be a valid UUID") from exc


class CompletionRequestPayload(BaseModel):
    inputs: dict[str, Any]
    query: str = Field(default="")
    files: list[dict[str, Any]] | None = None
    response_mode: Literal["blocking", "streaming"] | None = None
    retriever_from: str = Field(default="dev")


class MessageListQuery(BaseModel):
    """``controllers/service_api/app/message.py``."""

    conversation_id: UUIDStrOrEmpty
    first_id: UUIDStrOrEmpty | None = None
    limit: int = Field(default=20, ge=1, le=100, description="Number of messages to return")


class ConversationListQuery(BaseModel):
    """``controllers/service_api/app/conversation.py``."""

    last_id: UUIDStrOrEmpty | None = Field(default=None, description="Last conversation ID for pagination")
    limit: int = Field(default=20, ge=1, le=100, description="Number of conversations to return")
    sort_by: Literal["created_at", "-created_at", "updated_at", "-updated_at"] = Field(
        default="-updated_at", description="Sort order for conversations"
    )


RunPayload = WorkflowRunPayload
LogQuery = WorkflowLogQuery

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_param(str(exc)) from None
    except (AttributeError, TypeError):  # a validator choking on a non-string: Flask's generic 500
        raise DifyError(500, "unknown", "Internal Server Error") from None


async def json_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise DifyError.http(
            415,
            "Did not attempt to load JSON data because the request Content-Type was not 'application/json'.",
        )
    raw = await request.body()
    try:
        data = json.loads(raw)
    except ValueError:
        # 1.13.2 answers an empty body and broken JSON alike with Werkzeug's plain BadRequest.
        raise DifyError.http(400) from None
    if not isinstance(data, dict):
        # Dify calls .get("user") on it and fails with a generic 500.
        raise DifyError(500, "unknown", "Internal Server Error")
    return data


#: ``DefaultEndUserSessionID``: the end user of a request that names none where ``user`` is optional.
DEFAULT_USER = "DEFAULT-USER"


def required_user(value: Any) -> str:
    if not value:
        raise invalid_param(MISSING_USER)
    return str(value)


def _check(field: InputField, value: Any) -> Any:
    name = field.variable
    if field.type in ("text-input", "select", "paragraph") and not isinstance(value, str):
        raise invalid_param(f"(type '{field.type}') {name} in input form must be a string")
    if field.type == "number" and isinstance(value, str):
        if not value.strip():
            return field.default
        try:
            return float(value) if "." in value else int(value)
        except ValueError:
            raise invalid_param(f"{name} in input form must be a valid number") from None
    if field.type == "select" and value not in field.options:
        raise invalid_param(f"{name} in input form must be one of the following: {list(field.options)}")
    if field.type in ("text-input", "paragraph") and field.max_length and len(value) > field.max_length:
        raise invalid_param(f"{name} in input form must be less than {field.max_length} characters")
    if field.type == "file" and not isinstance(value, dict):
        raise invalid_param(f"{name} in input form must be a file")
    if field.type == "file-list" and not (isinstance(value, list) and all(isinstance(item, dict) for item in value)):
        raise invalid_param(f"{name} in input form must be a list of files")
    return value.replace("\x00", "") if isinstance(value, str) else value


def validate_inputs(app: EmulatedApp, given: dict[str, Any]) -> dict[str, Any]:
    """Keep exactly the app's declared variables (Dify drops unknown keys), validated."""
    inputs: dict[str, Any] = {}
    for field in app.inputs:
        value = given.get(field.variable)
        if value is None:
            if field.required:
                raise invalid_param(f"{field.variable} is required in input form")
            inputs[field.variable] = field.default
            continue
        inputs[field.variable] = _check(field, value)
    return inputs
