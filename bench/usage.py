"""Workload 5, usage accounting on the streaming path: how many stream events per second the
operator consumes with and without metering the run's spend and checking its budget.

A long workflow run's SSE stream is built in memory with the emulator's own payloads
(``workflow_started``; per LLM node ``node_started``, a few ``text_chunk`` and a ``node_finished``
whose ``execution_metadata`` has tokens, a decimal-string price and a currency, and whose outputs
split the tokens; ``workflow_finished``), framed as Dify frames it, one frame per read as a live
stream delivers it. A real :class:`~dify_provider.client.DifyClient` reads it through an
``httpx.MockTransport`` (httpx, httpx-sse, ``decode_sse``, the pydantic event models: all the
client's code, no socket), and the operator's own ``_follow_stream`` consumes the events with
one of three accounts:

- ``none``: an account that does nothing (the loop as it would be without usage accounting);
- ``meter``: :meth:`UsageMeter.see <dify_provider.client.usage.UsageMeter.see>` on every event;
- ``budget``: the real :class:`~dify_provider.operators.usage.UsageAccount` with an active token
  budget (never reached), over a real :class:`~dify_provider.operators.run_memory.RunMemory`
  whose task state store is a dict: when the spend grows it checks the budget, and writes the
  spend into the record at most every ``SAVE_EVERY`` seconds (a real store's write is a call to
  Airflow's supervisor: one per two seconds at most, not measured here).

The three run in turns, a fresh stream and account per pass, CPU time (``process_time``) of
``_follow_stream`` per pass (opening the request is per run, not per event); the median of the
passes is the figure. In ``python -m bench`` it runs in a child forked from the zygote (Airflow and
the provider already imported), pinned to the poller core, with the emulator idle;
``python -m bench.usage`` runs it alone in-process (e.g. while making the accounting cheaper).
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from bench.emulator import Emulator
    from bench.runner import Workspace

#: ``text_chunk`` events per LLM node (its answer, streamed).
CHUNKS = 3
VARIANTS = ("none", "meter", "budget")
#: The budget of the ``budget`` variant: active, never reached.
BUDGET_TOKENS = 10**12


def stream_frames(nodes: int, chunks: int = CHUNKS, seed: int = 7) -> tuple[list[bytes], str, int]:
    """The SSE frames of a succeeded run of ``nodes`` LLM nodes between a start and an end node,
    in the shapes the emulator sends; returns (frames, run id, total tokens)."""
    from dify_provider.client.status import WorkflowRunStatus
    from dify_provider.testing import payloads
    from dify_provider.testing.models import EmulatedApp, Scenario
    from dify_provider.testing.runs import Node, Run
    from dify_provider.testing.sse import encode

    rng = random.Random(seed)
    began = 1_767_000_000.0
    run = Run(id=str(uuid.UUID(int=rng.getrandbits(128))), task_id=str(uuid.UUID(int=rng.getrandbits(128))),
              app=EmulatedApp(name="bench-usage"), user="bench", inputs={"text": "a long run"}, files=[],
              scenario=Scenario(steps=nodes + 2), seq=1, created_at=began)
    frames = [encode(payloads.workflow_started(run, "initial"))]
    at = began
    for index in range(nodes + 2):
        kind = "start" if index == 0 else "end" if index == nodes + 1 else "llm"
        node = Node(index=index + 1, node_id=kind if kind != "llm" else f"llm_{index}", node_type=kind,
                    title=kind.title() if kind != "llm" else f"LLM {index}",
                    predecessor=run.nodes[-1].node_id if run.nodes else None,
                    inputs=run.stored_inputs if kind == "start" else {}, started_at=at,
                    execution_id=str(uuid.UUID(int=rng.getrandbits(128))))
        run.nodes.append(node)
        run.steps += 1
        frames.append(encode(payloads.node_started(run, node)))
        if kind == "llm":
            words = [f"chunk {c} of node {index}: " + " ".join(rng.choice(("lorem", "ipsum", "dolor", "sit"))
                                                                for _ in range(8)) for c in range(chunks)]
            frames += [encode(payloads.text_chunk(run, w, [node.node_id, "text"])) for w in words]
            node.tokens = rng.randint(200, 1500)
            node.outputs = {"text": "".join(words)}
        elif kind == "start":
            node.outputs = dict(run.stored_inputs)
        else:
            node.outputs = {"result": "done"}
        at += rng.uniform(0.2, 2.0)
        node.finished_at, node.status = at, "succeeded"
        run.tokens += node.tokens
        frames.append(encode(payloads.node_finished(run, node)))
    run.status, run.finished_at, run.outputs = WorkflowRunStatus.SUCCEEDED, at, {"result": "done"}
    frames.append(encode(payloads.workflow_finished(run)))
    return frames, run.id, run.tokens


class _Frames(httpx.SyncByteStream):
    """A response body that hands the frames over one read at a time, as a live stream does."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.frames)



class _NoAccount:
    """The loop without usage accounting: an account that takes nothing."""

    run_id: str | None = None

    def see(self, event: Any) -> None:
        return None


class _MeterOnly:
    """Usage metering alone (no budget, no record)."""

    run_id: str | None = None

    def __init__(self) -> None:
        from dify_provider.client.usage import UsageMeter

        self.meter = UsageMeter()

    def see(self, event: Any) -> None:
        self.meter.see(event)


class _DictStore:
    """Airflow's task state store, as a dict."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.writes += 1
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class Harness:
    """One client over the in-memory stream, one operator, and a pass per (variant) call."""

    def __init__(self, frames: list[bytes]) -> None:
        from dify_provider.client import ClientConfig, DifyClient
        from dify_provider.operators.workflow import DifyRunWorkflowOperator

        def answer(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"},
                                  stream=_Frames(frames))

        self.client = DifyClient(ClientConfig(api_key="app-bench", base_url="http://dify.invalid/v1"),
                                 transport=httpx.MockTransport(answer))
        self.operator = DifyRunWorkflowOperator(task_id="bench_usage")
        self.deadline = types.SimpleNamespace(fired=False)
        #: What the last pass of each variant metered, and how often it wrote the record.
        self.last: dict[str, dict[str, Any]] = {}
        self._store: _DictStore | None = None

    def account(self, variant: str) -> Any:
        if variant == "none":
            return _NoAccount()
        if variant == "meter":
            return _MeterOnly()
        from dify_provider.client.usage import Budget
        from dify_provider.operators.run_memory import RunMemory
        from dify_provider.operators.usage import UsageAccount

        store = self._store = _DictStore()
        context: Any = {"ti": types.SimpleNamespace(try_number=1, dag_id="bench", task_id="bench_usage",
                                                    run_id="bench-run", map_index=-1),
                        "task_state_store": store}
        memory = RunMemory(context)
        return UsageAccount(context, memory, Budget.of(max_total_tokens=BUDGET_TOKENS), self.operator.log)

    def once(self, variant: str) -> tuple[float, float]:
        """One run's stream; (CPU seconds, wall seconds) of ``_follow_stream`` reading it after
        ``workflow_started`` (opening the request is per run, not per event)."""
        from dify_provider.client.models import WorkflowStartedEvent

        account = self.account(variant)
        attempt = types.SimpleNamespace(started=time.time(), account=account)
        stream = self.client.run_workflow({"text": "a long run"}, "bench", response_mode="streaming")
        # As the operator does: the first event announces the run, which the try then attaches to.
        first = next(iter(stream))
        if not isinstance(first, WorkflowStartedEvent):
            raise RuntimeError(f"the stream began with {first!r}")
        if variant == "budget":
            account.memory.started(first.workflow_run_id, first.task_id, "bench")
            account.attach(first.workflow_run_id)
            if self._store is not None:
                self._store.writes = 0  # count the spend's writes only
        gc.collect(1)  # the young garbage of the last pass (a full collection over Airflow's heap takes 0.1 s)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        snapshot = self.operator._follow_stream(attempt, stream, first.workflow_run_id, self.deadline)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        stream.close()
        if snapshot is None or snapshot.status != "succeeded":
            raise RuntimeError(f"the {variant} pass did not see the run succeed: {snapshot}")
        meter = getattr(account, "meter", None)
        self.last[variant] = {"tokens": meter.total_tokens if meter is not None else None,
                              "writes": self._store.writes if variant == "budget" and self._store else None}
        return cpu, wall

    def close(self) -> None:
        self.client.close()


@dataclass
class Prepared:
    """One run's stream, built before the measurement starts."""

    nodes: int
    frames: list[bytes]
    tokens: int


def prepare(sizes: list[int], chunks: int = CHUNKS, seed: int = 7) -> list[Prepared]:
    out = []
    for nodes in sizes:
        frames, _, tokens = stream_frames(nodes, chunks, seed)
        out.append(Prepared(nodes, frames, tokens))
    return out


def warm_up() -> None:
    """First-use costs (pydantic validators, loggers, httpx) are not per event: pay them on a short run."""
    harness = Harness(stream_frames(3)[0])
    try:
        for variant in VARIANTS:
            harness.once(variant)
    finally:
        harness.close()


def measure(run: Prepared, rounds: int) -> dict[str, Any]:
    """``rounds`` passes of each variant over one run's stream, in turns (the order rotates each
    round, so a neighbour's burst does not land on one variant); the medians are the figures."""
    harness = Harness(run.frames)
    events = len(run.frames) - 1  # what _follow_stream reads: all but workflow_started
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
    try:
        for r in range(rounds):
            for variant in VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]:
                cpu, wall = harness.once(variant)
                samples[variant].append(cpu)
                walls[variant].append(wall)
        checks = dict(harness.last)
    finally:
        harness.close()
    for variant in ("meter", "budget"):  # the accounting did its job, or its cost means nothing
        if checks[variant]["tokens"] != run.tokens:
            raise AssertionError(f"{variant}: metered {checks[variant]['tokens']} tokens, the run spent {run.tokens}")
    median = {v: statistics.median(samples[v]) for v in VARIANTS}
    base = median["none"]
    finished = run.nodes + 2
    return {
        "nodes": run.nodes,
        "events": events,
        "node_finished_events": finished,
        "body_kb": round(sum(map(len, run.frames)) / 1024, 1),
        "rounds": rounds,
        "run_tokens": run.tokens,
        "state_writes_per_run": checks["budget"]["writes"],
        "cpu_s": {v: [round(s, 6) for s in samples[v]] for v in VARIANTS},
        "wall_s_median": {v: round(statistics.median(walls[v]), 6) for v in VARIANTS},
        "events_per_s": {v: round(events / median[v]) for v in VARIANTS},
        "us_per_event": {v: round(median[v] / events * 1e6, 2) for v in VARIANTS},
        "overhead": {v: {"pct": round((median[v] / base - 1) * 100, 1),
                         "us_per_event": round((median[v] - base) / events * 1e6, 2),
                         "us_per_node_finished": round((median[v] - base) / finished * 1e6, 1),
                         "cpu_s_per_run": round(median[v] - base, 4)}
                     for v in ("meter", "budget")},
    }


def run_accounting(ws: Workspace, emu: Emulator, *, nodes: tuple[int, ...], rounds: int,
                   chunks: int = CHUNKS, seed: int = 7) -> dict[str, Any]:
    """The workload, in a child forked from the zygote on the poller core (the emulator idles)."""
    from bench.runner import run_child

    spec = {"mode": "usage", "nodes": list(nodes), "rounds": rounds, "chunks": chunks, "seed": seed}
    result, _ = run_child(ws, emu, "usage", spec, lambda ready, t0: {})
    return {"chunks_per_llm_node": chunks, "budget_tokens": BUDGET_TOKENS, "runs": result["runs"],
            "cpu_seconds": round(result["cpu_seconds"], 3), "foreign_cores": result["foreign_cores"]}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.usage [--nodes 200 2000] [--rounds 3]``: this workload alone, in this
    process (unpinned, no zygote), to iterate on the accounting's cost."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.usage", description=main.__doc__)
    parser.add_argument("--nodes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=CHUNKS)
    args = parser.parse_args(argv)
    from airflow.providers.common.compat.sdk import BaseOperator  # noqa: F401  - as in a worker

    prepared = prepare(args.nodes, args.chunks)
    warm_up()
    runs = [measure(p, args.rounds) for p in prepared]
    from bench.report import usage_table

    print(usage_table({"chunks_per_llm_node": args.chunks, "budget_tokens": BUDGET_TOKENS, "runs": runs}))
    print(json.dumps([{k: v for k, v in r.items() if k != "cpu_s"} for r in runs], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
