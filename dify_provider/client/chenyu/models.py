"""Typed shapes of Chenyu's workflow-progress API (``GET /api/open/v2/workflow/run/execution``).

Lenient where a hosted API tends to drift (extra fields ignored, ``null`` for empty lists, maps
and numbers), strict where a wrong value would mislead a waiter: a progress answer without a
``status`` is refused. ISO-8601 timestamps become timezone-aware ``pendulum.DateTime`` objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import pendulum
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from dify_provider.client.chenyu.status import ChenyuRunStatus, parse_status


def _iso_datetime(value: Any) -> pendulum.DateTime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return pendulum.instance(value)
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO-8601 date-time string, got {type(value).__name__}")
    parsed = pendulum.parse(value)  # a string without an offset is read as UTC
    if not isinstance(parsed, pendulum.DateTime):
        raise ValueError(f"{value!r} is not a date-time")
    return parsed


IsoDateTime = Annotated[
    pendulum.DateTime | None,
    PlainValidator(_iso_datetime),
    PlainSerializer(lambda value: value.isoformat() if value is not None else None, return_type=str | None),
]


class ChenyuModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ChenyuErrorDetail(ChenyuModel):
    """``data.error``: why a request failed, or why a run failed."""

    reason: str | None = None
    detail: str | None = None
    #: e.g. ``TASK_NOT_FOUND``.
    engine_code: str | None = None
    #: An HTTP-like status the engine attaches (404 for an unknown run order).
    status_code: int | None = None

    def text(self) -> str:
        """``reason: detail``, without repeating a detail that only restates the reason."""
        reason = (self.reason or "").strip()
        detail = (self.detail or "").strip()
        if not detail or detail.rstrip(".") == reason.rstrip("."):
            return reason
        return f"{reason.rstrip('.')}: {detail}" if reason else detail


class QueueInfo(ChenyuModel):
    """Where a queued run stands."""

    position: int | None = None
    estimated_wait_sec: float | None = None


class EngineSnapshot(ChenyuModel):
    """``progress_snapshot``: the execution engine's own view. Unknown keys are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    internal_status: str | None = None
    completed_node_count: int | None = None
    total_runnable_nodes: int | None = None
    last_event_type: str | None = None


class RunLogEntry(ChenyuModel):
    """One line of the run's log."""

    at: IsoDateTime = None
    event_type: str | None = None
    level: str | None = None
    message: str = ""
    node_id: str | None = None
    progress_percent: float | None = None

    @field_validator("message", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return "" if value is None else str(value)


class RunProgress(ChenyuModel):
    """The ``data`` of a successful progress answer."""

    #: Not part of Chenyu's body: the id the caller asked about, set by the client.
    run_order_id: str | None = None
    task_id: str | None = None
    workflow_id: str | None = None
    status: ChenyuRunStatus | str
    queue_info: QueueInfo | None = None
    progress_percent: float = 0.0
    progress_snapshot: EngineSnapshot = Field(default_factory=EngineSnapshot)
    logs: list[RunLogEntry] = Field(default_factory=list)
    actual_execution_duration_sec: float | None = None
    compute_cost: float | None = None
    external_model_cost: float | None = None
    total_cost: float | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: ChenyuErrorDetail | None = None
    created_at: IsoDateTime = None
    started_at: IsoDateTime = None
    terminal_at: IsoDateTime = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> ChenyuRunStatus | str:
        if value is None or value == "":
            raise ValueError("a run's status is required")
        return parse_status(str(value))

    @field_validator("progress_percent", "progress_snapshot", "logs", "outputs", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        """``null`` for an empty list, map or number means the field's default, not an error."""
        if value is not None or info.field_name is None:
            return value
        return cls.model_fields[info.field_name].get_default(call_default_factory=True)

    @field_validator("error", mode="before")
    @classmethod
    def _error(cls, value: Any) -> Any:
        if value in (None, "", {}):
            return None
        return {"reason": value} if isinstance(value, str) else value

    @property
    def is_terminal(self) -> bool:
        return isinstance(self.status, ChenyuRunStatus) and self.status.is_terminal

    @property
    def status_known(self) -> bool:
        return isinstance(self.status, ChenyuRunStatus)

    @property
    def queued_sec(self) -> float | None:
        """Seconds between the order and the start of execution (time spent in the queue)."""
        return _seconds(self.created_at, self.started_at)

    @property
    def total_sec(self) -> float | None:
        """Seconds from the order to the end, queue included."""
        return _seconds(self.created_at, self.terminal_at)

    def summary(self) -> dict[str, Any]:
        """The JSON-safe view handed to XCom and trigger events: outputs, status, durations and
        the three cost figures; no logs (they go to the task log, and may be long)."""
        return {
            "run_order_id": self.run_order_id,
            "task_id": self.task_id,
            "workflow_id": self.workflow_id,
            "status": str(self.status),
            "outputs": self.outputs,
            "error": self.error.model_dump() if self.error else None,
            "progress_percent": self.progress_percent,
            "actual_execution_duration_sec": self.actual_execution_duration_sec,
            "queued_sec": self.queued_sec,
            "total_sec": self.total_sec,
            "compute_cost": self.compute_cost,
            "external_model_cost": self.external_model_cost,
            "total_cost": self.total_cost,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "terminal_at": _iso(self.terminal_at),
        }


class ChenyuEnvelope(ChenyuModel):
    """Every answer: ``{"code": int, "msg": str, "data": ...}``; ``code != 0`` is a failure."""

    code: int
    msg: str = ""
    data: Any = None

    @field_validator("msg", mode="before")
    @classmethod
    def _msg(cls, value: Any) -> str:
        return "" if value is None else str(value)

    def error(self) -> ChenyuErrorDetail | None:
        """``data.error`` of a failed answer, when it has one of the documented shape."""
        raw = self.data.get("error") if isinstance(self.data, dict) else None
        if not isinstance(raw, dict):
            return None
        try:
            return ChenyuErrorDetail.model_validate(raw)
        except ValidationError:  # an odd error body must not hide the failure it reports
            return None


def _seconds(start: pendulum.DateTime | None, end: pendulum.DateTime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _iso(value: pendulum.DateTime | None) -> str | None:
    return value.isoformat() if value is not None else None
