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
from dify_provider.provider_info import CHENYU_CONNECTION_EXTRAS, CONNECTION_EXTRAS, FIELD_BEHAVIOUR
from dify_provider.testing import DifyEmulator
from dify_provider.version_compat import AIRFLOW_V_3_0_PLUS

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


HOOK_CLASS = {"dify": "dify_provider.hooks.dify.DifyHook", "chenyu": "dify_provider.hooks.chenyu.ChenyuHook"}


@pytest.mark.parametrize(("conn_type", "extras"), [("dify", CONNECTION_EXTRAS), ("chenyu", CHENYU_CONNECTION_EXTRAS)])
def test_the_ui_builds_each_connection_form(conn_type: str, extras: dict[str, Any]) -> None:
    """The form as the UI gets it, on every version. Airflow 3 serves ``/ui/connections/hook_meta``
    from ``HookMetaService`` (fields from provider info's ``conn-fields`` on 3.2+, from the hook's
    WTForms methods under mocks on 3.0/3.1, which needs WTForms importable); Airflow 2's FAB form
    is built from ProvidersManager's widgets, i.e. the hook's methods."""
    if AIRFLOW_V_3_0_PLUS:
        from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

        (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == conn_type]
        assert meta.hook_class_name == HOOK_CLASS[conn_type]
        assert set(meta.extra_fields or {}) == set(extras)
        for name, spec in extras.items():
            field = (meta.extra_fields or {})[name]
            assert field["schema"]["title"] == spec["label"]
            assert field["description"] == spec.get("description")
            default = spec["schema"].get("default")
            # 3.2+ masks the values of fields whose names look sensitive (a proxy URL may hold a password)
            masked = ("***",) if name == "proxy" else ()
            assert field["value"] in (default, None if default is None else str(default), *masked)
            assert ("boolean" in field["schema"]["type"]) == ("boolean" in str(spec["schema"]["type"]))
        assert meta.standard_fields is not None
        behaviour = FIELD_BEHAVIOUR[conn_type]
        assert meta.standard_fields.host is not None
        assert meta.standard_fields.host.title == behaviour["relabeling"]["host"]
        for hidden in behaviour["hidden-fields"]:
            standard = getattr(meta.standard_fields, "url_schema" if hidden == "schema" else hidden)
            assert standard is not None, hidden
            assert standard.hidden, hidden
        return
    from airflow.providers_manager import ProvidersManager

    from dify_provider.hooks.base import field_behaviour

    manager = ProvidersManager()
    widgets = manager.connection_form_widgets
    assert {key for key in widgets if key.startswith(f"extra__{conn_type}__")} == {
        f"extra__{conn_type}__{name}" for name in extras
    }
    for name, spec in extras.items():
        widget = widgets[f"extra__{conn_type}__{name}"]
        assert widget.hook_class_name == HOOK_CLASS[conn_type].rpartition(".")[2]
        assert widget.package_name == "airflow-provider-dify"
        assert str(widget.field.args[0]) == spec["label"]
    assert manager.field_behaviours[conn_type] == field_behaviour(FIELD_BEHAVIOUR[conn_type])


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """This environment, with a bytecode cache the module's ``airflow`` commands share: where
    ``PYTHONDONTWRITEBYTECODE`` is set, each would compile Airflow anew (half of its ~6 s on 2.11)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    return env


def _airflow(*args: str, env: dict[str, str], base: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIRFLOW, *args], capture_output=True, text=True, timeout=120,
                          env={**base, **env}, check=False)


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


def test_airflow_cli_lists_the_provider_and_its_hooks(cli_env: dict[str, str]) -> None:
    providers = _airflow("providers", "list", "-o", "json", env={}, base=cli_env)
    assert providers.returncode == 0, providers.stderr
    assert any(p["package_name"] == "airflow-provider-dify" for p in _json_list(providers.stdout))
    hooks = _json_list(_airflow("providers", "hooks", "-o", "json", env={}, base=cli_env).stdout)
    for conn_type, hook_class in HOOK_CLASS.items():
        assert any(h.get("connection_type") == conn_type and h.get("class") == hook_class for h in hooks), (
            conn_type, hooks)


def test_airflow_connections_test_true_and_false(dify_emulator: DifyEmulator, cli_env: dict[str, str]) -> None:
    env = {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
           "AIRFLOW_CONN_DIFY_DEFAULT": os.environ["AIRFLOW_CONN_DIFY_DEFAULT"]}
    good = _airflow("connections", "test", "dify_default", env=env, base=cli_env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Connection success!" in good.stdout  # the CLI shows the hook's message only on failure

    conn = json.loads(env["AIRFLOW_CONN_DIFY_DEFAULT"])
    conn["password"] = "app-this-is-wrong"
    bad = _airflow("connections", "test", "dify_default",
                   env={**env, "AIRFLOW_CONN_DIFY_DEFAULT": json.dumps(conn)}, base=cli_env)
    assert "Connection failed!" in bad.stdout
    if AIRFLOW_VERSION >= (3, 3, 2):  # earlier CLIs exit 0 on a failed test
        assert bad.returncode == 1
    assert "check the app API key stored in the connection's password" in bad.stdout + bad.stderr
    assert "app-this-is-wrong" not in bad.stdout + bad.stderr
