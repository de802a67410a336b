"""Test-session bootstrap.

Airflow reads ``AIRFLOW_HOME`` and its ``AIRFLOW__*`` settings once, when ``airflow`` is first
imported, so this module points them at a private throwaway directory at import time: pytest
imports this conftest before it collects (and so imports) any test module. Nothing here imports
airflow; unit tests of the pure client never pay for it. Tests that drive real Airflow are marked
``@pytest.mark.airflow`` and get the session-scoped ``airflow_db`` fixture automatically.

The environment is made hermetic: every inherited ``AIRFLOW__*``, ``AIRFLOW_CONN_*`` and
``AIRFLOW_VAR_*`` variable is dropped, so a developer's shell (or a real deployment's settings,
e.g. a Postgres ``sql_alchemy_conn``) can never leak into or be touched by the tests.
Set ``DIFY_TEST_KEEP_AIRFLOW_HOME=1`` to keep the directory after the session for debugging.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_harness import PrepareTimings

_HOME_MARKER = ".dify-provider-test-home"  # same value as airflow_harness.HOME_MARKER


def _bootstrap_airflow_home() -> Path:
    if "airflow" in sys.modules:
        raise pytest.UsageError(
            "airflow was imported before tests/conftest.py could point AIRFLOW_HOME at a throwaway "
            "directory (a pytest plugin importing airflow at module level?). Refusing to run: the "
            "tests would use, and reset, the metadata DB of the real AIRFLOW_HOME."
        )
    home = Path(tempfile.mkdtemp(prefix="dify-airflow-home-"))
    (home / _HOME_MARKER).touch()
    dags = home / "dags"
    dags.mkdir()
    for name in list(os.environ):
        if name.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")):
            del os.environ[name]
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Empty on purpose: dag.test() re-parses this folder on every call.
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            # Keep [core] unit_test_mode off: it loads Airflow's own unit_tests.cfg
            # (load_examples=True, dags_folder inside Airflow's source tree).
        }
    )
    return home


AIRFLOW_TEST_HOME = _bootstrap_airflow_home()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not os.environ.get("DIFY_TEST_KEEP_AIRFLOW_HOME"):
        shutil.rmtree(AIRFLOW_TEST_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> PrepareTimings:
    """Create the metadata DB in the throwaway home and warm up Airflow (once per session, ~8 s)."""
    from airflow_harness import prepare_airflow

    return prepare_airflow()


@pytest.fixture(autouse=True)
def _airflow_for_marked_tests(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("airflow") is not None:
        request.getfixturevalue("airflow_db")


@pytest.fixture
def dag_id(request: pytest.FixtureRequest) -> str:
    """A DAG id unique to the running test (parametrized ids included)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:200]
