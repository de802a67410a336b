"""The shapes of a human-input pause (dify-api.md 3.7, 4.2; Dify's ``human_input`` node).

A pause is first seen as a :class:`PendingForm` (the ``human_input_required`` event or the
``reasons`` of a paused blocking answer: token, node, expiry); the form itself
(:class:`HumanInputForm`) is read by its token. Only forms delivered to the web app carry a
token: an email-delivered form cannot be answered through the API.
"""

# No ``from __future__ import annotations``: see dify_provider/client/models.py.
import re
from typing import Any

from pydantic import Field

from dify_provider.client.models import DifyModel

#: Where Dify's form content shows an input's value (``{{#$output.comment#}}``).
_OUTPUT_PLACEHOLDER = re.compile(r"\{\{#\$output\.([A-Za-z_][A-Za-z0-9_]*)#\}\}")


class FormInput(DifyModel):
    """One field of a form. Dify requires every field in an answer (empty text is allowed)."""

    type: str
    output_variable_name: str
    default: dict[str, Any] | None = None
    #: A ``select``'s choices (Dify >= 1.14; 1.13 has only ``text_input`` and ``paragraph``).
    option_source: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.output_variable_name

    @property
    def options(self) -> list[str] | None:
        values = (self.option_source or {}).get("value")
        return [str(v) for v in values] if isinstance(values, list) else None


class FormAction(DifyModel):
    """A button of the form; its ``id`` is the branch the run takes."""

    id: str
    title: str
    button_style: str = "default"


class HumanInputForm(DifyModel):
    """``GET /form/human_input/{form_token}``: what the person is asked."""

    form_content: str = ""
    inputs: list[FormInput] = Field(default_factory=list)
    resolved_default_values: dict[str, Any] = Field(default_factory=dict)
    user_actions: list[FormAction] = Field(default_factory=list)
    #: Unix seconds; past it Dify sweeps the form and the node takes its timeout branch.
    expiration_time: int | None = None

    def action_for(self, choice: str) -> FormAction:
        """The action a person chose, by title (what Airflow shows) or id."""
        for action in self.user_actions:
            if choice in (action.title, action.id):
                return action
        raise ValueError(f"{choice!r} is not an action of this form ({', '.join(a.title for a in self.user_actions)})")

    def default_for(self, name: str) -> str | None:
        """What the web app prefills: a variable default Dify resolved, else a constant one."""
        value = self.resolved_default_values.get(name)
        if value is None:
            field = next((f for f in self.inputs if f.name == name), None)
            default = field.default if field is not None else None
            if default and default.get("type") == "constant":
                value = default.get("value")
        return None if value is None else str(value)

    def readable_content(self) -> str:
        """The content with each input's placeholder named, as the web app shows a field there."""
        return _OUTPUT_PLACEHOLDER.sub(lambda m: f"**[{m.group(1)}]**", self.form_content)


class PendingForm(DifyModel):
    """A pause as the run announces it: enough to find the form and to say what waits."""

    form_token: str | None = None
    form_id: str | None = None
    node_id: str | None = None
    node_title: str | None = None
    expiration_time: int | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> "PendingForm":
        """From ``human_input_required.data`` or one ``reasons`` entry of ``workflow_paused``."""
        return cls.model_validate(data)

    @property
    def answerable(self) -> bool:
        return bool(self.form_token)

    @property
    def label(self) -> str:
        return self.node_title or self.node_id or self.form_id or "human input"
