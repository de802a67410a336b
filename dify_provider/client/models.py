"""Typed shapes of the Dify service API responses (dify-api.md sections 3 and 4).

Models are lenient where Dify is inconsistent across versions (extra fields ignored, nullable
numbers, ``inputs``/``outputs`` sometimes JSON-encoded strings) and strict where a wrong value
would mislead a caller (ids and statuses must be present on a run).
"""

# No ``from __future__ import annotations`` here: pydantic would have to evaluate every field's
# annotation string when the classes are created, i.e. at every DAG parse (see bench/).
import json
from datetime import UTC, datetime
from typing import Any, Literal

import pendulum
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dify_provider.client.status import WorkflowRunStatus, is_terminal, parse_status
from dify_provider.client.version import parse_version


class DifyModel(BaseModel):
    # defer_build: a model's validator is built when first used, not when this module is
    # imported. DAG files import the operator at every parse and never validate a response, so
    # building ~20 validators there was most of the provider's parse-time cost (see bench/).
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)


def _json_object(value: Any) -> dict[str, Any]:
    """Dify stores inputs/outputs as a Text column; some versions return it undecoded."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"value": value}
    return value if isinstance(value, dict) else {"value": value}


def _timestamp(value: int | float | None) -> pendulum.DateTime | None:
    return None if value is None else pendulum.from_timestamp(value, tz="UTC")


def _iso(value: int | float | None) -> str | None:
    """The same string as ``_timestamp(value).isoformat()``, without building a pendulum object:
    the summary is computed at every poll, and pendulum's constructor was most of its cost."""
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


class _Status(DifyModel):
    status: WorkflowRunStatus | str

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> WorkflowRunStatus | str:
        return parse_status(str(value))

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.status)

    @property
    def status_known(self) -> bool:
        return isinstance(self.status, WorkflowRunStatus)


class _Timed(DifyModel):
    #: Raw Unix seconds as Dify sent them; the pendulum views below are derived from these.
    created_at: int | None = None
    finished_at: int | None = None

    @property
    def created(self) -> pendulum.DateTime | None:
        return _timestamp(self.created_at)

    @property
    def finished(self) -> pendulum.DateTime | None:
        return _timestamp(self.finished_at)


class WorkflowRun(_Status, _Timed):
    """``GET /workflows/run/{id}``: a run's persisted record."""

    id: str
    workflow_id: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    total_steps: int = 0
    total_tokens: int = 0
    elapsed_time: float = 0.0

    @field_validator("inputs", "outputs", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> dict[str, Any]:
        return _json_object(value)

    @field_validator("total_steps", "total_tokens", "elapsed_time", mode="before")
    @classmethod
    def _zero(cls, value: Any) -> Any:
        return 0 if value is None else value

    @property
    def app_id(self) -> str | None:
        value = self.inputs.get("sys.app_id")
        return value if isinstance(value, str) else None

    def summary(self) -> dict[str, Any]:
        """The JSON-safe view handed to XCom and trigger events: small, no inputs (they may be
        large or sensitive), timestamps as ISO strings."""
        return {
            "workflow_run_id": self.id,
            "workflow_id": self.workflow_id,
            "status": str(self.status),
            "outputs": self.outputs,
            "error": self.error,
            "total_tokens": self.total_tokens,
            "total_steps": self.total_steps,
            "elapsed_time": self.elapsed_time,
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at),
        }


class WorkflowRunResult(_Status, _Timed):
    """The ``data`` of a blocking run response, and of a ``workflow_finished`` event."""

    id: str
    workflow_id: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    elapsed_time: float = 0.0
    total_tokens: int = 0
    total_steps: int = 0
    exceptions_count: int | None = None

    @field_validator("outputs", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> dict[str, Any]:
        return _json_object(value)

    @field_validator("total_steps", "total_tokens", "elapsed_time", mode="before")
    @classmethod
    def _zero(cls, value: Any) -> Any:
        return 0 if value is None else value

    def as_run(self, inputs: dict[str, Any] | None = None) -> WorkflowRun:
        return WorkflowRun.model_validate({**self.model_dump(), "inputs": inputs or {}})


class BlockingRunResponse(DifyModel):
    """``POST /workflows/run`` with ``response_mode=blocking`` (also HTTP 200 for failed runs)."""

    task_id: str
    workflow_run_id: str
    data: WorkflowRunResult


# --- streaming events ---------------------------------------------------------------------


class StreamEvent(DifyModel):
    """Any SSE event. Types this library does not model are kept as this base class, not dropped:
    Dify adds event types often (``reasoning_chunk``, ``agent_log``, HITL events, ...)."""

    event: str
    task_id: str | None = None
    workflow_run_id: str | None = None
    #: Set on every event of a chat-family stream (chatflow's workflow and node events included).
    message_id: str | None = None
    conversation_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return False


class WorkflowStartedEvent(StreamEvent):
    event: Literal["workflow_started"] = "workflow_started"
    task_id: str
    workflow_run_id: str

    @property
    def inputs(self) -> dict[str, Any]:
        return _json_object(self.data.get("inputs"))


class NodeStartedEvent(StreamEvent):
    event: Literal["node_started"] = "node_started"


class NodeFinishedEvent(StreamEvent):
    event: Literal["node_finished"] = "node_finished"


class TextChunkEvent(StreamEvent):
    event: Literal["text_chunk"] = "text_chunk"


class HumanInputRequiredEvent(StreamEvent):
    event: Literal["human_input_required"] = "human_input_required"


class WorkflowPausedEvent(StreamEvent):
    event: Literal["workflow_paused"] = "workflow_paused"

    @property
    def is_terminal(self) -> bool:
        return True  # Dify closes the stream on pause; the run itself is not over.


class WorkflowFinishedEvent(StreamEvent):
    event: Literal["workflow_finished"] = "workflow_finished"

    @property
    def result(self) -> WorkflowRunResult:
        return WorkflowRunResult.model_validate(self.data)

    @property
    def is_terminal(self) -> bool:
        return True


class ErrorEvent(StreamEvent):
    """In-stream failure: the HTTP status stays 200, so this is the only signal."""

    event: Literal["error"] = "error"
    status: int = 500
    code: str = "internal_server_error"
    message: str = ""

    @property
    def is_terminal(self) -> bool:
        return True


_EVENT_TYPES: dict[str, type[StreamEvent]] = {
    cls.model_fields["event"].default: cls
    for cls in (
        WorkflowStartedEvent,
        NodeStartedEvent,
        NodeFinishedEvent,
        TextChunkEvent,
        HumanInputRequiredEvent,
        WorkflowPausedEvent,
        WorkflowFinishedEvent,
        ErrorEvent,
    )
}


def parse_event(payload: dict[str, Any]) -> StreamEvent:
    cls = _EVENT_TYPES.get(str(payload.get("event", "")), StreamEvent)
    return cls.model_validate(payload)


# --- other endpoints ----------------------------------------------------------------------


class ServerInfo(DifyModel):
    """``GET /`` of the API root: the only unauthenticated endpoint, used for version sniffing."""

    welcome: str | None = None
    api_version: str | None = None
    server_version: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return parse_version(self.server_version) or ()

    def at_least(self, *version: int) -> bool:
        return self.version_tuple >= version


class AppInfo(DifyModel):
    name: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    mode: str
    author_name: str | None = None


class InputVariable(DifyModel):
    """One entry of ``user_input_form``, flattened from ``{"<control>": {...}}``."""

    control: str
    variable: str
    label: str | None = None
    required: bool = False
    default: Any = None
    options: list[Any] = Field(default_factory=list)
    max_length: int | None = None

    def problem(self, value: Any) -> str | None:
        """Why Dify would refuse ``value`` for this variable, or None.

        The rules of Dify 1.13's ``BaseAppGenerator._validate_inputs``, checked here because in
        streaming mode a real 1.13.2 answers a refused input with silence (HTTP 200, one ping,
        nothing more) instead of its 400 message. Missing required values are reported by
        :meth:`AppParameters.input_problems` as one list.
        """
        name, control = self.variable, self.control
        if value is None or value == "":
            return None
        if control in ("text-input", "paragraph", "select") and not isinstance(value, str):
            return f"{name!r} must be a string ({control}), got {type(value).__name__}"
        if control == "number":
            if isinstance(value, str):
                try:
                    float(value) if "." in value else int(value)
                except ValueError:
                    return f"{name!r} must be a valid number, got {value!r}"
            elif not isinstance(value, int | float):
                return f"{name!r} must be a number, got {type(value).__name__}"
        if control == "select" and self.options and value not in self.options:
            return f"{name!r} must be one of {self.options!r}, got {value!r}"
        if control in ("text-input", "paragraph") and self.max_length and len(value) > self.max_length:
            return f"{name!r} must be at most {self.max_length} characters, got {len(value)}"
        if control == "file" and not isinstance(value, dict):
            return f"{name!r} must be a file object ({{'type', 'transfer_method', ...}})"
        if control == "file-list" and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            return f"{name!r} must be a list of file objects"
        return None


class AppParameters(DifyModel):
    user_input_form: list[dict[str, Any]] = Field(default_factory=list)
    file_upload: dict[str, Any] = Field(default_factory=dict)
    system_parameters: dict[str, Any] = Field(default_factory=dict)

    @property
    def variables(self) -> list[InputVariable]:
        found = []
        for item in self.user_input_form:
            for control, spec in item.items():
                if isinstance(spec, dict) and "variable" in spec:
                    found.append(InputVariable.model_validate({"control": control, **spec}))
        return found

    @property
    def required_variables(self) -> list[str]:
        return [v.variable for v in self.variables if v.required]

    def input_problems(self, inputs: dict[str, Any]) -> list[str]:
        """Everything in ``inputs`` Dify would refuse, in words that name the variable."""
        problems: list[str] = []
        missing = [name for name in self.required_variables if inputs.get(name) in (None, "")]
        if missing:
            problems.append(f"missing required workflow input(s) {', '.join(map(repr, missing))}")
        for variable in self.variables:
            problem = variable.problem(inputs.get(variable.variable))
            if problem:
                problems.append(problem)
        return problems


class StopResult(DifyModel):
    result: str


class EndUser(DifyModel):
    id: str | None = None
    type: str | None = None
    is_anonymous: bool | None = None
    session_id: str | None = None


class WorkflowLogRun(_Status, _Timed):
    id: str
    version: str | None = None
    error: str | None = None
    elapsed_time: float | None = None
    total_tokens: int | None = None
    total_steps: int | None = None
    exceptions_count: int | None = None
    triggered_from: str | None = None


class WorkflowLogEntry(DifyModel):
    id: str
    workflow_run: WorkflowLogRun
    created_from: str | None = None
    created_by_role: str | None = None
    created_by_end_user: EndUser | None = None
    created_at: int | None = None


class WorkflowLogPage(DifyModel):
    page: int
    limit: int
    total: int
    has_more: bool
    data: list[WorkflowLogEntry] = Field(default_factory=list)


class UploadedFile(DifyModel):
    id: str
    name: str
    size: int
    extension: str | None = None
    mime_type: str | None = None
    created_by: str | None = None
    created_at: int | None = None
    preview_url: str | None = None
    source_url: str | None = None


class ErrorEnvelope(DifyModel):
    code: str = "unknown"
    message: str = ""
    status: int | None = None
    params: str | None = None


ResponseMode = Literal["blocking", "streaming"]
