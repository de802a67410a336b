"""What the emulator hosts (apps), how their runs unfold (scenarios) and how it misbehaves (faults).

These are pydantic models so the same definitions serve Python tests, the admin HTTP API and the
CLI's ``--config`` JSON file, and a typo in any of them fails loudly instead of silently never
firing. The read-only views a test inspects (:class:`RunSnapshot`, :class:`RecordedRequest`) are
plain frozen dataclasses: they are copies, so a test can keep them while the server moves on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self, TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dify_provider.client.status import WorkflowRunStatus
from dify_provider.testing.forms import DEFAULT_FORM, FormSpec

AppMode = Literal["workflow", "advanced-chat", "chat", "agent-chat", "completion"]
InputType = Literal["text-input", "paragraph", "select", "number", "checkbox", "file", "file-list"]
ScenarioStatus = Literal["succeeded", "failed", "partial-succeeded", "stopped", "paused"]
FinalStatus = Literal["succeeded", "failed", "partial-succeeded", "stopped"]
FaultKind = Literal[
    "http_error", "drop", "reset", "delay", "malformed_json", "stream_silent", "stream_cut", "stream_error"
]
FaultPhase = Literal["before", "after", "stream"]

#: Namespace for the deterministic ids of default keys, app ids and end users, so an Airflow
#: connection written before the emulator starts (end-to-end tests) still points at the right app.
EMULATOR_NAMESPACE = uuid.UUID("5f0c3a8e-4d0b-4a53-9d6a-2f6f1a0e7c11")

_STREAM_KINDS = frozenset({"stream_silent", "stream_cut", "stream_error"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputField(_Frozen):
    """One entry of the app's start-node form, as ``GET /parameters`` lists it in ``user_input_form``."""

    variable: str
    type: InputType = "text-input"
    label: str = ""
    required: bool = False
    default: str | int | float | bool | None = None
    options: tuple[str, ...] = ()
    max_length: int | None = None


class NodeSpec(_Frozen):
    """One node of a :class:`Scenario` that spells its graph out (``Scenario(nodes=...)``), so the
    stream shows that app's own node ids, types and titles.

    ``text_chunks`` are ``text_chunk`` events the node streams as it runs: ``(text,
    from_variable_selector)`` pairs, the text formatted with the run's inputs and ``sys.*``
    variables (``"{query}"``, ``"{sys.query}"``; an unknown name formats as empty), as an LLM or an
    aggregator feeding the end node streams. In a chatflow they are the ``message`` chunks of the
    answer.
    ``hold=True`` keeps the run inside this node (``node_started`` sent, no ``node_finished``)
    until :meth:`DifyEmulator.release` lets it go on, or ``stop``/``finish`` end the run there:
    how a test stops a run in the middle of a long node without sleeping.
    """

    id: str = Field(min_length=1)
    type: str = "llm"
    title: str = ""
    seconds: float | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)
    #: ``execution_metadata.total_price`` (a decimal string); default: tokens x 0.000002 USD.
    price: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?$")
    text_chunks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    hold: bool = False


class Scenario(_Frozen):
    """How one run unfolds. Timing defaults are tiny so suites stay fast.

    ``status="paused"`` stops at a human-input node until the form is submitted (or
    :meth:`DifyEmulator.resume`, or timed out by :meth:`DifyEmulator.expire_form`), then runs
    ``steps_after_resume`` more nodes and ends ``after_resume``. ``forms`` scripts the pauses:
    one per :class:`~dify_provider.testing.forms.FormSpec`, in order, a generic node between two;
    a form's ``end_on`` action ends the run ``succeeded`` at once, and the run's outputs gain
    ``human_input`` (each answer by node id) and ``branch`` (the last action, or ``"timeout"``).
    Without ``forms`` the run asks one default form (a ``comment``, approve or reject) and its
    outputs stay the app's.

    ``hold=True`` keeps the run ``running`` after its nodes until the test calls
    :meth:`DifyEmulator.finish` (which then decides the outcome), so tests decide when time passes
    instead of sleeping (:meth:`DifyEmulator.release` lets it end with ``status`` instead).
    Totals: ``total_steps`` counts nodes *started* (as Dify's graph engine does, so a stopped run
    counts the node it was stopped in), ``total_tokens = tokens_per_step x nodes finished`` (the
    human-input node spends none).

    ``nodes`` replaces the ``steps`` generic nodes (``start``, ``llm_2``..., ``end``) with these
    (before the human-input node, for ``status="paused"``); with ``status="failed"`` the last one fails.

    Chat apps: a chatflow message is a run of this scenario (without ``nodes``: the app's own, or
    :data:`~dify_provider.testing.catalog.CHATFLOW_NODES`), whose LLM nodes alone spend tokens
    (the usage formula's, not ``tokens_per_step``); it pauses for its forms as a workflow does.
    A ``chat``/``agent-chat``/``completion`` message streams its answer chunks ``step_seconds``
    apart, then holds if ``hold``, then ends: ``status="failed"`` with ``error`` as an in-stream
    ``error`` event, any other status normally.
    """

    steps: int = Field(default=3, ge=1)
    step_seconds: float = Field(default=0.02, ge=0)
    status: ScenarioStatus = "succeeded"
    error: str | None = None
    outputs: dict[str, Any] | None = None
    tokens_per_step: int = Field(default=10, ge=0)
    hold: bool = False
    steps_after_resume: int = Field(default=1, ge=0)
    after_resume: FinalStatus = "succeeded"
    nodes: tuple[NodeSpec, ...] | None = Field(default=None, min_length=1)
    forms: tuple[FormSpec, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _check_forms(self) -> Self:
        if self.forms is None:
            return self
        if self.status != "paused":
            raise ValueError('forms are asked by a paused run: add status="paused"')
        node_ids = [form.node_id for form in self.forms]
        if len(set(node_ids)) != len(node_ids):
            raise ValueError(f"two forms share a node_id: {node_ids}")
        return self

    @property
    def pause_forms(self) -> tuple[FormSpec, ...]:
        """The forms a paused run asks, in order."""
        return self.forms if self.forms is not None else (DEFAULT_FORM,)


class FaultScope(TypedDict, total=False):
    """Where and how often a fault fires (shared keyword arguments of the :class:`Fault` helpers)."""

    endpoint: str | None
    app: str | None
    times: int | None
    after_run_created: bool


class Fault(_Frozen):
    """One scripted misbehaviour. Faults queue per endpoint (FIFO) and each fires ``times`` times.

    ``endpoint`` is ``"METHOD /path"`` as in dify-api.md (``"POST /workflows/run"``,
    ``"GET /workflows/run/{id}"``; placeholder names do not matter; ``None`` = every service-API
    endpoint). ``app`` limits the fault to requests made with that app's key. ``times=None`` fires
    until :meth:`DifyEmulator.reset`.

    ``after_run_created`` (run endpoints only) fires once the run exists, which is how a test
    builds the "ambiguous start": the client sees an error, a drop or a timeout, yet a run was
    started. Without it, a fault on a run endpoint rejects the request before any run is created.
    """

    kind: FaultKind
    endpoint: str | None = None
    app: str | None = None
    times: int | None = Field(default=1, ge=1)
    after_run_created: bool = False
    status: int = Field(default=500, ge=400, le=599)
    code: str | None = None
    message: str | None = None
    retry_after: int | None = Field(default=None, ge=0)
    body: str | None = None
    seconds: float | None = Field(default=None, ge=0)
    after_events: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.kind == "delay" and not self.seconds:
            raise ValueError("a delay fault needs seconds > 0")
        if self.after_run_created and self.kind in _STREAM_KINDS:
            raise ValueError("stream faults always fire after the run exists; drop after_run_created")
        return self

    @property
    def phase(self) -> FaultPhase:
        if self.kind in _STREAM_KINDS:
            return "stream"
        return "after" if self.after_run_created else "before"

    # Helpers: the common faults with Dify's own codes and messages filled in.

    @classmethod
    def too_many_requests(
        cls, *, retry_after: int | None = None, max_active_requests: int = 10, **scope: Unpack[FaultScope]
    ) -> Fault:
        """The app concurrency limit (``AppInvokeQuotaExceededError``); Dify itself sends no Retry-After."""
        message = (
            "Too many requests. Please try again later. "
            f"The current maximum concurrent requests allowed is {max_active_requests}."
        )
        return cls(
            kind="http_error",
            status=429,
            code="too_many_requests",
            message=message,
            retry_after=retry_after,
            **scope,
        )

    @classmethod
    def rate_limit(cls, *, message: str = "Rate Limit Error", **scope: Unpack[FaultScope]) -> Fault:
        """The Cloud workflow-execution quota (``InvokeRateLimitError``): not worth retrying."""
        return cls(kind="http_error", status=429, code="rate_limit_error", message=message, **scope)

    @classmethod
    def http_error(
        cls,
        status: int = 500,
        *,
        body: str | None = None,
        retry_after: int | None = None,
        **scope: Unpack[FaultScope],
    ) -> Fault:
        """A Werkzeug-style envelope for ``status`` (500 ``internal_server_error``, 502
        ``bad_gateway``, 503 ``service_unavailable``, 504 ``gateway_timeout``...); ``body`` replaces
        it with raw text, e.g. a proxy's HTML error page."""
        return cls(kind="http_error", status=status, body=body, retry_after=retry_after, **scope)

    @classmethod
    def drop(cls, **scope: Unpack[FaultScope]) -> Fault:
        """Headers with a Content-Length, half the body, then close: an incomplete response."""
        return cls(kind="drop", **scope)

    @classmethod
    def reset(cls, **scope: Unpack[FaultScope]) -> Fault:
        """A TCP reset (RST) instead of any response."""
        return cls(kind="reset", **scope)

    @classmethod
    def delay(cls, seconds: float, **scope: Unpack[FaultScope]) -> Fault:
        """Answer ``seconds`` late (to push a client past its read timeout)."""
        return cls(kind="delay", seconds=seconds, **scope)

    @classmethod
    def malformed_json(cls, **scope: Unpack[FaultScope]) -> Fault:
        """The real status with a truncated JSON body (a complete HTTP message that fails to parse)."""
        return cls(kind="malformed_json", **scope)

    @classmethod
    def silent_stream(cls, after_events: int = 0, seconds: float | None = None, **scope: Unpack[FaultScope]) -> Fault:
        """After ``after_events`` frames, send nothing (no data, no pings) for ``seconds`` (None:
        for good). The run itself carries on."""
        return cls(kind="stream_silent", after_events=after_events, seconds=seconds, **scope)

    @classmethod
    def cut_stream(cls, after_events: int = 0, **scope: Unpack[FaultScope]) -> Fault:
        """After ``after_events`` frames, write half of the next ``data:`` line and close."""
        return cls(kind="stream_cut", after_events=after_events, **scope)

    @classmethod
    def stream_error(
        cls,
        code: str = "internal_server_error",
        message: str = "Internal Server Error, please contact support.",
        *,
        status: int = 500,
        after_events: int = 1,
        **scope: Unpack[FaultScope],
    ) -> Fault:
        """After ``after_events`` frames, an in-stream ``error`` event and the end of the stream,
        with HTTP 200 already sent: how Dify reports a failure outside any node (a provider's
        quota, a crashed worker; dify-api.md section 4.4). The run ends ``failed`` with ``message``
        as its error. ``after_events=0`` sends it before ``workflow_started`` (after the opening
        ping), as later Dify does for invalid inputs (``Fault.stream_error("invalid_param", "text is
        required in input form", status=400, after_events=0)``; for every invalid-input stream:
        ``configure(streaming_input_errors="event")``): the client never learns the run's id. Frames
        are counted without pings."""
        return cls(kind="stream_error", code=code, message=message, status=status, after_events=after_events,
                   **scope)


OutputsFn = Callable[[Mapping[str, Any]], dict[str, Any]]


def echo_outputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The default behaviour: outputs derived from inputs, so tests can see data flow through."""
    text = str(inputs.get("text") or "")
    return {"text": text.upper(), "length": len(text), "echo": dict(inputs)}


class EmulatedApp(_Frozen):
    """One Dify app behind its own API key. Key, app id and workflow id default to values derived
    from ``name``, so they are stable across runs and processes."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(min_length=1)
    mode: AppMode = "workflow"
    api_key: str = ""
    app_id: str = ""
    workflow_id: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    author_name: str = "Dify Emulator"
    inputs: tuple[InputField, ...] = ()
    scenario: Scenario = Scenario()
    #: The answer of a ``chat``, ``agent-chat`` or ``completion`` app, chunk by chunk: templates over
    #: the inputs, ``sys.query`` and ``sys.dialogue_count`` (a chatflow's answer comes from its nodes).
    answer: tuple[str, ...] = ()
    #: The "citations" feature: answers cite :data:`~dify_provider.testing.chat_payloads.CITATION`.
    retriever_resource: bool = False
    #: Static outputs for every successful run; None derives them with ``outputs_fn``.
    outputs: dict[str, Any] | None = None
    outputs_fn: OutputsFn | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _derive_ids(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name"):
            name = str(data["name"])
            data = dict(data)
            data["api_key"] = data.get("api_key") or f"app-emulator-{name}"
            data["app_id"] = data.get("app_id") or str(uuid.uuid5(EMULATOR_NAMESPACE, f"app:{name}"))
            data["workflow_id"] = data.get("workflow_id") or str(uuid.uuid5(EMULATOR_NAMESPACE, f"workflow:{name}"))
        return data

    def compute_outputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        if self.outputs is not None:
            return dict(self.outputs)
        return (self.outputs_fn or echo_outputs)(inputs)


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """A copy of one run's state at the moment it was taken (``inputs`` without ``sys.*``)."""

    id: str
    task_id: str
    app: str
    user: str
    workflow_id: str
    status: WorkflowRunStatus
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    error: str | None
    created_at: int
    finished_at: int | None
    elapsed_time: float
    total_tokens: int
    total_steps: int
    #: The token of the form the run waits on (None: none waits, or it went out by email only).
    form_token: str | None
    held: bool
    orphaned: bool
    #: The status ``GET /workflows/run/{id}`` and the logs show, which on Dify 1.13.2 stays
    #: ``running`` for a run stopped through the stop API (``status`` says ``stopped``).
    api_status: WorkflowRunStatus | None = None
    #: A chatflow run's message and conversation (None for a workflow run).
    message_id: str | None = None
    conversation_id: str | None = None
    #: The node id of the form the run waits on (also for an email form, which has no token).
    form_node_id: str | None = None
    #: Forms answered so far (a timed-out one is not answered).
    forms_answered: int = 0


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the service API (``/v1``) or the web API (``/api``) received; the admin API
    is not recorded.

    ``body`` is the parsed JSON (or the raw text if it did not parse), ``form`` the multipart
    fields (files as ``{"filename", "content_type", "size"}``); ``app`` is the app whose key was
    presented (None for the web API, which takes none); ``fault`` the kind of fault that fired on
    it, if any.
    """

    seq: int
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    form: dict[str, Any] | None
    app: str | None
    received_at: float
    status: int | None
    fault: str | None
