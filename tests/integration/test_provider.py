"""The provider as Airflow sees it: registration, the connection form, `airflow connections test`."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dify_provider import get_provider_info
from dify_provider.testing import DifyEmulator

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
AIRFLOW_VERSION = tuple(int(p) for p in importlib.metadata.version("apache-airflow").split(".")[:3])


def _class_paths() -> list[str]:
    info = get_provider_info()
    paths = [c["hook-class-name"] for c in info["connection-types"]] + list(info["extra-links"])
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(section, []):
            paths += entry["python-modules"]
    return paths


@pytest.mark.parametrize("path", _class_paths())
def test_everything_named_in_provider_info_imports(path: str) -> None:
    try:
        importlib.import_module(path)
    except ModuleNotFoundError:
        module, _, name = path.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), name), type)


def test_connection_form_fields_have_defaults() -> None:
    (dify,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "dify"]
    assert set(dify["ui-field-behaviour"]["hidden-fields"]) == {"schema", "port", "login"}
    assert {"timeout", "verify_ssl", "ca_bundle", "proxy", "default_user", "console_url", "app_id"} <= set(
        dify["conn-fields"]
    )
    for name, field in dify["conn-fields"].items():
        assert "default" in field["schema"], name  # the UI's edit mode hides fields without one


def _airflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIRFLOW, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, check=False)


def _json_list(stdout: str) -> list[dict[str, Any]]:
    """The JSON list a CLI printed; Airflow 3.0's CLI prints log lines to stdout before it."""
    decoder = json.JSONDecoder()
    for start in [0] + [i + 1 for i, ch in enumerate(stdout) if ch == "\n"]:
        if stdout.startswith("[", start):
            with contextlib.suppress(ValueError):
                value, _ = decoder.raw_decode(stdout, start)
                if isinstance(value, list) and all(isinstance(item, dict) for item in value):
                    return value
    raise AssertionError(f"no JSON list in: {stdout[:500]}")


def test_airflow_cli_lists_the_provider_and_its_hooks() -> None:
    providers = _airflow("providers", "list", "-o", "json", env={})
    assert providers.returncode == 0, providers.stderr
    assert any(p["package_name"] == "airflow-provider-dify" for p in _json_list(providers.stdout))
    hooks = _json_list(_airflow("providers", "hooks", "-o", "json", env={}).stdout)
    for conn_type, cls in (("dify", "dify_provider.hooks.dify.DifyHook"),
                           ("chenyu", "dify_provider.hooks.chenyu.ChenyuHook")):
        assert any(h.get("connection_type") == conn_type and h.get("class") == cls for h in hooks), (conn_type, hooks)


def test_airflow_connections_test_true_and_false(dify_emulator: DifyEmulator) -> None:
    env = {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
           "AIRFLOW_CONN_DIFY_DEFAULT": os.environ["AIRFLOW_CONN_DIFY_DEFAULT"]}
    good = _airflow("connections", "test", "dify_default", env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Connection success!" in good.stdout  # the CLI shows the hook's message only on failure

    conn = json.loads(env["AIRFLOW_CONN_DIFY_DEFAULT"])
    conn["password"] = "app-this-is-wrong"
    bad = _airflow("connections", "test", "dify_default",
                   env={**env, "AIRFLOW_CONN_DIFY_DEFAULT": json.dumps(conn)})
    assert "Connection failed!" in bad.stdout
    if AIRFLOW_VERSION >= (3, 3, 2):  # earlier CLIs exit 0 on a failed test
        assert bad.returncode == 1
    assert "check the app API key stored in the connection's password" in bad.stdout + bad.stderr
    assert "app-this-is-wrong" not in bad.stdout + bad.stderr
