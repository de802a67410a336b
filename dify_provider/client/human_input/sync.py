"""The human-input methods of :class:`~dify_provider.client.sync.DifyClient` (a mixin over the
client's own transport, retries and version noting)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from dify_provider.client import errors as e
from dify_provider.client._core import ClientConfig
from dify_provider.client.human_input import _api
from dify_provider.client.human_input._pending import pending_form
from dify_provider.client.human_input.models import HumanInputForm, PendingForm

if TYPE_CHECKING:
    from dify_provider.client._transport import SyncServiceClient

    _Client: TypeAlias = SyncServiceClient[ClientConfig]
else:
    _Client = object


class HumanInputMethods(_Client):
    """``/form/human_input/{token}`` (service route, else 1.13's web route) and the pause
    replay of ``/workflow/{id}/events``."""

    #: Learned from the first answer: the service route is missing (Dify 1.13), use the web one.
    _forms_on_web: bool = False

    def get_human_input_form(self, form_token: str) -> HumanInputForm:
        """The form a paused run waits on. 412 ``DifyFormClosedError``: answered or expired."""
        form: HumanInputForm = self._form_call(lambda web: _api.get_form(self.config, form_token, web=web))
        return form

    def submit_human_input_form(self, form_token: str, inputs: dict[str, Any], action: str,
                                user: str | None = None) -> None:
        """Answer a form: every input of the form, and the id of the chosen action. The run
        resumes in Dify's workers. Never re-sent once it may have landed (one answer per form)."""
        self._form_call(lambda web: _api.submit_form(self.config, form_token, inputs, action, user, web=web))

    def pending_human_input_form(self, workflow_run_id: str, user: str | None = None) -> PendingForm | None:
        """The form a paused run waits on now, replayed by its events (Dify >= 1.14); ``None``
        when no form is pending or the server has no events API (1.13)."""
        from dify_provider.client.sync import WorkflowStream

        stream = WorkflowStream(self, _api.run_events(self.config, workflow_run_id, user))
        try:
            return pending_form(stream)
        except e.DifyError as exc:
            if _api.route_missing(exc):
                return None
            raise
        finally:
            stream.close()

    def _form_call(self, build: Any) -> Any:
        if not self._forms_on_web:
            try:
                return self._call(build(False))
            except e.DifyNotFoundError as exc:
                if not _api.route_missing(exc):
                    raise
                self._forms_on_web = True
        return self._call(build(True))
