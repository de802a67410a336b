"""The server-side record of one workflow run and of the nodes and forms it goes through.

A :class:`Run` lives on the server's event loop; tests only ever see :class:`RunSnapshot` copies.
A paused run opens one :class:`PendingForm` per form its scenario asks (``Run.forms``, the last
one ``Run.form``); each has its own token, by which the routes find it (the service API's
``/v1/form/human_input/{token}`` in :mod:`~dify_provider.testing.routes.human_input`, Dify
1.13.2's web API ``/api/form/human_input/{token}`` in :mod:`~dify_provider.testing.routes.web`),
and the answers land in ``Run.answers`` (:mod:`~dify_provider.testing.form_state` drives it).
Its public numbers (``steps``, ``tokens``) count what has happened so far and ``status`` is the
truth; the API-facing builders in :mod:`payloads` decide what Dify would *show* (zeros until the
end, ``running`` for a run 1.13.2 stopped: ``api_status``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from dify_provider.client.status import TERMINAL_STATUSES, WorkflowRunStatus
from dify_provider.testing.forms import DEFAULT_FORM, FormSpec
from dify_provider.testing.models import EMULATOR_NAMESPACE, EmulatedApp, RunSnapshot, Scenario

if TYPE_CHECKING:
    from dify_provider.testing.chats import ChatMessage

#: A queued SSE item: an event dict, or None to close the stream (reset/shutdown).
Item = dict[str, Any] | None


class _Template(string.Formatter):
    """``str.format`` where a field is one name, dots included (``{sys.query}``), and an unknown
    name formats as empty."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        return kwargs.get(field_name, ""), field_name


_TEMPLATE = _Template()


def render(template: str, variables: Mapping[str, Any]) -> str:
    """A text-chunk or answer template formatted with a run's or message's variables."""
    return _TEMPLATE.vformat(template, (), variables)


def end_user_id(app: EmulatedApp, user: str) -> str:
    """Dify creates one EndUser per (app, ``user`` string); a stable id stands in for it."""
    return str(uuid.uuid5(EMULATOR_NAMESPACE, f"end-user:{app.app_id}:{user}"))


@dataclass(eq=False)
class Node:
    """One node execution, as ``node_started``/``node_finished`` describe it."""

    index: int
    node_id: str
    node_type: str
    title: str
    predecessor: str | None
    inputs: dict[str, Any]
    execution_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    status: str = "running"
    error: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    tokens: int = 0
    #: ``execution_metadata.total_price`` when the usage formula priced it (a chatflow's LLM node).
    price: str | None = None
    #: An LLM node's prompt tokens (the rest of ``tokens`` are completion); None: three quarters.
    prompt_tokens: int | None = None


@dataclass(eq=False)
class PendingForm:
    """A human-input form waiting for its one (first-wins) submission. ``expired``: it can no
    longer be answered (timed out, or its run ended); ``timed_out``: it took the timeout branch."""

    node: Node
    spec: FormSpec = DEFAULT_FORM
    #: The spec's content with the run's variables filled in as the form opened (Dify's
    #: ``rendered_content``: the ``$output`` placeholders wait for the answer).
    content: str = ""
    #: What the run's inputs made of the variable defaults when the form opened.
    resolved_defaults: dict[str, Any] = field(default_factory=dict)
    form_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    opened_at: float = field(default_factory=time.time)
    submitted: bool = False
    expired: bool = False
    timed_out: bool = False
    #: Once submitted: the action, and the content with the answer filled in.
    action: str | None = None
    answered_content: str | None = None

    @cached_property
    def token(self) -> str | None:
        """The web-app recipient's access token; an email-only form has none the run announces."""
        return secrets.token_urlsafe(16) if self.spec.delivery == "webapp" else None

    @property
    def expiration_time(self) -> int:
        return int(self.opened_at) + self.spec.ttl_seconds

    def answerable(self, now: float | None = None) -> bool:
        """Neither submitted nor expired (``ensure_form_active``: by status, then by the clock)."""
        now = time.time() if now is None else now
        return not self.submitted and not self.expired and now < self.expiration_time


@dataclass(eq=False)
class Run:
    id: str
    task_id: str
    app: EmulatedApp
    user: str
    inputs: dict[str, Any]
    files: list[Any]
    scenario: Scenario
    seq: int
    created_at: float = field(default_factory=time.time)
    status: WorkflowRunStatus = WorkflowRunStatus.RUNNING
    outputs: dict[str, Any] | None = None
    error: str | None = None
    steps: int = 0
    tokens: int = 0
    exceptions: int = 0
    finished_at: float | None = None
    held: bool = False
    orphaned: bool = False
    #: Stopped through the stop API on a server whose record then stays ``running`` (1.13.2).
    shows_running: bool = False
    #: 1.13.x: stops sent while the run was paused, which wait for its resumption: the stop API's
    #: flag (``stop_requested``) and the graph engine's stop command alone (``abort_reason``).
    stop_requested: bool = False
    abort_reason: str | None = None
    #: The status ``workflow_finished`` reports when it differs from the record's (an aborted run).
    stream_status: WorkflowRunStatus | None = None
    #: The chatflow message this run answers (None: a workflow run).
    message: ChatMessage | None = None
    #: The form asked last (the one waited on while paused), and every form asked, in order.
    form: PendingForm | None = None
    forms: list[PendingForm] = field(default_factory=list)
    #: Node id -> ``{"action", "action_text", "inputs"}`` of each answered form.
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The action of the last answered form, or ``"timeout"`` after a timed-out one.
    branch: str | None = None
    nodes: list[Node] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Index in ``events`` of the latest ``workflow_started`` (initial or resumption).
    segment_start: int = 0
    subscribers: set[asyncio.Queue[Item]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set by ``release()`` to let a held run (or held node) go on.
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def workflow_id(self) -> str:
        return self.app.workflow_id

    @property
    def end_user_id(self) -> str:
        return end_user_id(self.app, self.user)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @cached_property
    def sys_inputs(self) -> dict[str, Any]:
        """Inputs as Dify stores them: the user's, then the ``sys.*`` variables (observed order);
        a chatflow's add its query and turn (recording 75)."""
        inputs = {
            **self.inputs,
            "sys.files": self.files,
            "sys.user_id": self.user,
            "sys.app_id": self.app.app_id,
            "sys.workflow_id": self.workflow_id,
            "sys.workflow_run_id": self.id,
        }
        if self.message is not None:
            inputs.update({"sys.query": self.message.query, "sys.dialogue_count": self.message.turn})
        return inputs

    @cached_property
    def stored_inputs(self) -> dict[str, Any]:
        """What the start node reports: ``sys_inputs`` plus ``sys.timestamp`` (the run's start,
        Unix seconds) for a workflow; for a chatflow, ``sys.conversation_id`` before the turn."""
        if self.message is None:
            return {**self.sys_inputs, "sys.timestamp": int(self.created_at)}
        inputs = {k: v for k, v in self.sys_inputs.items() if k != "sys.dialogue_count"}
        return {**inputs, "sys.conversation_id": self.message.conversation.id, "sys.dialogue_count": self.message.turn}

    @cached_property
    def inputs_json(self) -> str:
        """The detail endpoint's ``inputs``: the Text column Dify filled with ``json.dumps`` (so
        non-ASCII comes back ``\\u``-escaped), computed once so polling stays cheap. A workflow's
        is the start node's inputs, a chatflow's those of ``workflow_started`` (recording 76)."""
        return json.dumps(self.stored_inputs if self.message is None else self.sys_inputs)

    @property
    def api_status(self) -> WorkflowRunStatus:
        """The status the HTTP API shows (detail, logs)."""
        return WorkflowRunStatus.RUNNING if self.shows_running else self.status

    @property
    def executing(self) -> bool:
        """Still running on the server (what keeps a 1.13.2 stream pinging)."""
        return self.status == WorkflowRunStatus.RUNNING and not self.orphaned

    def elapsed(self) -> float:
        end = self.finished_at if self.finished_at is not None else time.time()
        return round(end - self.created_at, 6)

    @property
    def pending_form(self) -> PendingForm | None:
        """The form the run waits on now, if any."""
        form = self.form
        if form is None or self.status != WorkflowRunStatus.PAUSED or form.submitted or form.expired:
            return None
        return form

    def form_for(self, token: str) -> PendingForm | None:
        return next((form for form in self.forms if form.token == token), None)

    def open_node(self) -> Node | None:
        return self.nodes[-1] if self.nodes and self.nodes[-1].finished_at is None else None

    def snapshot(self) -> RunSnapshot:
        pending = self.pending_form
        return RunSnapshot(
            id=self.id,
            task_id=self.task_id,
            app=self.app.name,
            user=self.user,
            workflow_id=self.workflow_id,
            status=self.status,
            inputs=dict(self.inputs),
            outputs=None if self.outputs is None else dict(self.outputs),
            error=self.error,
            created_at=int(self.created_at),
            finished_at=None if self.finished_at is None else int(self.finished_at),
            elapsed_time=self.elapsed(),
            total_tokens=self.tokens,
            total_steps=self.steps,
            form_token=pending.token if pending is not None else None,
            held=self.held,
            orphaned=self.orphaned,
            api_status=self.api_status,
            message_id=None if self.message is None else self.message.id,
            conversation_id=None if self.message is None else self.message.conversation.id,
            form_node_id=pending.node.node_id if pending is not None else None,
            forms_answered=len(self.answers),
        )
