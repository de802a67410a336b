"""``human_input="airflow"``: a Dify run paused on a form is answered as an Airflow required action.

When the run pauses on a form Dify exposes to the API (web-app delivery: it has a token), the
task reads the form, writes it as this task instance's required action (subject: the node's
title, body: the form's content, options: its buttons, params: its fields, timeout: its expiry)
and parks: ``awaiting_input`` on Airflow 3.3 (no worker, no triggerer), the standard provider's
``HITLTrigger`` on 3.1-3.2. The answer resumes :meth:`HumanInputBridge.execute_human_input`,
which posts it to Dify and goes on waiting for the run, which may pause again.

Airflow keeps ONE required action per task instance, for all its tries: writing it again only
clears the response (``upsert_hitl_detail``) and the row follows the task instance to each new
try (its foreign key cascades on update). So a later pause whose form looks the same (title,
content, buttons, fields: a loop asking the same approval) is asked again in Airflow, and any
other form is left to Dify's web app, logged. What was asked, posted and answered is in the
task's run record (the state store): neither a retry nor a restart posts an answer twice. The
form token never leaves the worker: it is a capability (Dify 1.13's web route takes it without a
key), so it is in no log, XCom or form.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from dify_provider.client import errors as e
from dify_provider.version_compat import AIRFLOW_V_3_3_PLUS, REQUIRED_ACTIONS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from dify_provider.client.human_input.models import HumanInputForm, PendingForm
    from dify_provider.operators.base import RunTry
    from dify_provider.operators.run_memory import RunMemory

MODES = ("wait", "fail", "airflow")
XCOM_KEY = "human_input"
RESUME_METHOD = "execute_human_input"
#: How long a paused run whose form cannot be found is left before looking again.
LOOK_AGAIN_SECONDS = 60.0


def check_mode(task_id: str, mode: str) -> str:
    """At DAG parse: a mode this Airflow cannot honour fails there, with the version it needs."""
    if mode not in MODES:
        raise ValueError(f"{task_id}: human_input={mode!r}: use 'wait' (keep waiting while someone answers in Dify), "
                         "'fail' (fail the task when the run pauses) or 'airflow' (answer it as a required action)")
    if mode == "airflow" and not REQUIRED_ACTIONS:
        from airflow import __version__

        raise ValueError(f"{task_id}: human_input='airflow' needs Airflow 3.1+ (required actions, the standard "
                         f"provider's human-in-the-loop); this is Airflow {__version__}: use 'wait' or 'fail'")
    return mode


def _state(memory: RunMemory) -> dict[str, Any]:
    state = memory.get().get("human_input") or {}
    return {"asked": dict(state.get("asked") or {}), "answered": list(state.get("answered") or []),
            "log": list(state.get("log") or []), "pending": state.get("pending"), "shape": state.get("shape")}


def _params(form: HumanInputForm) -> dict[str, Any]:
    """The form's fields as Dag params (the Required Actions form renders them). Dify wants every
    field in an answer; a field left empty is sent as ""."""
    from airflow.providers.common.compat.sdk import Param
    from airflow.providers.standard.version_compat import AIRFLOW_V_3_1_3_PLUS
    from airflow.sdk.definitions.param import ParamsDict

    params = {}
    for field in form.inputs:
        default = form.default_for(field.name)
        schema: dict[str, Any] = {"type": ["string", "null"], "title": field.name}
        if field.type == "paragraph":
            schema["format"] = "multiline"
        if field.options:  # a choice is never empty: Dify refuses a value not among the options
            schema = {"type": "string", "title": field.name, "enum": field.options}
            default = default if default in field.options else field.options[0]
        params[field.name] = Param(default, description=f"Dify form field ({field.type.replace('_', ' ')})",
                                   **schema)
    pd = ParamsDict(params)
    if not AIRFLOW_V_3_1_3_PLUS:
        return pd.dump()
    return {k: pd.get_param(k).serialize() for k in pd}


class HumanInputBridge:
    """Mixed into :class:`~dify_provider.operators.base.DifyRunOperatorBase`."""

    human_input: str = "wait"

    if TYPE_CHECKING:  # provided by the operator base
        log: Any
        task_id: str
        poll_interval: float
        _dify_run_id: str | None
        _dify_task_id: str | None

        def _wait(self, t: RunTry, run_id: str, stream: Any, deadline: Any, **extra: Any) -> Any: ...
        def _client(self, context: Context | None = None) -> Any: ...
        def _new_try(self, client: Any, context: Context, memory: RunMemory, user: str) -> RunTry: ...
        def _kept(self, memory: RunMemory, context: Context) -> Any: ...
        @property
        def hook(self) -> Any: ...

    def _bridging(self) -> bool:
        """Pauses are handed to Airflow (the trigger ends on one, the worker asks it)."""
        return self.human_input == "airflow" and not getattr(self, "_bridge_off", False)

    def _needs_stream_for_forms(self, t: RunTry) -> bool:
        """Before Dify 1.14 an API client learns a form's token only on the run's stream: stay on
        it (not in the triggerer) until the first pause."""
        from dify_provider.client.version import EVENTS_API

        if not self._bridging():
            return False
        version = self.hook.server_version(t.client).numbers
        if version is not None and version >= EVENTS_API:
            return False
        self.log.info("human_input='airflow' on Dify %s: waiting on the run's stream, not in the triggerer, until "
                      "the run pauses (before 1.14 only the stream tells a form's token)",
                      ".".join(map(str, version)) if version else "of unknown version")
        return True

    def _paused_in_triggerer(self, context: Context, memory: RunMemory, run_id: str, dify_task_id: str | None,
                             user: str | None, extra: dict[str, Any]) -> Any:
        """The trigger saw the run pause: ask its form; when it cannot be asked, wait on as
        ``human_input="wait"`` for the rest of this try."""
        from dify_provider.operators.run_memory import default_user

        with self._kept(memory, context), self._client(context) as client:
            t = self._new_try(client, context, memory, user or self.user or default_user(context))  # type: ignore[attr-defined]
            self._dify_run_id, self._dify_task_id = run_id, dify_task_id
            t.account.attach(run_id)
            self._while_paused(t, run_id)
            # Not parked: this pause is Dify's to answer; waiting in the triggerer as for "wait"
            # keeps the trigger from handing the same pause back at every poll.
            self._bridge_off = True
            return self._wait(t, run_id, None, None, **extra)

    # --- noticing a pause --------------------------------------------------------------------

    def _while_paused(self, t: RunTry, run_id: str, seen: PendingForm | None = None) -> bool:
        """The run is paused: with ``human_input="airflow"``, ask its form in Airflow (this parks
        the task: it raises) when the form can be found and is open. Returns whether pauses are
        still handed over (False: this one cannot be, someone answers it in Dify)."""
        if not self._bridging():
            return False
        now = time.time()
        if seen is None and now < getattr(self, "_look_again_at", 0.0):
            return True
        # Looked for at most once a minute while nothing new is found (a replay per poll is heavy).
        self._look_again_at = now + LOOK_AGAIN_SECONDS
        pending = seen if seen is not None and seen.answerable else (self._find_pending(t, run_id) or seen)
        state = _state(t.memory)
        if pending is None or not pending.answerable:
            what = (f"form of node {pending.label!r} is not delivered to the web app (email or console delivery)"
                    if pending is not None else "form cannot be read through the API (Dify < 1.14 tells an API "
                    "client only the first pause of a run)")
            self.log.warning("Dify run %s paused, but its %s: answer it in Dify; this task waits for the run",
                             run_id, what)
            return False
        assert pending.form_token is not None
        if pending.form_token not in state["answered"]:  # else: answered here, Dify resumes it
            self._ask(t, run_id, pending, state)
        return True

    def _find_pending(self, t: RunTry, run_id: str) -> PendingForm | None:
        from dify_provider.client.human_input.models import PendingForm

        recorded = _state(t.memory)["pending"]
        if recorded and recorded.get("run_id") == run_id:
            return PendingForm.of(recorded)
        try:
            return t.client.pending_human_input_form(run_id, t.user)  # type: ignore[no-any-return]
        except e.DifyError as exc:
            self.log.warning("Could not read the events of paused Dify run %s (%s)", run_id, exc)
            return None

    # --- asking ----------------------------------------------------------------------------------

    def _ask(self, t: RunTry, run_id: str, pending: PendingForm, state: dict[str, Any]) -> None:
        token = pending.form_token
        assert token is not None
        try:
            form = t.client.get_human_input_form(token)
        except e.DifyFormClosedError as exc:
            self._note_closed(t, pending, exc, state)
            return
        except e.DifyError as exc:
            raise AirflowException(f"could not read the form of node {pending.label!r} of Dify run {run_id}: "
                                   f"{exc}") from exc
        options = [action.title for action in form.user_actions]
        if not options:
            raise AirflowFailException(f"the form of node {pending.label!r} has no action to choose; answer it in Dify")
        shape = [pending.label, form.readable_content(), options, [f"{f.type}:{f.name}" for f in form.inputs]]
        if state.get("shape") not in (None, shape):
            self.log.warning("Dify run %s paused again, on %r: Airflow keeps one required action per task instance (a "
                             "second form would show with the first one's title, buttons and fields), so this form is "
                             "left to Dify's web app; this task waits for the run", run_id, pending.label)
            self._record(t.context, t.memory, state, token, {"node": pending.label, "node_id": pending.node_id,
                                                              "outcome": "left_to_dify"})
            return
        expires = form.expiration_time or pending.expiration_time
        timeout = timedelta(seconds=max(1.0, expires - time.time())) if expires else None
        state["asked"][token] = str(t.context["ti"].id)
        state["shape"] = shape
        # What the answer is mapped back with (button title -> action id, the fields to send).
        state["pending"] = {**pending.model_dump(), "run_id": run_id, "inputs": [f.name for f in form.inputs],
                            "actions": [{"id": a.id, "title": a.title} for a in form.user_actions]}
        t.memory.mark(human_input=state)
        self.log.info("Dify run %s paused on %r: asked in Airflow's Required Actions (options %s%s)", run_id,
                      pending.label, ", ".join(options), f", expires in {timeout}" if timeout else "")
        self._park(t, form, pending, options, timeout, run_id)

    def _park(self, t: RunTry, form: HumanInputForm, pending: PendingForm, options: list[str],
              timeout: timedelta | None, run_id: str) -> None:
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        params = _params(form)
        ti = t.context["ti"]
        upsert_hitl_detail(ti_id=ti.id, options=options, subject=pending.label, body=form.readable_content(),
                           defaults=None, multiple=False, params=params)
        kwargs = {"run_id": run_id, "user": t.user, "dify_task_id": getattr(self, "_dify_task_id", None),
                  "waited": time.time() - t.started, "extra": getattr(self, "_wait_extra", {})}
        if AIRFLOW_V_3_3_PLUS:
            from airflow.sdk.exceptions import TaskAwaitingInput

            raise TaskAwaitingInput(method_name=RESUME_METHOD, kwargs=kwargs, timeout=timeout)
        from airflow.providers.standard.triggers.hitl import HITLTrigger
        from airflow.sdk.timezone import utcnow

        trigger = HITLTrigger(ti_id=ti.id, options=options, params=params, defaults=None, multiple=False,
                              timeout_datetime=utcnow() + timeout if timeout else None,
                              poke_interval=self.poll_interval)  # how often this task looks, as for the run
        self.defer(trigger=trigger, method_name=RESUME_METHOD, kwargs=kwargs)  # type: ignore[attr-defined]

    def _note_closed(self, t: RunTry, pending: PendingForm, exc: e.DifyFormClosedError,
                     state: dict[str, Any]) -> None:
        """A form already answered in Dify (412 submitted) or expired: not an error; wait on."""
        outcome = "answered_in_dify" if exc.submitted else "expired"
        self.log.info("The form of node %r was %s before Airflow asked it; waiting for the run", pending.label,
                      "answered in Dify" if exc.submitted else "expired")
        self._record(t.context, t.memory, state, pending.form_token, {"node": pending.label,
                                                                       "node_id": pending.node_id, "outcome": outcome})

    def _record(self, context: Context, memory: RunMemory, state: dict[str, Any], token: str | None,
                entry: dict[str, Any]) -> None:
        if token is not None and token not in state["answered"]:
            state["answered"].append(token)
        state["log"].append(entry)
        state["pending"] = None
        memory.mark(human_input=state)
        context["ti"].xcom_push(key=XCOM_KEY, value=state["log"])

    def _push_answers(self, context: Context, memory: RunMemory) -> None:
        """At the end of any try: the pauses so far (an earlier try's XCom is gone with it)."""
        log = _state(memory)["log"]
        if log:
            context["ti"].xcom_push(key=XCOM_KEY, value=log)

    # --- the answer --------------------------------------------------------------------------------

    def execute_human_input(self, context: Context, event: dict[str, Any] | None = None, *, run_id: str,
                            user: str, dify_task_id: str | None = None, waited: float = 0.0,
                            extra: dict[str, Any] | None = None, **_: Any) -> Any:
        """A person answered (or the form's time ran out): post it to Dify, then wait on."""
        from dify_provider.client.human_input.models import PendingForm
        from dify_provider.operators.run_memory import RunMemory

        self._dify_run_id, self._dify_task_id = run_id, dify_task_id
        self._resume_extra(extra or {})
        memory = RunMemory(context)
        with self._kept(memory, context), self._client(context) as client:  # type: ignore[attr-defined]
            t = self._new_try(client, context, memory, user)
            t.started = time.time() - waited  # a person's time does not count against ``timeout``
            t.account.attach(run_id)
            state = _state(memory)
            asked = state["pending"] or {}
            pending = PendingForm.of(asked)
            token = pending.form_token
            if token and token not in state["answered"]:
                self._post(t, pending, asked, event or {}, state)
                self._until_resumed(t, run_id)
            self._look_again_at = 0.0  # the next pause, if any, is a new one: look for it at once
            return self._wait(t, run_id, None, None, **(extra or {}))

    def _until_resumed(self, t: RunTry, run_id: str, tries: int = 10) -> None:
        """Dify resumes an answered run in its workers: a wait started before that would see the
        same pause again (and, in the triggerer, hand it straight back)."""
        for _ in range(tries):
            try:
                if t.client.get_workflow_run(run_id).status != "paused":
                    return
            except e.DifyError:
                return
            time.sleep(min(1.0, self.poll_interval))

    def _resume_extra(self, extra: dict[str, Any]) -> None:
        """What an operator restores from its kept kwargs before waiting on (chat: the mode)."""

    def _post(self, t: RunTry, pending: PendingForm, asked: dict[str, Any], event: dict[str, Any],
              state: dict[str, Any]) -> None:
        token = pending.form_token
        assert token is not None
        entry: dict[str, Any] = {"node": pending.label, "node_id": pending.node_id}
        if "error" in event and event.get("error_type") != "timeout":  # 3.1-3.2: params failed validation
            raise AirflowException(f"the answer to {pending.label!r} was refused by Airflow: {event['error']}. The "
                                   "form is still open in Dify: the next try of this task asks it again")
        if "error" in event or event.get("timedout"):
            self.log.warning("Nobody answered the form of node %r before it expired: Dify takes the node's timeout "
                             "branch", pending.label)
            self._record(t.context, t.memory, state, token, {**entry, "outcome": "expired"})
            return
        chosen = str((event.get("chosen_options") or [""])[0])
        action = next((a for a in asked.get("actions") or [] if chosen in (a["title"], a["id"])), None)
        if action is None:
            raise AirflowFailException(f"the answer {chosen!r} is not an action of the form {pending.label!r}")
        params_input = event.get("params_input") or {}
        inputs = {name: "" if params_input.get(name) is None else str(params_input[name])
                  for name in asked.get("inputs") or []}
        who = event.get("responded_by_user") or None
        at = event.get("responded_at")
        entry.update({"action": action["id"], "action_title": action["title"], "inputs": inputs, "responded_by": who,
                      "responded_at": at if at is None or isinstance(at, str) else at.isoformat()})
        try:
            t.client.submit_human_input_form(token, inputs, action["id"], t.user)
        except e.DifyFormClosedError as exc:
            self.log.warning("Dify refused the answer to %r: the form was %s first; the run goes on without it",
                             pending.label, "answered in Dify" if exc.submitted else "expired")
            entry["outcome"] = "answered_in_dify" if exc.submitted else "expired"
        except e.DifyInvalidInputError as exc:
            raise AirflowException(f"Dify refused the answer to {pending.label!r}: {exc.message}. The form is still "
                                   "open: the next try of this task asks it again") from exc
        else:
            entry["outcome"] = "answered"
            self.log.info("Answered Dify form %r with %r%s", pending.label, action["title"],
                          f" (by {who.get('name') or who.get('id')})" if isinstance(who, dict) else "")
        self._record(t.context, t.memory, state, token, entry)
