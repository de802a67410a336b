"""pytest fixtures for the Dify emulator (registered through the ``pytest11`` entry point).

``dify_emulator`` shares one server per session (starting one costs ~0.1 s plus imports) and
resets it around every test; ``dify_emulator_factory`` builds dedicated ones for tests that need
other apps or another server version. Imports of the server are deferred to the fixtures so that
merely having the provider installed costs other pytest sessions nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from dify_provider.testing.server import DifyEmulator

CONN_ENV = "AIRFLOW_CONN_DIFY_DEFAULT"
#: ``dify_chat``: the emulated chatflow app (``chat``), for ``DifyChatOperator`` tasks.
CHAT_CONN_ENV = "AIRFLOW_CONN_DIFY_CHAT"


def _point_connections(monkeypatch: pytest.MonkeyPatch, emulator: DifyEmulator) -> None:
    monkeypatch.setenv(CONN_ENV, emulator.airflow_connection_json())
    if "chat" in emulator.apps:
        monkeypatch.setenv(CHAT_CONN_ENV, emulator.airflow_connection_json("chat"))


def _emulator_class() -> type[DifyEmulator]:
    try:
        from dify_provider.testing.server import DifyEmulator
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise pytest.UsageError(
            f"the Dify emulator needs the 'emulator' extra (pip install 'airflow-provider-dify[emulator]'): {exc}"
        ) from exc
    return DifyEmulator


@pytest.fixture(scope="session")
def dify_emulator_session() -> Iterator[DifyEmulator]:
    """The session's shared emulator (not reset; prefer ``dify_emulator``)."""
    with _emulator_class()() as emulator:
        yield emulator


@pytest.fixture
def dify_emulator(dify_emulator_session: DifyEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[DifyEmulator]:
    """A running emulator with default apps, freshly reset; ``AIRFLOW_CONN_DIFY_DEFAULT`` points at
    its workflow app ``echo``, ``AIRFLOW_CONN_DIFY_CHAT`` at its chatflow app ``chat``."""
    emulator = dify_emulator_session
    emulator.reset()
    _point_connections(monkeypatch, emulator)
    yield emulator
    emulator.reset()


@pytest.fixture
def dify_emulator_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DifyEmulator]]:
    """Build dedicated emulators: ``factory(apps=[...], server_version="1.12.0", ...)``.

    Each is started, points ``AIRFLOW_CONN_DIFY_DEFAULT`` at itself (the latest wins), and is
    closed after the test.
    """
    started: list[DifyEmulator] = []

    def make(*args: Any, **kwargs: Any) -> DifyEmulator:
        emulator = _emulator_class()(*args, **kwargs).start()
        started.append(emulator)
        _point_connections(monkeypatch, emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.close()


# --- Chenyu ---------------------------------------------------------------------------------

CHENYU_CONN_ENV = "AIRFLOW_CONN_CHENYU_DEFAULT"

if TYPE_CHECKING:
    from dify_provider.testing.chenyu import ChenyuEmulator


@pytest.fixture(scope="session")
def chenyu_emulator_session() -> Iterator[ChenyuEmulator]:
    """The session's shared Chenyu emulator (not reset; prefer ``chenyu_emulator``)."""
    try:
        from dify_provider.testing.chenyu import ChenyuEmulator
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise pytest.UsageError(
            f"the Chenyu emulator needs the 'emulator' extra (pip install 'airflow-provider-dify[emulator]'): {exc}"
        ) from exc
    with ChenyuEmulator() as emulator:
        yield emulator


@pytest.fixture
def chenyu_emulator(
    chenyu_emulator_session: ChenyuEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ChenyuEmulator]:
    """A running Chenyu emulator, freshly reset, with ``AIRFLOW_CONN_CHENYU_DEFAULT`` pointing at it.

    Create run orders with ``chenyu_emulator.create_run(ChenyuScenario(...))``; they advance one
    step per progress read.
    """
    emulator = chenyu_emulator_session
    emulator.reset()
    monkeypatch.setenv(CHENYU_CONN_ENV, emulator.airflow_connection_json())
    yield emulator
    emulator.reset()
