"""What the Chenyu emulator remembers: run orders, how they unfold, and scripted faults.

Runs advance **one step per progress read**, not with wall-clock time: the n-th read of a run
order sees the next state (queued with a shrinking position, then running with a rising percent
and one more log line, then the scripted end). A test therefore decides how far a run gets by
how often it is polled (or holds it with ``hold=True`` and ends it with ``finish``), and never
sleeps for time it could control. Timestamps and durations are real (UTC) times.

Chenyu documents neither how a run order is created nor how one is cancelled, so runs are
created only from the test (Python API or the ``/_emulator`` admin routes), never by a made-up
public endpoint. Error bodies other than the documented ``TASK_NOT_FOUND`` (401, 400) follow
the documented envelope but are this emulator's guesses.

Thread safety: handlers (server loop) and control calls (test thread) mutate under ``cond`` and
notify it, so a test can wait for a status or a request count without polling.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dify_provider.testing.recording import RequestLog

T = TypeVar("T")
ChenyuFinal = Literal["succeeded", "failed", "canceled"]
ChenyuFaultKind = Literal["http_error", "envelope_error", "malformed_json", "reset"]
TERMINAL = frozenset({"succeeded", "failed", "canceled"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChenyuScenario(_Frozen):
    """How one run order unfolds, one step per progress read.

    ``queue_polls`` reads see it queued (position counting down to 1), the next ``steps`` reads
    see it running (percent rising, one log line each), then it ends with ``status``. With
    ``hold=True`` it stays running at its last step until :meth:`ChenyuEmulator.finish`.
    """

    queue_polls: int = Field(default=2, ge=0)
    steps: int = Field(default=3, ge=1)
    status: ChenyuFinal = "succeeded"
    hold: bool = False
    outputs: dict[str, Any] | None = None
    #: ``data.error.reason`` of a failed (or canceled) run.
    error: str | None = None
    #: Seconds a queued run is told to wait per position ahead of it.
    wait_per_position: float = Field(default=15.0, ge=0)
    compute_cost_per_step: float = Field(default=0.0001, ge=0)
    external_model_cost: float = Field(default=0.0, ge=0)
    workflow_id: str | None = None


class ChenyuFault(_Frozen):
    """One scripted misbehaviour of the progress endpoint; faults fire in order, each ``times``
    times (``None``: until reset), before authentication, as a broken proxy or engine would."""

    kind: ChenyuFaultKind
    times: int | None = Field(default=1, ge=1)
    #: HTTP status of the answer.
    status: int = Field(default=503, ge=200, le=599)
    retry_after: int | None = Field(default=None, ge=0)
    #: Raw body (e.g. a proxy's HTML page) instead of an envelope.
    body: str | None = None
    #: Envelope ``code`` and ``msg``, and ``data.error`` fields, of an error envelope.
    code: int = 1
    msg: str | None = None
    reason: str | None = None
    detail: str | None = None
    engine_code: str | None = None
    status_code: int | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.kind == "envelope_error" and self.code == 0:
            raise ValueError("an envelope error needs code != 0")
        return self

    @classmethod
    def http_error(cls, status: int = 503, *, body: str | None = None, retry_after: int | None = None,
                   times: int | None = 1) -> ChenyuFault:
        """An HTTP error with an error envelope (or ``body``, e.g. an nginx HTML page)."""
        return cls(kind="http_error", status=status, body=body, retry_after=retry_after, times=times)

    @classmethod
    def too_many_requests(cls, *, retry_after: int | None = None, times: int | None = 1) -> ChenyuFault:
        return cls(kind="http_error", status=429, retry_after=retry_after, times=times, reason="Too many requests.")

    @classmethod
    def envelope_error(cls, *, code: int = 1, msg: str = "Execution engine error.", reason: str | None = None,
                       detail: str | None = None, engine_code: str | None = "ENGINE_ERROR",
                       status_code: int | None = 500, http_status: int = 200, times: int | None = 1) -> ChenyuFault:
        """``code != 0`` (by default with HTTP 200): the engine is unavailable or erred."""
        return cls(kind="envelope_error", status=http_status, code=code, msg=msg, reason=reason or msg,
                   detail=detail, engine_code=engine_code, status_code=status_code, times=times)

    @classmethod
    def task_not_found(cls, *, times: int | None = 1) -> ChenyuFault:
        """The documented ``TASK_NOT_FOUND`` answer, even for an existing run order."""
        return cls(kind="envelope_error", status=200, code=1, msg="Task not found.", reason="Task not found.",
                   detail="execution task does not exist", engine_code="TASK_NOT_FOUND", status_code=404,
                   times=times)

    @classmethod
    def malformed_json(cls, *, times: int | None = 1) -> ChenyuFault:
        """HTTP 200 with a JSON body cut in half."""
        return cls(kind="malformed_json", status=200, times=times)

    @classmethod
    def reset(cls, *, times: int | None = 1) -> ChenyuFault:
        """A TCP reset instead of any answer."""
        return cls(kind="reset", times=times)

    def error_body(self) -> dict[str, Any]:
        status_code = self.status_code if self.kind == "envelope_error" else self.status
        return envelope_error(self.code if self.kind == "envelope_error" else self.status,
                              self.msg or self.reason or "Service unavailable.",
                              reason=self.reason or self.msg, detail=self.detail,
                              engine_code=self.engine_code, status_code=status_code)


def envelope_error(code: int, msg: str, *, reason: str | None, detail: str | None, engine_code: str | None,
                   status_code: int | None) -> dict[str, Any]:
    error = {"reason": reason, "detail": detail, "engine_code": engine_code, "status_code": status_code}
    return {"code": code, "msg": msg, "data": {"error": error}}


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class ChenyuRun:
    """One run order's state (mutated under the state's lock only)."""

    run_order_id: str
    task_id: str
    workflow_id: str
    scenario: ChenyuScenario
    media_url: str
    created_at: float = field(default_factory=time.time)
    status: str = "queued"
    position: int = 0
    step: int = 0
    reads: int = 0
    started_at: float | None = None
    terminal_at: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.position = self.scenario.queue_polls
        if self.position:
            self._log("execution_queued", f"queued at position {self.position}")
        else:
            self._start()

    # -- progression ----------------------------------------------------------------------

    @property
    def percent(self) -> float:
        if self.status == "succeeded":
            return 100.0
        return round(100.0 * max(0, self.step - 1) / self.scenario.steps, 1)

    @property
    def held(self) -> bool:
        return self.status == "running" and self.scenario.hold and self.step >= self.scenario.steps

    def advance(self) -> None:
        """One step forward: what the next progress read will see."""
        if self.status == "queued":
            if self.position > 1:
                self.position -= 1
            else:
                self._start()
        elif self.status == "running" and self.step < self.scenario.steps:
            self.step += 1
            node = self.step - 1
            self._log("node_succeeded", f"node n{node} finished", node_id=f"n{node}")
        elif self.status == "running" and not self.scenario.hold:
            self.finish(self.scenario.status, None, self.scenario.error)

    def _start(self) -> None:
        self.status, self.position, self.step, self.started_at = "running", 0, 1, time.time()
        self._log("execution_start", "execution started")

    def finish(self, status: str, outputs: dict[str, Any] | None, error: str | None) -> None:
        if status not in TERMINAL:
            raise ValueError(f"status must be one of {sorted(TERMINAL)}, got {status!r}")
        if self.status in TERMINAL:
            raise ValueError(f"run order {self.run_order_id} already ended ({self.status})")
        if self.started_at is None:
            self.started_at = time.time()
        node = f"n{max(1, self.step)}"
        if status == "succeeded":
            self.step = self.scenario.steps + 1
            self.outputs = dict(outputs if outputs is not None else self.scenario.outputs or self._default_outputs())
            self._log("node_succeeded", f"node {node} finished", node_id=node)
            self.status = status
            self._log("execution_success", "execution succeeded")
        elif status == "failed":
            reason = error or f"Node {node} failed"
            self.error = {"reason": reason, "detail": f"node {node} raised an error: {reason}",
                          "engine_code": "NODE_EXECUTION_FAILED", "status_code": 500}
            self._log("node_failed", reason, node_id=node, level="error")
            self.status = status
            self._log("execution_failed", "execution failed", level="error")
        else:
            self.error = {"reason": error or "Canceled by user.", "detail": "the run order was canceled",
                          "engine_code": "CANCELED", "status_code": 499}
            self.status = status
            self._log("execution_canceled", "execution canceled", level="warning")
        self.terminal_at = time.time()

    def _default_outputs(self) -> dict[str, Any]:
        return {"text": f"output of {self.run_order_id}", "n9_images": f"{self.media_url}/{self.run_order_id}.png"}

    def _log(self, event_type: str, message: str, *, node_id: str | None = None, level: str = "info") -> None:
        self.logs.append({"at": _iso(time.time()), "event_type": event_type, "level": level, "message": message,
                          "node_id": node_id, "progress_percent": self.percent})

    # -- answers --------------------------------------------------------------------------

    def data(self) -> dict[str, Any]:
        """``data`` of the progress answer, as Chenyu documents it."""
        scenario = self.scenario
        done = min(max(0, self.step - 1), scenario.steps)
        compute = round(done * scenario.compute_cost_per_step, 10)
        external = round(scenario.external_model_cost * done / scenario.steps, 10)
        end = self.terminal_at or time.time()
        queue = None
        if self.status == "queued":
            queue = {"position": self.position, "estimated_wait_sec": self.position * scenario.wait_per_position}
        return {
            "task_id": self.task_id,
            "workflow_id": self.workflow_id,
            "status": self.status,
            "queue_info": queue,
            "progress_percent": self.percent,
            "progress_snapshot": {
                "internal_status": self.status,
                "completed_node_count": done,
                "total_runnable_nodes": scenario.steps,
                "last_event_type": self.logs[-1]["event_type"] if self.logs else None,
            },
            "logs": [dict(entry) for entry in self.logs],
            "actual_execution_duration_sec": round(end - self.started_at, 3) if self.started_at else 0,
            "compute_cost": compute,
            "external_model_cost": external,
            "total_cost": round(compute + external, 10),
            "outputs": dict(self.outputs),
            "error": dict(self.error) if self.error else None,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "terminal_at": _iso(self.terminal_at),
        }


class ChenyuState:
    """Run orders, pending faults and the request log of one emulator."""

    def __init__(self, api_key: str, media_url: str) -> None:
        self.api_key = api_key
        self.media_url = media_url
        self.cond = threading.Condition()
        self.requests = RequestLog(self.cond)
        self.runs: dict[str, ChenyuRun] = {}
        self._faults: deque[list[Any]] = deque()  # [fault, firings left or None]

    def create_run(self, scenario: ChenyuScenario | None = None) -> ChenyuRun:
        scenario = scenario or ChenyuScenario()
        with self.cond:
            run = ChenyuRun(
                run_order_id=f"wfrun_{secrets.token_hex(10)}",
                task_id=f"task_{time.time_ns()}_{secrets.token_hex(8)}",
                workflow_id=scenario.workflow_id or f"wf_{secrets.token_hex(10)}",
                scenario=scenario,
                media_url=self.media_url,
            )
            self.runs[run.run_order_id] = run
            self.cond.notify_all()
        return run

    def read(self, run_order_id: str) -> dict[str, Any] | None:
        """One progress read: the current state, then one step forward."""
        with self.cond:
            run = self.runs.get(run_order_id)
            if run is None:
                return None
            run.reads += 1
            data = run.data()
            run.advance()
            self.cond.notify_all()
            return data

    def peek(self, run_order_id: str) -> dict[str, Any]:
        with self.cond:
            return self._run(run_order_id).data()

    def finish(self, run_order_id: str, status: str, outputs: dict[str, Any] | None, error: str | None) -> None:
        with self.cond:
            self._run(run_order_id).finish(status, outputs, error)
            self.cond.notify_all()

    def _run(self, run_order_id: str) -> ChenyuRun:
        run = self.runs.get(run_order_id)
        if run is None:
            raise KeyError(f"no run order {run_order_id!r}")
        return run

    def add_fault(self, fault: ChenyuFault) -> None:
        with self.cond:
            self._faults.append([fault, fault.times])

    def take_fault(self) -> ChenyuFault | None:
        with self.cond:
            if not self._faults:
                return None
            slot = self._faults[0]
            if slot[1] is not None:
                slot[1] -= 1
                if slot[1] == 0:
                    self._faults.popleft()
            fault: ChenyuFault = slot[0]
            return fault

    def reset(self) -> None:
        with self.cond:
            self.runs.clear()
            self._faults.clear()
            self.requests.clear()
            self.cond.notify_all()

    def wait(self, check: Callable[[], T | None], timeout: float) -> T | None:
        """Block the calling (test) thread until ``check`` returns something, or time out."""
        with self.cond:
            self.cond.wait_for(lambda: check() is not None, timeout)
            return check()
