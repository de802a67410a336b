"""The human-input methods of :class:`~dify_provider.client.async_.AsyncDifyClient`: the same as
:class:`~dify_provider.client.human_input.sync.HumanInputMethods`, awaited."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from dify_provider.client import errors as e
from dify_provider.client._core import ClientConfig
from dify_provider.client.human_input import _api
from dify_provider.client.human_input.models import HumanInputForm

if TYPE_CHECKING:
    from dify_provider.client._transport import AsyncServiceClient

    _Client: TypeAlias = AsyncServiceClient[ClientConfig]
else:
    _Client = object


class AsyncHumanInputMethods(_Client):
    """See :class:`~dify_provider.client.human_input.sync.HumanInputMethods`."""

    _forms_on_web: bool = False

    async def get_human_input_form(self, form_token: str) -> HumanInputForm:
        form: HumanInputForm = await self._form_call(lambda web: _api.get_form(self.config, form_token, web=web))
        return form

    async def submit_human_input_form(self, form_token: str, inputs: dict[str, Any], action: str,
                                      user: str | None = None) -> None:
        await self._form_call(lambda web: _api.submit_form(self.config, form_token, inputs, action, user, web=web))

    async def _form_call(self, build: Any) -> Any:
        if not self._forms_on_web:
            try:
                return await self._call(build(False))
            except e.DifyNotFoundError as exc:
                if not _api.route_missing(exc):
                    raise
                self._forms_on_web = True
        return await self._call(build(True))
