"""Emulated apps that mirror the DSLs the recordings were made with (``recordings/dsl/*.yml``).

Same API keys, app ids and workflow ids as in the recordings (so recorded requests replay as
they are), same start-node variables, same node ids, types and titles in the same order, and the
same outputs. ``test_recordings.py::test_mirror_apps_follow_the_dsls`` checks them against the
DSL files. No node sleeps: where a recording stopped a run inside the long http node, the replay
scripts :func:`held_at` and decides itself when time passes.

Text chunks: echo's aggregator streams the query (recording 20), slow2's start node does
(recording B0: its end node reads ``start.query``), and slow's aggregator streams its end node's
two outputs joined by a newline: the query, ``"\\n"``, ``"200"`` (no recording has a complete
slow stream; seen on the live 1.13.2 server). The chatflow ``chat`` (start -> answer, the answer
node's template ``echo: {{#sys.query#}}``) streams the answer's constant part and the query as two
``message`` chunks while its start node runs, as recording 75 shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dify_provider.testing import EmulatedApp, InputField, NodeSpec, Scenario

#: name -> (API key, app id, workflow id), as recorded.
RECORDED_IDS: dict[str, tuple[str, str, str]] = {
    "echo": ("app-ECHO-KEY", "c0286f9a-d1b4-44cc-8975-09b3bcf3c7ef", "b51671be-0070-4331-b53b-9c1e060a8f4d"),
    "slow": ("app-SLOW-KEY", "c0f4daad-ce7c-429d-b0e3-d0f9699f1c01", "fd67d504-7c9b-4f71-b101-33553d9c9156"),
    "slow2": ("app-SLOW2-KEY", "df68b674-9fe6-4446-bf5e-3db9c3ba545d", "5a444737-c9bf-440d-9480-96c37c101a70"),
    "fail": ("app-FAIL-KEY", "1c4d2aa1-2ddb-46e9-86e2-e8409fb30525", "cba16f48-01e0-4c0f-b785-abc17c6538ab"),
    "chat": ("app-CHAT-KEY", "1c0a0307-4ec4-4760-8a6f-5d210682096d", "59a94961-c1aa-4096-8708-6fbd03d4b02d"),
}

QUERY = InputField(variable="query", label="query", type="text-input", required=True, max_length=256)
DELAY = InputField(variable="delay", label="delay", type="number", required=False)
START = NodeSpec(id="start", type="start", title="Start")
END = NodeSpec(id="end", type="end", title="End")


def _query(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"result": inputs.get("query")}


def _query_and_status(inputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"result": inputs.get("query"), "http_status": 200}


def _app(name: str, **fields: Any) -> EmulatedApp:
    key, app_id, workflow_id = RECORDED_IDS[name]
    return EmulatedApp(name=name, api_key=key, app_id=app_id, workflow_id=workflow_id, author_name="admin", **fields)


def _scenario(*nodes: NodeSpec, **fields: Any) -> Scenario:
    return Scenario(nodes=nodes, step_seconds=0, tokens_per_step=0, **fields)


def recorded_apps() -> list[EmulatedApp]:
    """echo, slow, slow2, fail and chat as the recordings' server hosted them."""
    query = ("{query}", ("agg", "output"))
    echo_agg = NodeSpec(id="agg", type="variable-aggregator", title="Aggregator", text_chunks=(query,))
    slow_agg = echo_agg.model_copy(
        update={"text_chunks": (query, ("\n", ("end", "answer")), ("200", ("http", "status_code")))}
    )
    return [
        _app("echo", inputs=(QUERY,), scenario=_scenario(START, echo_agg, END), outputs_fn=_query),
        _app(
            "slow",
            inputs=(QUERY, DELAY),
            scenario=_scenario(START, NodeSpec(id="http", type="http-request", title="Sleep"), slow_agg, END),
            outputs_fn=_query_and_status,
        ),
        _app(
            "slow2",
            inputs=(QUERY, DELAY),
            scenario=_scenario(
                START.model_copy(update={"text_chunks": (("{query}", ("start", "query")),)}),
                NodeSpec(id="http1", type="http-request", title="Sleep1"),
                NodeSpec(id="http2", type="http-request", title="Sleep2"),
                END,
            ),
            outputs_fn=_query,
        ),
        _app(
            "fail",
            inputs=(QUERY,),
            # The http node fails; the end node never runs.
            scenario=_scenario(START, NodeSpec(id="http", type="http-request", title="Broken"), status="failed",
                               error="[Errno 111] Connection refused"),
        ),
        _app(
            "chat",
            mode="advanced-chat",
            scenario=_scenario(
                START.model_copy(
                    update={"text_chunks": (("echo: ", ("answer", "answer")), ("{sys.query}", ("sys", "query")))}
                ),
                NodeSpec(id="answer", type="answer", title="Answer"),
            ),
        ),
    ]


def held_at(app: EmulatedApp, node_id: str) -> Scenario:
    """``app``'s scenario with the run held inside ``node_id`` (started, not finished)."""
    assert app.scenario.nodes is not None
    nodes = tuple(node.model_copy(update={"hold": node.id == node_id}) for node in app.scenario.nodes)
    assert any(node.hold for node in nodes), node_id
    return app.scenario.model_copy(update={"nodes": nodes})
