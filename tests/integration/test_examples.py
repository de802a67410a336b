"""The DAGs in ``example_dags/`` parse as Airflow parses them, and run through real Airflow
(``dag.test()``) against the emulator, with the results a user would read downstream."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from airflow_harness import run_dag
from dify_helpers import start_run

from dify_provider.testing import DifyEmulator, Scenario
from dify_provider.version_compat import AIRFLOW_V_3_2_PLUS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import DAG

pytestmark = pytest.mark.airflow

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
EXAMPLE_IDS = {
    "example_dify_run_workflow.py": "example_dify_run_workflow",
    "example_dify_start_then_sense.py": "example_dify_start_then_sense",
    "example_dify_fan_out.py": "example_dify_fan_out",
    "example_dify_wait_external.py": "example_dify_wait_external",
    "example_dify_chat.py": "example_dify_chat",
    "example_dify_human_input.py": "example_dify_human_input",
}


def parse(path: Path) -> dict[str, DAG]:
    """Parse a file or folder with a DagBag, the way the dag-processor loads a DAGs folder."""
    if AIRFLOW_V_3_2_PLUS:
        from airflow.dag_processing.dagbag import DagBag
    else:  # where it was before 3.2 (common-compat has no name for it)
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(path), safe_mode=False)
    assert bag.import_errors == {}, bag.import_errors
    return dict(bag.dags)


def load_example(dag_id: str) -> DAG:
    """A freshly imported example (a dag.test() run may leave state on the DAG object)."""
    (file_name,) = (name for name, known in EXAMPLE_IDS.items() if known == dag_id)
    return parse(EXAMPLES / file_name)[dag_id]


def test_every_example_parses_with_a_docstring() -> None:
    example_dags = parse(EXAMPLES)
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXAMPLE_IDS)
    assert set(example_dags) == set(EXAMPLE_IDS.values())
    for file_name, dag_id in EXAMPLE_IDS.items():
        dag = example_dags[dag_id]
        assert Path(dag.fileloc).name == file_name
        assert dag.doc_md, f"{dag_id} has no docstring"
        assert "example" in dag.tags
        # copyable: nothing runs until someone triggers it (schedule=None; Airflow 2's DAG has no .schedule)
        assert type(dag.timetable).__name__ == "NullTimetable"


def test_run_workflow_outputs_reach_the_downstream_task(
    dify_emulator: DifyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_dag(load_example("example_dify_run_workflow"))

    assert result.states == {"run": "success", "report": "success"}
    (run,) = dify_emulator.runs.values()
    assert run.status == "succeeded"
    assert run.inputs["text"] == "hello from airflow"
    assert run.user == f"airflow:example_dify_run_workflow:run:{result.run_id}"
    outputs = result.xcom("run")
    assert outputs == run.outputs
    assert (outputs["text"], outputs["length"]) == ("HELLO FROM AIRFLOW", 18)
    assert result.xcom("run", key="workflow_run_id") == run.id
    assert result.xcom("run", key="total_tokens") == run.total_tokens > 0
    assert result.xcom("report") == {"outputs": run.outputs, "total_tokens": run.total_tokens}
    assert result.xcom("run", key="dify_run_url") == (
        f"{dify_emulator.root_url}/app/{dify_emulator.app_id()}/logs?workflow_run_id={run.id}"
    )
    # print() in a task: the task log in a deployment, this process's stdout under dag.test()
    assert f"total_tokens={run.total_tokens}" in capsys.readouterr().out


@contextmanager
def finish_after_first_poll(emu: DifyEmulator) -> Iterator[list[str]]:
    """In the background: once a held run exists and was polled once, finish it.

    The sensor polls once itself before deferring, so finishing after that first poll makes the
    run end while the sensor is deferred: the trigger is what sees it finish.
    """
    finished: list[str] = []
    errors: list[BaseException] = []

    def act() -> None:
        try:
            run = emu.wait_for(lambda s: s.held, status="running", timeout=60)
            emu.wait_for_requests("GET", f"/workflows/run/{run.id}", count=1, timeout=60)
            emu.finish(run.id, outputs={"text": "DONE LATER"})
            finished.append(run.id)
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    yield finished
    thread.join(timeout=60)
    if errors:
        raise errors[0]


def test_start_then_sense_waits_in_the_trigger(dify_emulator: DifyEmulator) -> None:
    dify_emulator.script("echo", Scenario(hold=True, tokens_per_step=7))
    with finish_after_first_poll(dify_emulator) as finished:
        result = run_dag(load_example("example_dify_start_then_sense"))

    assert result.states == {"start": "success", "wait": "success", "use": "success"}
    (run,) = dify_emulator.runs.values()
    assert finished == [run.id]
    # The operator returned at once: no outputs, only the ids; the sensor saw the end.
    assert result.xcom("start", default=None) is None
    assert result.xcom("start", key="workflow_run_id") == run.id
    detail = result.xcom("wait")
    assert detail["status"] == "succeeded"
    assert detail["outputs"] == {"text": "DONE LATER"}
    assert detail["total_tokens"] == run.total_tokens == 21
    assert result.xcom("use") == "DONE LATER"
    sensor_log = result.log("wait")
    assert "DEFERRED" in sensor_log
    # Two polls at least: the sensor's own before deferring, then the trigger's, which saw the end.
    assert len(dify_emulator.requests_to("GET", f"/workflows/run/{run.id}")) >= 2


def test_fan_out_sums_the_tokens_of_every_mapped_run(
    dify_emulator: DifyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # Different token counts per run, so a sum over the wrong runs (or one run twice) shows.
    dify_emulator.script("echo", *(Scenario(steps=2, tokens_per_step=n) for n in (3, 5, 11)))
    result = run_dag(load_example("example_dify_fan_out"))

    assert result.state == "success"
    runs = list(dify_emulator.runs.values())
    assert len(runs) == 3
    assert sorted(r.total_tokens for r in runs) == [6, 10, 22]
    by_user = {r.user: r for r in runs}
    for index, word in enumerate(("alpha", "beta", "gamma")):
        assert result.states[f"run[{index}]"] == "success"
        run = by_user[f"airflow:example_dify_fan_out:run:{result.run_id}:{index}"]  # one Dify run per item
        assert run.inputs["text"] == word
        assert result.xcom("run", map_index=index) == run.outputs
        assert result.xcom("run", key="total_tokens", map_index=index) == run.total_tokens
    totals = result.xcom("spend")
    assert totals["total_tokens"] == sum(r.total_tokens for r in runs) == 38
    prices = [Decimal(result.xcom("run", key="usage", map_index=i)["total_price"]) for i in range(3)]
    assert Decimal(totals["total_price"]) == sum(prices) == Decimal(38) * Decimal("0.000002")
    assert (totals["runs"], totals["currency"]) == (3, "USD")
    printed = capsys.readouterr().out.splitlines()
    for index in range(3):  # one table row per mapped task: its tokens, price, currency and nodes
        usage = result.xcom("run", key="usage", map_index=index)
        (row,) = (line.split() for line in printed if line.startswith(f"run[{index}] "))
        assert row[1:] == [str(usage["total_tokens"]), usage["total_price"], "USD", "2"]
    (total,) = (line.split() for line in printed if line.startswith("total "))
    assert total[1:] == ["38", totals["total_price"], "USD"]


def test_wait_external_run_given_as_a_param(dify_emulator: DifyEmulator) -> None:
    run_id = start_run(dify_emulator, inputs={"text": "from a webhook"})
    dify_emulator.wait_for(run_id, status="succeeded")

    result = run_dag(load_example("example_dify_wait_external"), conf={"workflow_run_id": run_id})

    assert result.states == {"wait": "success"}
    detail: dict[str, Any] = result.xcom("wait")
    assert detail["status"] == "succeeded"
    assert detail["outputs"]["text"] == "FROM A WEBHOOK"
    assert detail["total_tokens"] == dify_emulator.runs[run_id].total_tokens
    assert len(dify_emulator.runs) == 1  # waiting never starts a run


def test_wait_external_without_a_run_id_fails_clearly(
    dify_emulator: DifyEmulator
) -> None:
    result = run_dag(load_example("example_dify_wait_external"))

    assert result.states == {"wait": "failed"}
    assert "workflow_run_id" in result.log("wait")
    assert dify_emulator.requests == []


def test_chat_example_answers_each_question_and_totals_the_usage(
    dify_emulator: DifyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    dag = load_example("example_dify_chat")
    questions = dag.get_task("ask").expand_input.value["query"]
    result = run_dag(dag)
    assert result.states["report"] == "success", result.log("report")
    messages = list(dify_emulator.messages.values())
    assert sorted(m.query for m in messages) == sorted(questions)
    assert {m.mode for m in messages} == {"advanced-chat"}
    totals = result.xcom("report")
    assert totals["answers"] == len(questions)
    assert totals["total_tokens"] == sum(m.usage["total_tokens"] for m in messages) > 0
    assert totals["currency"] == "USD"
    assert Decimal(totals["total_price"]) == sum(Decimal(m.usage["total_price"]) for m in messages)
    printed = capsys.readouterr().out
    for index, question in enumerate(questions):
        assert f"A{index + 1}: Echo: {question} (turn 1)" in printed
    assert "The Dify emulator answers every question deterministically." in printed
