"""Contract test: every exchange recorded from a real Dify API 1.13.2 (``recordings/``, see its
README) replayed against the emulator with its defaults, which must answer the same way.

The emulator hosts apps mirroring the recorded DSLs (:mod:`.mirror_apps`, same keys and ids).
Run and task ids differ, so each one the emulator hands out is learnt from the response that
introduced it and substituted into later requests. Exchanges recorded *together* replay in the
same order (a stop sent while a stream is open, a logs query while a blocking run runs, ...):
the run is held in the long node (``NodeSpec(hold=True)``) where the real one slept, and the
replay decides when it moves on (``release``/``stop``) instead of sleeping. The chatflow's (70-77) replay
like the others: 75's stream introduces the run id that 76 and 77 read. What is compared:
:mod:`.compare`. Every deliberate difference is one row of :data:`DIFFERENCES`, with its reason;
a listed difference that disappears fails too, so the table stays true.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
import yaml

from dify_provider.testing import DifyEmulator, EmulatorConfig

from .compare import Replayed, compare, parse_sse
from .mirror_apps import held_at, recorded_apps

RECORDINGS = Path(__file__).parent / "recordings"
#: Recorded later from a live 1.13.2 server (``record_live.py``), for what the others leave open.
EXTRA = Path(__file__).parent / "recordings-extra"
HOME = {p.stem: p.parent for folder in (RECORDINGS, EXTRA) for p in folder.glob("*.json") if p.stem != "_index"}
NAMES = sorted(HOME)
SHORT = {name.split("-", 1)[0]: name for name in NAMES}
#: Short enough that the silent-stream recordings (40b/40c) take a fraction of a second.
IDLE_TIMEOUT = 0.3


@dataclass(frozen=True)
class Difference:
    """A deliberate difference: in ``recordings`` (short ids), every mismatch line matching
    ``lines`` (a regex) is this difference, and at least one must still show up."""

    recordings: tuple[str, ...]
    lines: str
    what: str
    why: str
    #: False where this machine cannot show the difference (it depends on an installed version).
    expected: bool = True


#: The recordings' pydantic wrote its minor version into validation messages.
_PYDANTIC = ".".join(pydantic.VERSION.split(".")[:2])


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        ("41", "42", "44", "92", "98", "A7", "A8"),
        r"^body\.message: same text but the pydantic version in its URL: 2\.12 != \d+\.\d+$",
        "pydantic's 'For further information visit https://errors.pydantic.dev/<version>/...' tail",
        "the emulator validates with the installed pydantic, whose version the URL names (recorded: 2.12); "
        "the rest of the message is the same. Not expected where pydantic 2.12 is installed.",
        expected=_PYDANTIC != "2.12",
    ),
)


def _full(short: str) -> str:
    return SHORT[short]


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HOME[name] / f"{name}.json").read_text())
    return data


def _sse(name: str) -> str | None:
    path = HOME[name] / f"{name}.sse.txt"
    return path.read_text() if path.exists() else None


class Live:
    """A replayed request's response, read as far as the replay wants."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.raw = b""
        self._chunks = response.iter_raw()
        self.ended = False

    @property
    def frames(self) -> list[str | dict[str, Any]]:
        return parse_sse(self.raw)

    def read_until(self, done: Callable[[Live], bool], within: float = 5.0) -> Live:
        deadline = time.monotonic() + within
        while not done(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"replay: condition not met within {within}s; got {self.frames}")
            try:
                self.raw += next(self._chunks)
            except StopIteration:
                self.ended = True
                return self
        return self

    def read_frames(self, count: int) -> Live:
        return self.read_until(lambda live: len(live.frames) >= count)

    def read_all(self) -> Live:
        for chunk in self._chunks:
            self.raw += chunk
        self.ended = True
        return self

    def replayed(self) -> Replayed:
        headers = {name: self.response.headers[name] for name in self.response.headers}
        text = self.raw.decode("utf-8", "replace")
        sse = headers.get("content-type", "").startswith("text/event-stream")
        return Replayed(self.response.status_code, headers, text, parse_sse(self.raw) if sse else [],
                        closed_early=not self.ended)


class Replay:
    """Replays the recordings in order against ``emu``; ``mismatches[name]`` collects the result."""

    def __init__(self, emu: DifyEmulator) -> None:
        self.emu = emu
        self.apps = {app.name: app for app in recorded_apps()}
        self.ids: dict[str, str] = {}
        self.mismatches: dict[str, list[str]] = {}
        self.results: dict[str, Replayed] = {}

    # -- plumbing --------------------------------------------------------------------------

    def _mapped(self, text: str) -> str:
        for recorded, ours in self.ids.items():
            text = text.replace(recorded, ours)
        return text

    @contextmanager
    def open(self, short: str, client: httpx.Client | None = None) -> Iterator[Live]:
        request = _load(_full(short))["request"]
        path = self._mapped(request["path"])
        body = None if request["body"] is None else self._mapped(request["body"]).encode()
        with (client or self.client).stream(request["method"], path, headers=request["headers"],
                                            content=body) as response:
            yield Live(response)

    def record(self, short: str, live: Live, *extra: str) -> Replayed:
        name = _full(short)
        recording = _load(name)
        result = live.replayed()
        self._learn(recording, result)
        self.results[name] = result
        self.mismatches[name] = [*compare(recording, _sse(name), result), *extra]
        return result

    def _learn(self, recording: dict[str, Any], result: Replayed) -> None:
        """Map the recorded run/task ids an answer introduced to the emulator's."""
        body = recording["response"].get("body")
        pairs: list[tuple[Any, Any]] = []
        if isinstance(body, dict) and "workflow_run_id" in body:
            with suppress(ValueError):
                pairs.append((body, json.loads(result.text)))
        sse = _sse(recording["name"])
        if sse is not None:
            recorded_events = [f for f in parse_sse(sse.encode()) if isinstance(f, dict)]
            pairs.extend(zip(recorded_events[:1], result.events[:1], strict=False))
        for recorded, ours in pairs:
            for key in ("workflow_run_id", "task_id"):
                if isinstance(ours, dict) and key in recorded and key in ours:
                    self.ids.setdefault(recorded[key], ours[key])

    def simple(self, short: str, client: httpx.Client | None = None) -> Replayed:
        with self.open(short, client) as live:
            live.read_all()
        return self.record(short, live)

    def run_id_of(self, short: str) -> str:
        """The emulator's id of the run recording ``short`` started."""
        recorded = next(f for f in parse_sse((_sse(_full(short)) or "").encode()) if isinstance(f, dict))
        return self.ids[recorded["workflow_run_id"]]

    def detail(self, run_id: str, app: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.apps[app].api_key}"}
        body: dict[str, Any] = self.client.get(f"/v1/workflows/run/{run_id}", headers=headers).json()
        return body

    # -- the replay -----------------------------------------------------------------------------

    def run(self, client: httpx.Client) -> None:
        self.client = client
        groups: dict[str, Callable[[], None]] = {
            "40b": self.silent_streams,
            "90": self.stop_while_streaming,
            "95": self.disconnect,
            "97": self.logs_during_blocking_run,
            "99": lambda: self.stop_from_elsewhere("99", "99b", "99c", "slow", "http"),
            "99d": lambda: self.stop_from_elsewhere("99d", "99e", "99f", "slow", "http"),
            "B0": lambda: self.stop_from_elsewhere("B1", "B0", "B2", "slow2", "http1"),
            "C0": self.logs_during_streaming_run,
        }
        for name in NAMES:
            short = name.split("-", 1)[0]
            if name in self.mismatches:
                continue
            if short in groups:
                groups[short]()
            else:
                self.simple(short)

    def silent_streams(self) -> None:
        """40b/40c: streaming with a missing input: one ping, then silence until the idle timeout."""
        runs_before = len(self.emu.runs)
        self.emu.configure(stream_idle_timeout=IDLE_TIMEOUT)
        try:
            with self.open("40b") as live:  # the recorded client hung up after 60 s of silence
                live.read_frames(1)
            self.record("40b", live)
            began = time.monotonic()
            with self.open("40c") as live:  # this one waited for the server to end it
                live.read_all()
            took = time.monotonic() - began
            early = [] if took >= IDLE_TIMEOUT else [f"stream: ended after {took:.2f}s, before the idle timeout"]
            self.record("40c", live, *early)
        finally:
            self.emu.configure(stream_idle_timeout=EmulatorConfig().stream_idle_timeout)
        if len(self.emu.runs) != runs_before:
            self.mismatches[_full("40c")].append("runs: a run was created")

    def stop_while_streaming(self) -> None:
        """90 streams; during it 91 (detail), 92 (logs), 93 (stop); then 94/94b (detail) and the
        94c timeline (the record stays running)."""
        self.emu.script("slow", held_at(self.apps["slow"], "http"))
        order = _load(_full("90"))["response"]["event_order"]
        with self.open("90") as live:
            live.read_frames(len(order) - 1)  # up to the http node's node_started
            self.record("90", live)  # learn the ids now; recorded again once complete
            for short in ("91", "92", "93"):
                self.simple(short)
            live.read_all()
        self.record("90", live)
        self.simple("94")
        self.simple("94b")
        run_id = self.run_id_of("90")
        recorded = [(status, finished) for _, status, finished in _load(_full("94c"))["polls_after_stop"]]
        polls = [(d["status"], d["finished_at"]) for d in (self.detail(run_id, "slow") for _ in range(3))]
        lines = [] if set(polls) == set(recorded) else [f"timeline: polls {set(recorded)} != {set(polls)}"]
        if self.emu.runs[run_id].status != "stopped":
            lines.append(f"truth: the emulator's run is {self.emu.runs[run_id].status}, not stopped")
        self.mismatches[_full("94c")] = lines

    def disconnect(self) -> None:
        """95: the client hangs up after workflow_started; the run carries on (96b timeline, 96)."""
        self.emu.script("slow", held_at(self.apps["slow"], "http"))
        with self.open("95") as live:
            live.read_until(lambda live: any(isinstance(f, dict) for f in live.frames))
        self.record("95", live)
        run_id = self.run_id_of("95")
        self.emu.wait_for(lambda r: r.id == run_id and r.held)
        during = self.detail(run_id, "slow")
        self.emu.release(run_id)
        self.emu.wait_for(run_id, status="succeeded")
        after = self.detail(run_id, "slow")
        ours = [(during["status"], sorted(during["outputs"]), during["finished_at"] is None),
                (after["status"], sorted(after["outputs"]), after["finished_at"] is None)]
        polls = _load(_full("96b"))["polls_after_disconnect"]
        recorded = [(status, sorted(outputs), finished is None) for _, status, outputs, finished in polls]
        recorded = [poll for i, poll in enumerate(recorded) if i == 0 or poll != recorded[i - 1]]  # distinct
        self.mismatches[_full("96b")] = [] if ours == recorded else [f"timeline: {recorded} != {ours}"]
        self.simple("96")

    def logs_during_blocking_run(self) -> None:
        """97 blocks in the long node while 98 asks the logs for running runs."""
        self.emu.script("slow", held_at(self.apps["slow"], "http"))
        with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=self.emu.root_url, timeout=10) as other:
            blocking = pool.submit(self.simple, "97", other)
            run = self.emu.wait_for(lambda r: r.app == "slow" and r.held)
            self.simple("98")
            self.emu.release(run.id)
            blocking.result(timeout=10)

    def logs_during_streaming_run(self) -> None:
        """C0 streams to the end; while it sleeps in the http node, C1 reads the newest log row."""
        self.emu.script("slow", held_at(self.apps["slow"], "http"))
        with self.open("C0") as live:
            live.read_frames(5)  # ping, workflow_started, start's two events, http's node_started
            run = self.emu.wait_for(lambda r: r.app == "slow" and r.held)
            self.simple("C1")
            self.emu.release(run.id)
            live.read_all()
        self.record("C0", live)

    def stop_from_elsewhere(self, stop: str, stream: str, after: str, app: str, node: str) -> None:
        """``stream`` runs until the long node; ``stop`` stops it (another user, another app's key,
        or the owner); the stream ends stopped; ``after`` reads the record."""
        self.emu.script(app, held_at(self.apps[app], node))
        order = _load(_full(stream))["response"]["event_order"]
        with self.open(stream) as live:
            live.read_frames(len(order) - 1)
            self.record(stream, live)
            self.simple(stop)
            live.read_all()
        self.record(stream, live)
        self.simple(after)


@pytest.fixture(scope="module")
def replay() -> Iterator[Replay]:
    with DifyEmulator(recorded_apps()) as emu, httpx.Client(base_url=emu.root_url, timeout=10) as client:
        done = Replay(emu)
        done.run(client)
        yield done


def _rows_for(name: str) -> list[Difference]:
    short = name.split("-", 1)[0]
    return [row for row in DIFFERENCES if short in row.recordings]


@pytest.mark.parametrize("name", NAMES)
def test_replay_matches_recording(replay: Replay, name: str) -> None:
    assert name in replay.mismatches, "not replayed"
    rows = _rows_for(name)
    unexplained = [line for line in replay.mismatches[name] if not any(re.search(r.lines, line) for r in rows)]
    assert not unexplained, "\n".join(unexplained)


@pytest.mark.parametrize("row", DIFFERENCES, ids=lambda row: "+".join(row.recordings))
def test_listed_difference_still_exists(replay: Replay, row: Difference) -> None:
    if not row.expected:
        pytest.skip(f"not expected with the versions installed here: {row.what}")
    for short in row.recordings:
        lines = replay.mismatches[_full(short)]
        assert any(re.search(row.lines, line) for line in lines), (
            f"{short}: the listed difference ({row.what}) is gone; update DIFFERENCES. Mismatches: {lines}"
        )


def test_every_recording_is_in_the_index_or_a_timeline() -> None:
    indexed = {entry["file"].removesuffix(".json") for entry in json.loads((RECORDINGS / "_index.json").read_text())}
    timelines = {name for name in NAMES if "request" not in _load(name)}
    assert {name for name in NAMES if HOME[name] == RECORDINGS} == indexed | timelines
    assert timelines == {_full("94c"), _full("96b")}


def test_mirror_apps_follow_the_dsls() -> None:
    """The mirrored apps have their DSL's mode, start variables and nodes (ids, types, titles),
    in the order the graph's edges run them (the fail app stops at its failing node)."""
    for app in recorded_apps():
        dsl = yaml.safe_load((RECORDINGS / "dsl" / f"{app.name}.yml").read_text())
        assert app.mode == dsl["app"]["mode"]
        graph = dsl["workflow"]["graph"]
        nodes = {node["id"]: node["data"] for node in graph["nodes"]}
        start = nodes["start"]
        variables = [{k: v for k, v in var.items() if k != "options"} for var in start["variables"]]
        ours = [{k: v for k, v in field.model_dump(include={"variable", "label", "type", "required", "max_length"})
                 .items() if v is not None} for field in app.inputs]
        assert ours == variables, app.name
        if app.scenario.nodes is None:
            continue
        following = {edge["source"]: edge["target"] for edge in graph["edges"]}
        chain: list[tuple[str, str, str]] = []
        node_id: str | None = "start"
        while node_id is not None:
            chain.append((node_id, nodes[node_id]["type"], nodes[node_id]["title"]))
            node_id = following.get(node_id)
        ours_chain = [(node.id, node.type, node.title) for node in app.scenario.nodes]
        assert ours_chain == chain[: len(ours_chain)], app.name
        assert len(ours_chain) == len(chain) or app.scenario.status == "failed", app.name
