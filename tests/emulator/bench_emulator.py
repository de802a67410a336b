"""Benchmark: emulator startup, and N held runs each polled once per interval (not a pytest module).

    .venv/bin/python tests/emulator/bench_emulator.py                    # emulator as a subprocess
    .venv/bin/python tests/emulator/bench_emulator.py --clients 2        # two polling processes
    .venv/bin/python tests/emulator/bench_emulator.py --mode inproc      # emulator thread in-process
    .venv/bin/python tests/emulator/bench_emulator.py --transport httpcore

Each run is started in streaming mode (the client hangs up after the first event: 1.13+ keeps the
run going) with a held scenario, so all N stay ``running`` for the whole window. Then each client
process polls ``GET /workflows/run/{id}`` for its share of the runs once per interval through one
pooled ``httpx.AsyncClient``, pollers staggered over the interval as independent waiters would be.
Reported: startup, polls done vs planned, errors, latency percentiles (overall and p99 per
second), how late polls started against their schedule (client-side loop lag), and the CPU used by
the emulator and by the clients during the poll window.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import httpx


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    by_second: dict[int, list[float]] = field(default_factory=dict)
    slips: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    cpu: float = 0.0

    def merge(self, other: Stats) -> None:
        self.latencies += other.latencies
        self.slips += other.slips
        self.cpu += other.cpu
        for second, values in other.by_second.items():
            self.by_second.setdefault(second, []).extend(values)
        for mine, theirs in ((self.errors, other.errors), (self.statuses, other.statuses)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_client(base_url: str, key: str, transport_name: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport: httpx.AsyncBaseTransport | None = None
    if transport_name == "aiohttp":  # what the provider's async client uses
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits)
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=30, transport=transport
    )


async def start_runs(base_url: str, key: str, count: int, transport: str) -> list[str]:
    gate = asyncio.Semaphore(50)
    async with make_client(base_url, key, transport, 100) as client:

        async def one(i: int) -> str:
            body = {"inputs": {"text": f"bench {i}"}, "user": f"bench-{i % 50}", "response_mode": "streaming"}
            async with gate, client.stream("POST", "/workflows/run", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        return str(httpx.Response(200, content=line[6:]).json()["workflow_run_id"])
            raise RuntimeError("stream ended without an event")

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _poll(base_url: str, key: str, run_ids: list[str], begin_wall: float, args: argparse.Namespace) -> Stats:
    stats = Stats()
    loop = asyncio.get_running_loop()
    begin = loop.time() + (begin_wall - time.time())
    ticks = int(args.seconds / args.interval)
    async with make_client(base_url, key, args.transport, args.connections) as client:

        async def poller(index: int, run_id: str) -> None:
            offset = args.interval * index / len(run_ids)
            for tick in range(ticks):
                planned = begin + offset + tick * args.interval
                await asyncio.sleep(max(0.0, planned - loop.time()))
                started = loop.time()
                stats.slips.append(started - planned)
                try:
                    response = await client.get(f"/workflows/run/{run_id}")
                    status = response.json()["status"] if response.status_code == 200 else str(response.status_code)
                except httpx.HTTPError as exc:
                    stats.errors[type(exc).__name__] = stats.errors.get(type(exc).__name__, 0) + 1
                    continue
                stats.statuses[status] = stats.statuses.get(status, 0) + 1
                elapsed = loop.time() - started
                stats.latencies.append(elapsed)
                stats.by_second.setdefault(int(planned - begin), []).append(elapsed)

        cpu0 = time.process_time()
        await asyncio.gather(*(poller(i, run_id) for i, run_id in enumerate(run_ids)))
        stats.cpu = time.process_time() - cpu0
    return stats


def poll_slice(base_url: str, key: str, run_ids: list[str], begin_wall: float, args: argparse.Namespace) -> Stats:
    return asyncio.run(_poll(base_url, key, run_ids, begin_wall, args))


def poll_all(base_url: str, key: str, run_ids: list[str], args: argparse.Namespace) -> Stats:
    begin_wall = time.time() + 1.0
    if args.clients == 1:
        return poll_slice(base_url, key, run_ids, begin_wall, args)
    slices = [run_ids[i :: args.clients] for i in range(args.clients)]
    total = Stats()
    with ProcessPoolExecutor(args.clients) as pool:
        futures = [pool.submit(poll_slice, base_url, key, part, begin_wall, args) for part in slices]
        for future in futures:
            total.merge(future.result())
    return total


def report(stats: Stats, args: argparse.Namespace, server_cpu: float, window: float) -> None:
    planned = args.runs * int(args.seconds / args.interval)
    ms = [x * 1000 for x in stats.latencies]
    slips = [x * 1000 for x in stats.slips]
    print(f"polls: {len(ms)}/{planned} ok, errors={stats.errors or 0}, statuses={stats.statuses}")
    print(f"rate: {len(ms) / args.seconds:.0f} polls/s planned over {args.seconds:.0f}s (window took {window:.1f}s)")
    print(
        f"latency ms: p50={pct(ms, 0.5):.1f} p95={pct(ms, 0.95):.1f} p99={pct(ms, 0.99):.1f} "
        f"max={max(ms):.1f} mean={statistics.fmean(ms):.1f}"
    )
    per_second = " ".join(f"{pct(v, 0.99) * 1000:.0f}" for _, v in sorted(stats.by_second.items()))
    print(f"p99 latency ms by second: {per_second}")
    print(f"poll start slip ms (client loop lag): p50={pct(slips, 0.5):.1f} p99={pct(slips, 0.99):.1f}")
    print(f"CPU over the poll window: emulator {server_cpu / window:.0%} of a core, ", end="")
    print(f"clients {stats.cpu / window:.0%} of a core ({args.clients} process(es), {args.transport})")


def run_benchmark(base_url: str, script: Callable[[int], None], key: str, pid: int, args: argparse.Namespace) -> None:
    script(args.runs)
    t0 = time.perf_counter()
    run_ids = asyncio.run(start_runs(base_url, key, args.runs, args.transport))
    took = time.perf_counter() - t0
    print(f"started {len(run_ids)} held runs (streaming, hang up after the first event) in {took:.2f}s")
    cpu0, t1 = cpu_seconds(pid), time.perf_counter()
    stats = poll_all(base_url, key, run_ids, args)
    window = time.perf_counter() - t1 - 1.0  # minus the 1 s lead-in
    report(stats, args, cpu_seconds(pid) - cpu0, window)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["subprocess", "inproc"], default="subprocess")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=1, help="polling processes (runs split between them)")
    parser.add_argument("--connections", type=int, default=100, help="pool size per client process")
    parser.add_argument(
        "--transport",
        choices=["aiohttp", "httpcore"],
        default="aiohttp",
        help="httpx.AsyncClient over httpx-aiohttp (as the provider does) or over httpx's own pool",
    )
    args = parser.parse_args()
    hold = {"steps": 1, "step_seconds": 0, "hold": True}

    if args.mode == "inproc":
        t0 = time.perf_counter()
        from dify_provider.testing import DifyEmulator, Scenario

        imported = time.perf_counter() - t0
        t1 = time.perf_counter()
        with DifyEmulator() as emu:
            httpx.get(f"{emu.base_url}/").raise_for_status()
            first = time.perf_counter() - t1
            print(f"import {imported:.3f}s; start() {emu.startup_seconds:.3f}s; start-to-first-answer {first:.3f}s")
            script = lambda n: emu.script("echo", *[Scenario(**hold)] * n)  # noqa: E731
            run_benchmark(emu.base_url, script, emu.api_key(), os.getpid(), args)
            print("(in-process: the emulator CPU figure includes this process's own work)")
        return

    t0 = time.perf_counter()
    command = [sys.executable, "-m", "dify_provider.testing", "serve", "--port", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().rsplit(" ", 1)[-1].strip()
        admin = base_url.removesuffix("/v1") + "/_emulator"
        httpx.get(f"{admin}/apps").raise_for_status()  # GET /v1/ is a 404 page, as on Dify 1.13.2
        print(f"process spawn-to-first-answer {time.perf_counter() - t0:.3f}s (python start + imports + bind)")

        def script(n: int) -> None:
            httpx.post(f"{admin}/script", json={"app": "echo", "scenarios": [hold] * n}).raise_for_status()

        run_benchmark(base_url, script, "app-emulator-echo", proc.pid, args)
        httpx.post(f"{admin}/reset").raise_for_status()
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
