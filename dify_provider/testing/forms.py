"""Human-input forms as a scenario scripts them (:class:`FormSpec`), and the rules Dify applies to them.

A paused run asks its scenario's forms one after the other; this module knows what a form *is*
(its inputs, buttons, delivery and expiry), how Dify shows one (the JSON of its inputs and actions,
its content once answered) and which answers it refuses. It imports nothing else of the emulator,
so :mod:`~dify_provider.testing.models` can build :class:`~dify_provider.testing.models.Scenario`
on it; the run-time side (pausing, answering, the timeout branch) is
:mod:`~dify_provider.testing.form_state`.

Taken from Dify 1.13.2 (``dify_graph/nodes/human_input``, and the recordings in
``tests/contract/recordings-hitl``): the action id pattern and lengths, unique names and ids,
``validate_human_input_submission``'s messages (extra inputs are accepted), the ``default``
object, that only *variable* defaults appear in ``resolved_default_values``, ``display_in_ui``
false without web-app delivery, how the content's variables and its ``{{#$output.name#}}``
placeholders are filled. Guessed: the ``select`` input (1.13.2 has only ``text_input`` and
``paragraph``), how its options are shown and that a value outside them is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

FORM_CONTENT = "Please review the result before it is published.\n\n{{#$output.comment#}}"
FORM_TTL_SECONDS = 24 * 3600

#: ``UserAction.id``: it names an edge of the graph, so it must be an identifier.
ACTION_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_OUTPUT_PLACEHOLDER = re.compile(r"\{\{#\$output\.(?P<name>[a-zA-Z_][a-zA-Z0-9_]{0,29})#\}\}")
#: ``VariablePool``'s ``{{#node.variable#}}`` (``$output`` does not match: it waits for the answer).
_VARIABLE = re.compile(r"\{\{#([a-zA-Z0-9_]{1,50}(?:\.[a-zA-Z_][a-zA-Z0-9_]{0,29}){1,10})#\}\}")


class InvalidFormData(ValueError):
    """An answer the form refuses (Dify's 400 ``invalid_form_data``); the message is Dify's."""


def _unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicated {what} {value!r}")
        seen.add(value)


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FormInputSpec(_Spec):
    """One field of a form. ``default`` is a constant the web app prefills; ``default_from`` a
    variable selector (``("start", "text")``: the run's input ``text``; ``("sys", "user_id")``)
    Dify resolves when the form opens, the only kind it lists in ``resolved_default_values``."""

    type: Literal["text_input", "paragraph", "select"] = "paragraph"
    #: Dify's ``output_variable_name``: the key of the answer's inputs.
    name: str = Field(min_length=1)
    default: str | None = None
    default_from: tuple[str, str] | None = None
    #: A ``select``'s choices (required there, refused elsewhere).
    options: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.default is not None and self.default_from is not None:
            raise ValueError(f"input {self.name!r}: a default is a constant or a variable, not both")
        if self.type == "select":
            if not self.options:
                raise ValueError(f"select input {self.name!r} needs options")
            if self.default is not None and self.default not in self.options:
                raise ValueError(f"select input {self.name!r}: default {self.default!r} is not an option")
        elif self.options is not None:
            raise ValueError(f"input {self.name!r}: only a select has options")
        return self


class FormActionSpec(_Spec):
    """A button of the form; its ``id`` is the branch the run takes when it is pressed."""

    id: str = Field(max_length=20, pattern=ACTION_ID_PATTERN)
    title: str = Field(min_length=1, max_length=20)
    button_style: Literal["primary", "default", "accent", "ghost"] = "default"


DEFAULT_INPUTS = (FormInputSpec(type="paragraph", name="comment"),)
DEFAULT_ACTIONS = (
    FormActionSpec(id="approve", title="Approve", button_style="primary"),
    FormActionSpec(id="reject", title="Reject"),
)


class FormSpec(_Spec):
    """One human-input node a paused run stops at (``Scenario(status="paused", forms=(...))``).

    ``delivery="email"``: the form goes out by mail only, so the run announces no token and
    nothing the test holds can fetch it; answer it with :meth:`DifyEmulator.resume`. ``end_on``
    names actions that end the run ``succeeded`` right after this form (the branch to an end
    node), skipping later forms and ``steps_after_resume``. ``ttl_seconds`` sets
    ``expiration_time``; past it a submission is refused, but nothing sweeps the form: the test
    decides when it times out (:meth:`DifyEmulator.expire_form`).
    """

    node_id: str = Field(default="human_input", min_length=1)
    title: str = "Human Input"
    #: Markdown: ``{{#start.<input>#}}`` and ``{{#sys.<name>#}}`` are filled in as the form opens,
    #: ``{{#$output.<name>#}}`` shows an input's value once answered.
    content: str = FORM_CONTENT
    inputs: tuple[FormInputSpec, ...] = DEFAULT_INPUTS
    actions: tuple[FormActionSpec, ...] = Field(default=DEFAULT_ACTIONS, min_length=1)
    ttl_seconds: int = Field(default=FORM_TTL_SECONDS, ge=0)
    delivery: Literal["webapp", "email"] = "webapp"
    end_on: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Self:
        _unique("output variable name", [i.name for i in self.inputs])
        ids = [a.id for a in self.actions]
        _unique("user action id", ids)
        unknown = [a for a in self.end_on if a not in ids]
        if unknown:
            raise ValueError(f"end_on names no action of form {self.node_id!r}: {', '.join(unknown)}")
        return self

    def action_title(self, action_id: str) -> str:
        """``find_action_text``: the title, or the id itself for an action the form lacks."""
        return next((a.title for a in self.actions if a.id == action_id), action_id)


DEFAULT_FORM = FormSpec()


# -- how Dify shows a form ------------------------------------------------------------------------


def input_json(spec: FormInputSpec) -> dict[str, Any]:
    """``FormInput.model_dump``: a default is ``{"type", "selector", "value"}`` whatever its kind."""
    default: dict[str, Any] | None = None
    if spec.default is not None:
        default = {"type": "constant", "selector": [], "value": spec.default}
    elif spec.default_from is not None:
        default = {"type": "variable", "selector": list(spec.default_from), "value": ""}
    entry: dict[str, Any] = {"type": spec.type, "output_variable_name": spec.name, "default": default}
    if spec.options is not None:
        # Our guess at the >= 1.14 select input: 1.13.2 has no select, so no shape to copy.
        entry["option_source"] = {"type": "constant", "value": list(spec.options)}
    return entry


def inputs_json(form: FormSpec) -> list[dict[str, Any]]:
    return [input_json(i) for i in form.inputs]


def actions_json(form: FormSpec) -> list[dict[str, Any]]:
    return [a.model_dump() for a in form.actions]


def _lookup(selector: tuple[str, ...], inputs: Mapping[str, Any], sys_inputs: Mapping[str, Any]) -> Any:
    """A variable of the run's pool as far as the emulator has one: the start node's inputs
    (``start.x``) and the system variables (``sys.x``); anything else is None."""
    if len(selector) != 2:
        return None
    node, name = selector
    if node == "start":
        return inputs.get(name)
    return sys_inputs.get(f"sys.{name}") if node == "sys" else None


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


def resolve_defaults(form: FormSpec, inputs: Mapping[str, Any], sys_inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``HumanInputNode.resolve_default_values``: variable defaults only (constants are skipped),
    and a selector that resolves to nothing is left out."""
    resolved: dict[str, Any] = {}
    for field in form.inputs:
        value = None if field.default_from is None else _lookup(field.default_from, inputs, sys_inputs)
        if value is not None:
            resolved[field.name] = value
    return resolved


def render_before(content: str, inputs: Mapping[str, Any], sys_inputs: Mapping[str, Any]) -> str:
    """``render_form_content_before_submission``: ``{{#start.x#}}`` and ``{{#sys.x#}}`` filled in
    as the form opens (``convert_template``: a variable it cannot find is left as its bare name)."""

    def value_of(match: re.Match[str]) -> str:
        value = _lookup(tuple(match.group(1).split(".")), inputs, sys_inputs)
        return match.group(1) if value is None else _text(value)

    return _VARIABLE.sub(value_of, content)


def render_answered(content: str, values: Mapping[str, Any]) -> str:
    """``render_form_content_with_outputs``: each placeholder replaced by the submitted value."""

    def value_of(match: re.Match[str]) -> str:
        value = values.get(match.group("name"))
        return "" if value is None else _text(value)

    return _OUTPUT_PLACEHOLDER.sub(value_of, content)


# -- which answers a form accepts ---------------------------------------------------------------


def check_answer(form: FormSpec, action: str, inputs: Mapping[str, Any]) -> None:
    """``validate_human_input_submission``: a known action and every input present (empty text is
    fine); then, our guess, a select's value among its options."""
    if action not in {a.id for a in form.actions}:
        raise InvalidFormData(f"Invalid action: {action}")
    missing = [i.name for i in form.inputs if i.name not in inputs]
    if missing:
        raise InvalidFormData(f"Missing required inputs: {', '.join(missing)}")
    for field in form.inputs:
        if field.options is not None and inputs[field.name] not in field.options:
            raise InvalidFormData(f"Invalid value for {field.name}: {inputs[field.name]!r} is not an option")


def prefilled(form: FormSpec, resolved: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """An answer given "in the web app" (the control call): the fields it leaves out keep what
    the page prefilled, a default, else empty text (a select: its first option), as a person
    who just presses a button would send."""
    answer: dict[str, Any] = {}
    for field in form.inputs:
        if field.name in inputs:
            continue
        value = resolved.get(field.name, field.default)
        if value is None:
            value = field.options[0] if field.options else ""
        answer[field.name] = value
    return {**answer, **inputs}
