"""Which form a paused run waits on, from the events it sent (its stream, or a replay).

Dify's events replay (``include_state_snapshot``) is rebuilt from stored state: it carries the
current ``workflow_paused`` (whose ``reasons`` name the waiting forms and their tokens), not the
``human_input_required`` events of the run's stream. A stream carries both. So the last pause's
reasons win, and an unanswered ``human_input_required`` serves when no pause says more.
"""

from __future__ import annotations

from collections.abc import Iterable

from dify_provider.client.human_input.models import PendingForm
from dify_provider.client.models import StreamEvent

_RESOLVED = ("human_input_form_filled", "human_input_form_timeout")


def pending_form(events: Iterable[StreamEvent]) -> PendingForm | None:
    required: dict[str, PendingForm] = {}
    paused: list[PendingForm] = []
    for event in events:
        node = str(event.data.get("node_id") or "")
        if event.event == "human_input_required":
            required[node] = PendingForm.of(event.data)
        elif event.event in _RESOLVED:
            required.pop(node, None)
            paused = []
        elif event.event == "workflow_started":
            paused = []  # a resumption: the pause before it is over
        elif event.event == "workflow_paused":
            reasons = [r for r in event.data.get("reasons") or [] if isinstance(r, dict)]
            paused = [_with_details(PendingForm.of(r), required) for r in reasons
                      if r.get("TYPE", "human_input_required") == "human_input_required"]
    if paused:  # a form with a token first: one without (email delivery) cannot be answered here
        return next((form for form in paused if form.answerable), paused[0])
    return next(reversed(required.values()), None)


def _with_details(form: PendingForm, required: dict[str, PendingForm]) -> PendingForm:
    """A reason names the node; the stream's ``human_input_required`` may say more (expiry)."""
    seen = required.get(form.node_id or "")
    if seen is None or seen.form_token != form.form_token:
        return form
    return seen
