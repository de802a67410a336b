"""The pytest fixtures (env var, factory, custom apps) and ``python -m dify_provider.testing serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from dify_provider.testing import DifyEmulator, EmulatedApp, InputField, Scenario

from .conftest import SSL, make_client, run_body


def test_fixture_sets_the_airflow_connection(emu: DifyEmulator) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_DIFY_DEFAULT"])
    assert conn == {
        "conn_type": "dify",
        "host": emu.base_url,
        "password": emu.api_key("echo"),
        "extra": {"console_url": emu.root_url, "app_id": emu.app_id("echo")},
    }
    assert conn["host"].endswith("/v1")
    assert conn["password"].startswith("app-")


def test_factory_builds_custom_apps(dify_emulator_factory: Callable[..., DifyEmulator]) -> None:
    review = EmulatedApp(
        name="review",
        api_key="app-custom-key",
        inputs=(InputField(variable="doc", type="select", options=("a", "b"), required=True),),
        scenario=Scenario(steps=1, step_seconds=0),
        outputs_fn=lambda inputs: {"verdict": f"reviewed {inputs['doc']}"},
    )
    emu = dify_emulator_factory([review], server_version="1.14.0")
    conn = json.loads(os.environ["AIRFLOW_CONN_DIFY_DEFAULT"])
    assert (conn["password"], conn["extra"]["app_id"]) == ("app-custom-key", emu.app_id("review"))
    with make_client(emu, app="review") as c:
        ok = c.post("/workflows/run", json={"inputs": {"doc": "a"}, "user": "u"}).json()
        assert ok["data"]["outputs"] == {"verdict": "reviewed a"}
        bad = c.post("/workflows/run", json={"inputs": {"doc": "z"}, "user": "u"}).json()
        assert bad["message"] == "doc in input form must be one of the following: ['a', 'b']"


def test_ids_are_deterministic_across_instances() -> None:
    first, second = DifyEmulator(), DifyEmulator()
    assert first.api_key("echo") == second.api_key("echo") == "app-emulator-echo"
    assert first.app_id("slow") == second.app_id("slow")


def test_startup_is_fast(dify_emulator_factory: Callable[..., DifyEmulator]) -> None:
    emu = dify_emulator_factory()
    assert emu.startup_seconds is not None
    assert emu.startup_seconds < 0.5


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "apps.json"
    config.write_text(json.dumps({"apps": [{"name": "nightly", "api_key": "app-nightly"}]}))
    command = [sys.executable, "-m", "dify_provider.testing", "serve", "--port", "0", "--config", str(config),
               "--stopped-run-record", "stopped", "--no-version-header", "--stream-idle-timeout", "42"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        base_url = banner.rsplit(" ", 1)[-1].strip()
        assert banner.startswith("Dify emulator 1.13.2 serving http://127.0.0.1:")
        assert base_url.endswith("/v1")
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[1].startswith("app nightly  mode=workflow  key=app-nightly")
        assert lines[2] == "ready (1 apps)\n"  # the last start-up line: scripts wait for it
        with httpx.Client(base_url=base_url, verify=SSL, headers={"Authorization": "Bearer app-nightly"}) as c:
            answer = c.post("/workflows/run", json=run_body())
            assert answer.json()["data"]["status"] == "succeeded"
            assert "x-version" not in answer.headers
            config = c.get(base_url.removesuffix("/v1") + "/_emulator/config").json()
            assert (config["stopped_run_record"], config["version_header"], config["stream_idle_timeout"]) == (
                "stopped", False, 42.0)
            assert config["server_version"] == "1.13.2"  # flags left out keep the defaults
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_chenyu_cli_serves_until_sigterm() -> None:
    command = [sys.executable, "-m", "dify_provider.testing", "chenyu", "--port", "0", "--api-key", "cy-cli-key"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith("Chenyu emulator serving http://127.0.0.1:")
        base_url = banner.rsplit(" ", 1)[-1].strip()
        assert proc.stdout.readline().startswith(f"admin API: {base_url}/_emulator/")
        conn_line = proc.stdout.readline().strip()
        name, _, value = conn_line.partition("=")
        assert name == "AIRFLOW_CONN_CHENYU_DEFAULT"
        assert json.loads(value.strip("'")) == {"conn_type": "chenyu", "host": base_url, "password": "cy-cli-key"}

        with httpx.Client(base_url=base_url) as c:
            created = c.post("/_emulator/runs", json={"hold": True})
            assert created.status_code == 201
            run_order_id = created.json()["run_order_id"]
            progress = "/api/open/v2/workflow/run/execution"
            query = {"run_order_id": run_order_id}
            assert c.get(progress, params=query).status_code == 401  # no key
            read = c.get(progress, params=query, headers={"Authorization": "Bearer cy-cli-key"}).json()
            assert read["code"] == 0
            assert read["data"]["status"] != "succeeded"
            c.post(f"/_emulator/runs/{run_order_id}/finish", json={"status": "succeeded"}).raise_for_status()
            read = c.get(progress, params=query, headers={"Authorization": "Bearer cy-cli-key"}).json()
            assert read["data"]["status"] == "succeeded"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_request_log_updates_by_sequence_number_and_ignores_records_gone() -> None:
    import threading

    from dify_provider.testing.recording import RequestLog

    log = RequestLog(threading.Condition(), limit=2)
    fields = {"method": "GET", "query": {}, "headers": {}, "body": None, "form": None, "app": None, "received_at": 0.0}
    first, second, third = (log.add(path=f"/{i}", **fields) for i in range(3))
    before = log.snapshot()
    log.update(third, status=200)
    log.update(second, fault="reset")
    log.update(first, status=500)  # trimmed away (limit 2): nothing to update, no error
    assert [(r.seq, r.status, r.fault) for r in log.snapshot()] == [(second, None, "reset"), (third, 200, None)]
    assert [(r.status, r.fault) for r in before] == [(None, None), (None, None)]  # a snapshot never changes
    log.update(third, fault="late")
    assert log.snapshot()[-1].status == 200  # an update keeps what it does not set
    log.clear()
    log.update(third, status=503)
    assert log.snapshot() == []
