"""An offline Dify service API for tests: ``from dify_provider.testing import DifyEmulator``.

Names are loaded lazily: this package is imported by the pytest plugin (registered for every
pytest session of anyone who installs the provider), and the server side needs the optional
``emulator`` extras (starlette, uvicorn) that plain users may not have.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dify_provider.testing.models import (
        EmulatedApp,
        Fault,
        InputField,
        RecordedRequest,
        RunSnapshot,
        Scenario,
        default_apps,
    )
    from dify_provider.testing.server import DifyEmulator

__all__ = [
    "DifyEmulator",
    "EmulatedApp",
    "Fault",
    "InputField",
    "RecordedRequest",
    "RunSnapshot",
    "Scenario",
    "default_apps",
]

_HOMES = {name: "dify_provider.testing.models" for name in __all__} | {"DifyEmulator": "dify_provider.testing.server"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
