"""The benchmark's code path, once, at tiny N (``python -m bench --tiny``), so it cannot rot.

A benchmark is not a test: nothing here asserts a speed. It asserts that every workload ran,
that the JSON has the shape the README's table is built from, and that the numbers are sane
(polls happened, runs were seen to end, no errors on the happy path).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
POLLERS = {"provider", "http_async_hook", "httpx_per_poll", "aiohttp_shared"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    files = sorted(out.glob("tiny-*.json"))
    assert files, f"no result JSON in {out}: {proc.stderr[-2000:]}"
    assert (out / "latest-tiny.json").read_text() == files[-1].read_text()
    return json.loads(files[-1].read_text()), proc.stdout


def test_load_cells_for_every_poller(tiny: tuple[dict[str, Any], str]) -> None:
    results, _ = tiny
    cells = {c["poller"]: c for c in results["load"]}
    assert set(cells) == POLLERS
    for poller, cell in cells.items():
        assert cell["n"] == 5
        assert cell["polls_done"] >= 5, poller  # at least one poll per run
        assert cell["cpu_s_per_1000_polls"] > 0, poller
        assert 0 < cell["on_schedule"] <= 1.5, poller
        assert cell["rss_over_base_mb"] >= 0, poller
        assert cell["sockets_peak"] >= 0, poller
        assert cell["errors"] == 0, (poller, cell["crash_samples"])
    for poller in ("provider", "http_async_hook", "aiohttp_shared"):
        cell = cells[poller]
        assert cell["unfinished"] == 0
        assert cell["requests_per_run"] >= 1
        assert cell["requests"] == cell["polls_done"]  # every counted poll reached the emulator once
        assert cell["detect_latency_ms"]["n"] == 5
        assert cell["detect_latency_ms"]["p50"] > 0


def test_latency_cost_and_imports(tiny: tuple[dict[str, Any], str]) -> None:
    results, _ = tiny
    latency = results["latency"]
    assert latency["streaming"]["latency_ms"]["n"] == 3
    assert latency["streaming"]["statuses"] == ["succeeded"]
    for mode in ("fixed", "backoff"):
        assert latency["polling"]["latency_ms"][mode]["n"] == 4
    assert latency["polling"]["unfinished"] == 0
    cost = results["cost"]
    rows = {(r["run_length_s"], r["schedule"]): r for r in cost["rows"]}
    assert set(rows) == {(2.0, "fixed"), (2.0, "backoff"), (600.0, "fixed"), (600.0, "backoff")}
    assert rows[(600.0, "fixed")]["requests_per_run"] > rows[(600.0, "backoff")]["requests_per_run"]
    assert rows[(2.0, "fixed")]["requests_per_run"] == rows[(2.0, "backoff")]["requests_per_run"]
    assert {c["case"].split(",")[0] for c in cost["validation"]} == {"fixed", "backoff"}
    assert all(c["real"] for c in cost["validation"])
    imports = results["imports"]
    assert imports["extra_ms"] > 0
    assert any(name.startswith("dify_provider.") for name in imports["slowest_own_modules_ms"])


def test_usage_accounting(tiny: tuple[dict[str, Any], str]) -> None:
    results, stdout = tiny
    usage = results["usage"]
    (run,) = usage["runs"]
    assert run["nodes"] == 10
    assert run["events"] == 5 * 10 + 2 * 2 + 1  # per LLM node 2 + 3 chunks; start and end; workflow_finished
    assert run["run_tokens"] > 0  # and both accounts metered all of it (else the child fails)
    assert run["state_writes_per_run"] >= 1
    for variant in ("none", "meter", "budget"):
        assert run["events_per_s"][variant] > 0, variant
        assert run["us_per_event"][variant] > 0, variant
        assert len(run["cpu_s"][variant]) == 1, variant
    for variant in ("meter", "budget"):  # present and finite; no speed is asserted
        assert set(run["overhead"][variant]) == {"pct", "us_per_event", "us_per_node_finished", "cpu_s_per_run"}
        assert all(isinstance(v, int | float) for v in run["overhead"][variant].values()), variant
    section = stdout.split("### Usage accounting on the streaming path", 1)[1].split("###", 1)[0]
    assert "| 10 LLM nodes, 55 events | `UsageAccount.see`, budget on |" in section
    assert any(line.startswith("Usage accounting on a 10-node run's stream") for line in
               (h.removeprefix("- ") for h in stdout.splitlines()))


def test_report_has_every_section(tiny: tuple[dict[str, Any], str]) -> None:
    results, stdout = tiny
    assert {g["goal"].split(":")[0] for g in results["goals"]} >= {"N=5", "streaming p50 < 50 ms"}
    for heading in ("### Triggerer load", "### Detection latency", "### Cost per run",
                    "### Usage accounting on the streaming path", "### DAG-parse overhead", "### Goals"):
        assert heading in stdout
    assert results["machine"]["usable_cores"] >= 1
    assert results["failures"] == []
