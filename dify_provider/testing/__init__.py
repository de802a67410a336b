"""An offline Dify service API for tests: ``from dify_provider.testing import DifyEmulator``.

A held run, finished when the test decides (no sleeping)::

    with DifyEmulator() as emu:                      # Dify 1.13.2; apps: echo, slow, approval, chat...
        emu.script("echo", Scenario(hold=True))      # the next echo run waits after its nodes
        ...start a run against emu.base_url with emu.api_key("echo")...
        run = emu.wait_for(lambda r: r.held)         # wakes on the server's notification
        emu.finish(run.id, status="failed", error="judged bad")

Faults queue per endpoint and fire in order::

    emu.inject(
        Fault.too_many_requests(endpoint="POST /workflows/run", retry_after=2),  # no run created
        Fault.delay(30, endpoint="POST /workflows/run", after_run_created=True), # ambiguous start
        Fault.cut_stream(after_events=2, endpoint="POST /workflows/run"),
    )
    assert len(emu.requests_to("POST", "/workflows/run")) == 2

Server behaviour follows Dify 1.13.2 unless switched (``EmulatorConfig``; ``DifyEmulator(**switches)``,
``emu.configure(**changes)``), e.g. ``DifyEmulator(server_version="1.14.0")`` for the events and
human-input form API, or ``configure(stopped_run_record="stopped")``.

Human input: ``Scenario(status="paused", forms=(FormSpec(...), ...))`` pauses once per form (each
with its own token), answered by ``POST /v1/form/human_input/{token}`` (Dify >= 1.14), by Dify
1.13.2's key-less web route ``POST /api/form/human_input/{token}`` (every version), by
``emu.resume(run_id, action, inputs)`` ("in the web app"), or timed out by
``emu.expire_form(run_id)`` (over HTTP: ``POST /_emulator/runs/{id}/resume`` and
``/_emulator/runs/{id}/expire-form``); the answers end up in the run's outputs (``human_input``, ``branch``)::

    emu.script("approval", Scenario(status="paused", forms=(
        FormSpec(node_id="review", actions=(FormActionSpec(id="ok", title="OK"),
                                            FormActionSpec(id="no", title="No")), end_on=("no",)),
        FormSpec(node_id="sign_off", inputs=(FormInputSpec(type="select", name="level",
                                                           options=("low", "high")),)),
    )))

Where things live: routes in :mod:`dify_provider.testing.routes` (one module per API area; the
form routes in ``routes/human_input.py`` and ``routes/web.py``), the form models in ``forms.py``,
how a run asks them in ``form_state.py``, the rest of the run lifecycle in ``state.py``.

In pytest, use the ``dify_emulator`` fixture (shared server, reset per test, and
``AIRFLOW_CONN_DIFY_DEFAULT`` pointing at it) or ``dify_emulator_factory``. From another process,
run ``python -m dify_provider.testing serve`` and script it over ``/_emulator/``.

Names are loaded lazily: this package is imported by the pytest plugin (registered for every
pytest session of anyone who installs the provider), and the server side needs the optional
``emulator`` extras (starlette, uvicorn) that plain users may not have.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dify_provider.testing.catalog import default_apps
    from dify_provider.testing.chats import MessageSnapshot
    from dify_provider.testing.config import EmulatorConfig
    from dify_provider.testing.forms import FormActionSpec, FormInputSpec, FormSpec
    from dify_provider.testing.models import (
        EmulatedApp,
        Fault,
        InputField,
        NodeSpec,
        RecordedRequest,
        RunSnapshot,
        Scenario,
    )
    from dify_provider.testing.server import DifyEmulator

__all__ = [
    "DifyEmulator",
    "EmulatedApp",
    "EmulatorConfig",
    "Fault",
    "FormActionSpec",
    "FormInputSpec",
    "FormSpec",
    "InputField",
    "MessageSnapshot",
    "NodeSpec",
    "RecordedRequest",
    "RunSnapshot",
    "Scenario",
    "default_apps",
]

_HOMES = {name: "dify_provider.testing.models" for name in __all__} | {
    "DifyEmulator": "dify_provider.testing.server",
    "EmulatorConfig": "dify_provider.testing.config",
    "MessageSnapshot": "dify_provider.testing.chats",
    "FormSpec": "dify_provider.testing.forms",
    "FormInputSpec": "dify_provider.testing.forms",
    "FormActionSpec": "dify_provider.testing.forms",
    "default_apps": "dify_provider.testing.catalog",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
