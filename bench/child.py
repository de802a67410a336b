"""The measured processes. ``python -m bench.child --zygote CORE`` imports Airflow, the provider
and every peer once, then forks one child per spec path it reads on stdin (``bench.runner``);
``python -m bench.child SPEC.json`` runs a single spec in a fresh process instead.

A child's protocol (JSON lines on the original stdout; the process's own stdout, where Airflow's
loggers write, goes to a log file as a triggerer sends trigger logs to task logs): measure the idle
baseline (RSS, sockets) before any waiter exists, print ``{"ready": ...}``, read ``GO <t0>`` from
stdin, ``t0`` being a ``time.monotonic()`` instant (system-wide on Linux, so shared with the
orchestrator that ends the runs). Waiter ``i`` starts at ``t0 + offset_i``, as deferred tasks
reach a triggerer at different moments. When every waiter has seen its run end (or the deadline
passed) it prints ``{"result": ...}``: per-run polls, errors, detection instants, and the
process's CPU, peak RSS and peak sockets over the window. The zygote then reports the child's
exit status as ``{"exited": code}``.

``mode: "stream"`` measures the operator's streaming path instead: the child starts each run with
``DifyClient.run_workflow(..., response_mode="streaming")`` and follows it with the operator's own
``_follow_stream`` in a thread (the operator is synchronous), reporting when each sees the end.

``mode: "usage"`` measures what usage accounting costs that path per event (:mod:`bench.usage`):
in-memory streams through the real client and ``_follow_stream``, the emulator idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
import threading
import time
import types
from pathlib import Path
from typing import IO, Any

from bench.env import cpu_seconds, open_sockets, pin, rss_bytes


class Meter:
    """Peak RSS and sockets, sampled; the idle baseline is taken before any waiter exists."""

    def __init__(self) -> None:
        gc.collect()
        self.base_rss = rss_bytes()
        self.base_sockets = open_sockets()
        self.peak_rss = self.base_rss
        self.peak_sockets = self.base_sockets
        self.cpu0 = 0.0
        self.t0 = 0.0

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, rss_bytes())
        self.peak_sockets = max(self.peak_sockets, open_sockets())

    def start(self) -> None:
        self.cpu0 = cpu_seconds()
        self.t0 = time.monotonic()

    def report(self) -> dict[str, Any]:
        self.sample()
        return {
            "cpu_seconds": cpu_seconds() - self.cpu0,
            "wall_seconds": time.monotonic() - self.t0,
            "base_rss": self.base_rss,
            "peak_rss": self.peak_rss,
            "base_sockets": self.base_sockets,
            "peak_sockets": self.peak_sockets,
        }


def _redirect_output(log_path: str) -> IO[str]:
    """Keep the real stdout for the protocol; everything else printed goes to the log file."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.close(log_fd)
    return proto


class _Unbudgeted:
    """A try's usage account without Airflow: meters every event, never over a budget."""

    def __init__(self) -> None:
        from dify_provider.client.usage import UsageMeter

        self.meter = UsageMeter()

    def see(self, event: Any) -> None:
        self.meter.see(event)


def _say(proto: IO[str], **message: Any) -> None:
    proto.write(json.dumps(message) + "\n")
    proto.flush()


def _read_go() -> float:
    line = sys.stdin.readline().split()
    if len(line) != 2 or line[0] != "GO":
        raise SystemExit(f"expected 'GO <t0>', got {line!r}")
    return float(line[1])


# --- polling waiters (one asyncio loop, as in one triggerer) ---------------------------------------


def run_pollers(spec: dict[str, Any], proto: IO[str]) -> None:
    from bench.pollers import POLLERS, Context, WaitResult, WaitSpec, preload

    waits = [WaitSpec(**w["wait"]) for w in spec["waiters"]]
    offsets = [float(w["offset"]) for w in spec["waiters"]]
    preload({w.poller for w in waits})  # a no-op in a child forked from the zygote
    results = [WaitResult(run_id=w.run_id, poller=w.poller) for w in waits]
    time.sleep(0.2)
    meter = Meter()
    import dify_provider

    _say(proto, ready={"base_rss": meter.base_rss, "base_sockets": meter.base_sockets,
                       "provider_src": str(Path(dify_provider.__file__).parent)})
    t0 = _read_go()

    async def main() -> dict[str, Any]:
        ctx = Context(spec["base_url"], spec["api_key"])
        loop = asyncio.get_running_loop()
        loop_t0 = loop.time() + (t0 - time.monotonic())
        # The loop's own self-pipe is a socket pair: part of the idle baseline, not of a poller.
        meter.base_sockets = meter.peak_sockets = open_sockets()
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        meter.start()
        stop = asyncio.Event()

        async def sampler() -> None:
            while not stop.is_set():
                meter.sample()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), spec.get("sample_every", 0.5))

        async def one(index: int) -> None:
            at = loop_t0 + offsets[index]
            await asyncio.sleep(max(0.0, at - loop.time()))
            results[index].started = time.monotonic()
            await POLLERS[waits[index].poller](ctx, waits[index], results[index])

        sampling = asyncio.create_task(sampler())
        tasks = [asyncio.create_task(one(i)) for i in range(len(waits))]
        done, pending = await asyncio.wait(tasks, timeout=max(1.0, t0 + spec["deadline"] - time.monotonic()))
        report = meter.report()  # before any clean-up: the window ends when the last run is seen
        failures = [repr(t.exception())[:300] for t in done if not t.cancelled() and t.exception()]
        report["unfinished"] = len(pending)
        report["crashed"] = failures[:5]
        report["crashes"] = len(failures)
        report["runs"] = [r.as_dict() for r in results]
        if pending:
            # A poller that fell hopelessly behind: report now and leave (cancelling thousands
            # of half-open clients can take minutes and measures nothing).
            _say(proto, result=report)
            os._exit(0)
        stop.set()
        await sampling
        await ctx.aclose()
        return report

    _say(proto, result=asyncio.run(main()))


# --- the operator's streaming path (threads: the operator is synchronous) -------------------------


def run_streams(spec: dict[str, Any], proto: IO[str]) -> None:
    from airflow.providers.common.compat.sdk import BaseOperator  # noqa: F401  - airflow.sdk on Airflow 3

    from dify_provider.client import ClientConfig, DifyClient
    from dify_provider.client.models import WorkflowStartedEvent
    from dify_provider.operators.workflow import DifyRunWorkflowOperator

    operator = DifyRunWorkflowOperator(task_id="bench_stream", timeout=float(spec["deadline"]) + 60)
    config = ClientConfig(api_key=spec["api_key"], base_url=spec["base_url"])
    count = int(spec["stream_runs"])
    started: list[tuple[str, float] | None] = [None] * count
    results: list[dict[str, Any]] = [{} for _ in range(count)]
    ready = threading.Barrier(count + 1)
    gc.collect()
    meter = Meter()

    def follow(index: int) -> None:
        with DifyClient(config) as client:
            stream = client.run_workflow({"text": f"stream {index}"}, f"bench-stream-{index}",
                                         response_mode="streaming")
            began = time.time()
            for event in stream:
                if isinstance(event, WorkflowStartedEvent):
                    started[index] = (event.workflow_run_id, time.monotonic())
                    break
            ready.wait()
            mine = started[index]
            run_id, began_following = mine if mine else ("?", None)
            try:
                with stream.hang_up_at(began + operator.timeout) as deadline:
                    # All of a try it reads: the start time, and an account (no budget) that meters the events.
                    attempt = types.SimpleNamespace(started=began, account=_Unbudgeted())
                    snapshot = operator._follow_stream(attempt, stream, run_id, deadline)
                results[index] = {"run_id": run_id, "poller": "stream", "polls": 0, "errors": 0,
                                  "started": began_following, "detected": time.monotonic(),
                                  "status": snapshot.status if snapshot else None}
            finally:
                stream.close()

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    ready.wait(timeout=120)
    _say(proto, ready={"base_rss": meter.base_rss, "base_sockets": meter.base_sockets,
                       "run_ids": [s[0] if s else None for s in started]})
    t0 = _read_go()
    time.sleep(max(0.0, t0 - time.monotonic()))
    meter.start()
    deadline = t0 + float(spec["deadline"])
    for thread in threads:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
    report = meter.report()
    report["unfinished"] = sum(1 for t in threads if t.is_alive())
    report["crashes"] = 0
    report["crashed"] = []
    report["runs"] = [r for r in results if r]
    _say(proto, result=report)


# --- usage accounting on the streaming path (in-memory streams, no emulator) ---------------------


def run_usage(spec: dict[str, Any], proto: IO[str]) -> None:
    from bench.usage import measure, prepare, warm_up

    prepared = prepare(spec["nodes"], spec["chunks"], spec["seed"])
    warm_up()
    gc.collect()
    _say(proto, ready={"events": [len(p.frames) for p in prepared]})
    t0 = _read_go()
    time.sleep(max(0.0, t0 - time.monotonic()))
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    runs = [measure(p, int(spec["rounds"])) for p in prepared]
    _say(proto, result={"cpu_seconds": cpu_seconds() - cpu0, "wall_seconds": time.monotonic() - wall0,
                        "runs": runs})


def run_spec(spec_path: str) -> None:
    """Run one spec in this process, then leave without clean-up (threads may still be parked)."""
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("err_path"):
        err_fd = os.open(spec["err_path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(err_fd, 2)
        os.close(err_fd)
    proto = _redirect_output(spec["log_path"])
    try:
        if spec.get("mode") == "stream":
            run_streams(spec, proto)
        elif spec.get("mode") == "usage":
            run_usage(spec, proto)
        else:
            run_pollers(spec, proto)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    proto.flush()
    os._exit(0)  # do not wait on leftover threads (stream deadlines) or atexit hooks


def zygote() -> None:
    """Import everything once, then fork one measured child per spec path read from stdin.

    Importing Airflow takes seconds here; forking a process that already has it loaded (as
    Airflow's own task runner does) keeps every cell's start-up to milliseconds. Each child's
    CPU, RSS and sockets are measured as deltas from its own idle baseline after the fork.
    """
    from bench.pollers import POLLERS, preload

    preload(set(POLLERS) | {"stream"})
    # No gc.freeze(): a triggerer does not freeze its heap, and the cyclic GC's full collections
    # over Airflow's objects are part of what each poller's allocations cost.
    gc.collect()
    sys.stdout.write(json.dumps({"zygote": os.getpid()}) + "\n")
    sys.stdout.flush()
    while True:
        line = sys.stdin.readline()
        if not line.strip():
            return
        pid = os.fork()
        if pid == 0:
            run_spec(line.strip())
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(json.dumps({"exited": os.waitstatus_to_exitcode(status)}) + "\n")
        sys.stdout.flush()


def main() -> None:
    pin(int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "-" else None)
    if sys.argv[1] == "--zygote":
        zygote()
    else:
        run_spec(sys.argv[1])


if __name__ == "__main__":
    main()
