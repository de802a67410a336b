"""``python -m bench [--quick]``: run the five workloads, print the tables, write the JSON.

Layout on a two-core machine: the emulator (and this orchestrator, which only starts runs and ends
them on schedule) on one core, every measured poller in a process of its own on the other.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cost as cost_mod
from bench import usage as usage_mod
from bench.emulator import Emulator
from bench.env import RESULTS, cores, machine, pin
from bench.imports import run_imports
from bench.latency import BACKOFF_MAX, run_polling, run_streaming
from bench.load import run_cell
from bench.report import goals, render
from bench.runner import Workspace

PEERS = ("provider", "http_async_hook", "httpx_per_poll", "aiohttp_shared")


@dataclass(frozen=True)
class Profile:
    """How big each workload is. ``full`` is what the README quotes; ``quick`` is the two-minute
    version; ``tiny`` only proves the code path works (``make test``)."""

    name: str
    ns: tuple[int, ...]
    window: float
    interval: float = 2.0
    min_end: float = 2.0
    grace: float = 15.0
    pollers: tuple[str, ...] = PEERS
    latency_runs: int = 150
    latency_max_polls: int = 13
    stream_runs: int = 50
    stream_window: float = 20.0
    scale: float = 20.0
    replicas: int = 3
    import_reps: int = 7
    #: Usage accounting on the streaming path: runs of this many LLM nodes, passes per variant.
    usage_nodes: tuple[int, ...] = (200, 2000)
    usage_rounds: int = 3
    #: A first, unmeasured interpreter that fills the bytecode cache (the zygote mostly has).
    import_warmup: bool = True
    #: Probe imports while the rest runs (only where timings do not matter: the tiny code-path check).
    imports_in_background: bool = False
    seed: int = 7
    notes: list[str] = field(default_factory=list)


PROFILES = {
    "full": Profile("full", ns=(100, 1000, 3000), window=60.0),
    "quick": Profile("quick", ns=(1000,), window=12.0, grace=10.0, latency_runs=60, latency_max_polls=4,
                     stream_runs=20, stream_window=6.0, scale=60.0, replicas=2, import_reps=3,
                     usage_nodes=(200, 500)),
    "tiny": Profile("tiny", ns=(5,), window=0.6, interval=0.3, min_end=0.35, grace=5.0, latency_runs=4,
                    latency_max_polls=2, stream_runs=3, stream_window=0.5, scale=600.0, replicas=1,
                    import_reps=1, import_warmup=False, imports_in_background=True, usage_nodes=(10,),
                    usage_rounds=1),
}


def run(profile: Profile, out_dir: Path, keep: bool = False) -> dict[str, Any]:
    began = time.monotonic()
    poller_core, emulator_core = cores()
    about = machine()
    pin(emulator_core)  # this process shares the emulator's core: it only starts and ends runs
    workdir = Path(tempfile.mkdtemp(prefix="dify-bench-"))
    results: dict[str, Any] = {
        "mode": profile.name,
        "profile": asdict(profile),
        "machine": about,
        "cores": {"pollers": poller_core, "emulator_and_orchestrator": emulator_core},
        "pool_size": 20,
        "load_average_at_start": os.getloadavg(),
        "failures": [],
    }
    say = _printer()
    background: concurrent.futures.Future[dict[str, Any]] | None = None
    pool = concurrent.futures.ThreadPoolExecutor(1)
    if profile.imports_in_background:
        # On the other core, so that it does not slow the pollers' zygote down.
        background = pool.submit(run_imports, workdir, profile.import_reps, emulator_core,
                                 warmup=profile.import_warmup)
    try:
        with Workspace(workdir, poller_core, emulator_core) as ws, Emulator(emulator_core, ws.home) as emu:
            say(f"emulator at {emu.base_url}; pollers on core {poller_core}, emulator on core {emulator_core}")
            ws.zygote(emu)
            say("zygote ready (Airflow, the provider and the peers imported once)")
            results["load"] = []
            for n in profile.ns:
                for poller in profile.pollers:
                    say(f"load: {poller} x {n:,} runs over {profile.window:g} s ...")
                    try:
                        cell = run_cell(ws, emu, poller, n, interval=profile.interval, window=profile.window,
                                        min_end=profile.min_end, seed=profile.seed, grace=profile.grace)
                    except Exception as exc:
                        results["failures"].append(f"load {poller} {n}: {exc}")
                        traceback.print_exc()
                        continue
                    results["load"].append(cell)
                    say(f"  {cell['cpu_s_per_1000_polls']} CPU s/1000 polls, on schedule {cell['on_schedule']}, "
                        f"+{cell['rss_over_base_mb']} MB, {cell['sockets_peak']} sockets, {cell['errors']} errors")
            say("latency: polling (fixed + backoff) and the cost check's real runs ...")
            waiters, ends = cost_mod.validation_waiters(profile.interval, BACKOFF_MAX, profile.scale, profile.replicas)
            polling = run_polling(ws, emu, runs_per_mode=profile.latency_runs, interval=profile.interval,
                                  max_polls=profile.latency_max_polls, seed=profile.seed,
                                  extra_waiters=waiters, extra_ends=ends)
            say("latency: the operator's streaming path ...")
            streaming = run_streaming(ws, emu, runs=profile.stream_runs, window=profile.stream_window,
                                      seed=profile.seed)
            results["latency"] = {"polling": polling, "streaming": streaming}
            say(f"usage accounting: the streaming path's events with and without it ({profile.usage_rounds} "
                f"passes at {', '.join(f'{n:,}' for n in profile.usage_nodes)} nodes) ...")
            try:
                results["usage"] = usage_mod.run_accounting(ws, emu, nodes=profile.usage_nodes,
                                                            rounds=profile.usage_rounds, seed=profile.seed)
            except Exception as exc:
                results["failures"].append(f"usage accounting: {exc}")
                traceback.print_exc()
            cpu_per_poll = _provider_cpu_ms(results["load"])
            results["cost"] = cost_mod.report(interval=profile.interval, backoff_max=BACKOFF_MAX, scale=profile.scale,
                                              cpu_ms_per_poll=cpu_per_poll, real_runs=polling.pop("extra_runs"))
        if background is None:
            say(f"imports: {profile.import_reps} fresh interpreters ...")
            results["imports"] = run_imports(workdir, profile.import_reps, poller_core, warmup=profile.import_warmup)
        else:
            results["imports"] = background.result()
    finally:
        pool.shutdown()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"work files kept in {workdir}")
    results["duration_s"] = round(time.monotonic() - began, 1)
    results["load_average_at_end"] = os.getloadavg()
    results["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["goals"] = goals(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(results, indent=2)
    (out_dir / f"{profile.name}-{stamp}.json").write_text(text)
    (out_dir / f"latest-{profile.name}.json").write_text(text)
    results["table"] = render(results)
    return results


def _provider_cpu_ms(cells: list[dict[str, Any]]) -> float | None:
    """CPU per poll of the trigger at the largest N it kept up with (ms = s per 1,000 polls)."""
    mine = [c for c in cells if c["poller"] == "provider" and c["cpu_s_per_1000_polls"]]
    kept_up = [c for c in mine if (c["on_schedule"] or 0) >= 0.99] or mine
    if not kept_up:
        return None
    value: float = max(kept_up, key=lambda c: c["n"])["cpu_s_per_1000_polls"]
    return value


def _printer() -> Any:
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the two-minute version (N=1,000 only, short windows)")
    size.add_argument("--tiny", action="store_true", help="code-path check at N=5 (used by make test)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes (default bench/results/)")
    parser.add_argument("--keep", action="store_true", help="keep the children's specs and logs")
    args = parser.parse_args(argv)
    profile = PROFILES["tiny" if args.tiny else "quick" if args.quick else "full"]
    results = run(profile, args.out, keep=args.keep)
    print(results["table"])
    print(f"\nJSON: {args.out / f'latest-{profile.name}.json'}")
    if results["failures"]:
        print("\nFAILURES:\n" + "\n".join(results["failures"]), file=sys.stderr)
        return 1
    return 0
