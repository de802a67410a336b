"""Parsing of the real-shaped bodies (dify-api.md section 3) through both clients."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pendulum
import pytest
import respx

from dify_provider.client import (
    AppInfo,
    AppParameters,
    BlockingRunResponse,
    DifyNotFoundError,
    DifyResponseError,
    ServerInfo,
    WorkflowLogPage,
    WorkflowRun,
    WorkflowRunStatus,
)
from dify_provider.client.models import StopResult, UploadedFile, WorkflowRunResult

from . import _bodies as b
from ._harness import APP_ID, BASE, FILE_ID, RUN_ID, TASK_ID, WORKFLOW_UUID, Harness, url

RUN_URL = url(f"/workflows/run/{RUN_ID}")
CREATED = pendulum.datetime(2024, 1, 16, 12, 20, 29, tz="UTC")
FINISHED = pendulum.datetime(2024, 1, 16, 12, 20, 30, tz="UTC")


def get_run(harness: Harness, router: respx.MockRouter, body: Any, **kwargs: Any) -> WorkflowRun:
    if isinstance(body, bytes):
        router.get(RUN_URL).respond(200, content=body, headers={"content-type": "application/json"})
    else:
        router.get(RUN_URL).respond(200, json=body, **kwargs)
    run = harness.call("get_workflow_run", RUN_ID)
    assert isinstance(run, WorkflowRun)
    return run


def test_run_detail_with_inputs_as_json_string(harness: Harness, router: respx.MockRouter) -> None:
    run = get_run(harness, router, b.RUN_DETAIL)
    assert run.id == RUN_ID
    assert run.workflow_id == WORKFLOW_UUID
    assert run.status is WorkflowRunStatus.SUCCEEDED
    assert run.status_known
    assert run.is_terminal
    assert run.inputs == b.RUN_INPUTS  # decoded from the JSON string
    assert run.app_id == APP_ID  # learnt from sys.app_id
    assert run.outputs == {"text": "Hello there!"}
    assert (run.total_steps, run.total_tokens, run.elapsed_time, run.error) == (3, 150, 1.23, None)


def test_run_timestamps_are_pendulum_utc_and_raw_ints_are_kept(harness: Harness, router: respx.MockRouter) -> None:
    run = get_run(harness, router, b.RUN_DETAIL)
    assert (run.created_at, run.finished_at) == (b.CREATED_AT, b.FINISHED_AT)
    assert isinstance(run.created, pendulum.DateTime)
    assert isinstance(run.finished, pendulum.DateTime)
    assert run.created == CREATED
    assert run.finished == FINISHED
    assert run.created.utcoffset() == pendulum.duration(0)
    assert run.created.timezone_name == "UTC"
    summary = run.summary()
    assert summary == {
        "workflow_run_id": RUN_ID, "workflow_id": WORKFLOW_UUID, "status": "succeeded",
        "outputs": {"text": "Hello there!"}, "error": None, "total_tokens": 150, "total_steps": 3,
        "elapsed_time": 1.23, "created_at": "2024-01-16T12:20:29+00:00", "finished_at": "2024-01-16T12:20:30+00:00",
    }
    assert "inputs" not in summary
    json.dumps(summary)  # JSON-safe for XCom


def test_outputs_as_json_string_from_older_servers(harness: Harness, router: respx.MockRouter) -> None:
    run = get_run(harness, router, {**b.RUN_DETAIL, "outputs": json.dumps({"text": "Hello there!", "n": 2})})
    assert run.outputs == {"text": "Hello there!", "n": 2}


@pytest.mark.parametrize(("raw", "decoded"), [
    pytest.param(None, {}, id="null"),
    pytest.param("", {}, id="empty-string"),
    pytest.param("not json", {"value": "not json"}, id="plain-string"),
    pytest.param("[1, 2]", {"value": [1, 2]}, id="json-array-string"),
])
def test_odd_inputs_and_outputs_never_break_parsing(harness: Harness, router: respx.MockRouter, raw: Any,
                                                    decoded: dict[str, Any]) -> None:
    run = get_run(harness, router, {**b.RUN_DETAIL, "inputs": raw, "outputs": raw})
    assert run.inputs == decoded
    assert run.outputs == decoded
    assert run.app_id is None


def test_running_run_with_null_totals(harness: Harness, router: respx.MockRouter) -> None:
    body = {**b.RUN_DETAIL_RUNNING, "total_steps": None, "total_tokens": None, "elapsed_time": None}
    run = get_run(harness, router, body)
    assert run.status is WorkflowRunStatus.RUNNING
    assert not run.is_terminal
    assert (run.total_steps, run.total_tokens, run.elapsed_time) == (0, 0, 0.0)
    assert run.finished_at is None
    assert run.finished is None
    assert run.summary()["finished_at"] is None


def test_unknown_status_is_kept_and_not_terminal(harness: Harness, router: respx.MockRouter) -> None:
    run = get_run(harness, router, {**b.RUN_DETAIL_RUNNING, "status": "suspended"})
    assert run.status == "suspended"
    assert not isinstance(run.status, WorkflowRunStatus)
    assert not run.status_known
    assert not run.is_terminal
    assert run.summary()["status"] == "suspended"


@pytest.mark.parametrize("status", list(WorkflowRunStatus))
def test_every_known_status_parses_to_the_enum(harness: Harness, router: respx.MockRouter,
                                               status: WorkflowRunStatus) -> None:
    run = get_run(harness, router, {**b.RUN_DETAIL, "status": status.value})
    assert run.status is status
    assert run.is_terminal is (status.value in {"succeeded", "failed", "stopped", "partial-succeeded"})


@pytest.mark.parametrize("body", [
    pytest.param(json.dumps(b.RUN_DETAIL_ALL_NULL).encode(), id="flask-default"),
    pytest.param(json.dumps(b.RUN_DETAIL_ALL_NULL, separators=(",", ":")).encode(), id="compact"),
    pytest.param(json.dumps(b.RUN_DETAIL_ALL_NULL, indent=4).encode() + b"\n", id="pretty-debug-mode"),
])
def test_all_null_body_from_early_2024_servers_is_not_found(harness: Harness, router: respx.MockRouter,
                                                            body: bytes) -> None:
    router.get(RUN_URL).respond(200, content=body, headers={"content-type": "application/json"})
    with pytest.raises(DifyNotFoundError) as info:
        harness.call("get_workflow_run", RUN_ID)
    assert (info.value.status, info.value.code) == (404, "not_found")
    assert "log retention" in info.value.hint
    assert len(router.calls) == 1  # an answer, not a transient failure


def test_partly_null_body_is_a_response_error_not_not_found(harness: Harness, router: respx.MockRouter) -> None:
    router.get(RUN_URL).respond(200, json={**b.RUN_DETAIL_ALL_NULL, "status": "running"})
    with pytest.raises(DifyResponseError) as info:
        harness.call("get_workflow_run", RUN_ID)
    assert "WorkflowRun" in str(info.value)


@pytest.mark.parametrize("content", [b"<html>oops</html>", b"{}", b'{"id": 5}', b"[]"])
def test_wrong_shaped_200_body_is_a_response_error(harness: Harness, router: respx.MockRouter,
                                                   content: bytes) -> None:
    route = router.get(RUN_URL).respond(200, content=content)
    with pytest.raises(DifyResponseError) as info:
        harness.call("get_workflow_run", RUN_ID)
    text = str(info.value)
    assert "unexpected WorkflowRun body" in text
    assert f"/workflows/run/{RUN_ID}" in text
    assert content.decode()[:10] in text
    assert route.call_count == 1


def test_blocking_response_with_failed_status_is_parsed(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(url("/workflows/run")).respond(200, json=b.BLOCKING_FAILED)
    result = harness.call("run_workflow", {"query": "hello"})
    assert isinstance(result, BlockingRunResponse)
    assert (result.task_id, result.workflow_run_id) == (TASK_ID, RUN_ID)
    data = result.data
    assert isinstance(data, WorkflowRunResult)
    assert data.status is WorkflowRunStatus.FAILED
    assert data.is_terminal
    assert data.error == "Node LLM run failed: [openai] Rate limit reached"
    assert data.outputs == {}  # null -> {}
    assert data.created == CREATED
    run = data.as_run({"query": "hello"})
    assert isinstance(run, WorkflowRun)
    assert (run.id, run.status, run.inputs) == (RUN_ID, WorkflowRunStatus.FAILED, {"query": "hello"})
    assert json.loads(route.calls.last.request.content) == {
        "inputs": {"query": "hello"}, "user": "airflow", "response_mode": "blocking"}


def test_blocking_response_paused_and_partial(harness: Harness, router: respx.MockRouter) -> None:
    router.post(url("/workflows/run")).mock(side_effect=[
        httpx.Response(200, json={**b.BLOCKING_SUCCEEDED, "data": {**b.BLOCKING_SUCCEEDED["data"],
                                                                   "status": "partial-succeeded",
                                                                   "exceptions_count": 1}}),
        httpx.Response(200, json={**b.BLOCKING_SUCCEEDED, "data": {**b.BLOCKING_SUCCEEDED["data"],
                                                                   "status": "paused", "finished_at": None,
                                                                   "reasons": [{"form_token": "t"}]}}),
    ])
    partial = harness.call("run_workflow", {"query": "hello"}).data
    assert (partial.status, partial.exceptions_count, partial.is_terminal) == (
        WorkflowRunStatus.PARTIAL_SUCCEEDED, 1, True)
    paused = harness.call("run_workflow", {"query": "hello"}).data
    assert (paused.status, paused.is_terminal, paused.finished) == (WorkflowRunStatus.PAUSED, False, None)


def test_logs_page(harness: Harness, router: respx.MockRouter) -> None:
    route = router.get(url("/workflows/logs")).respond(200, json=b.LOGS_PAGE)
    page = harness.call("list_workflow_logs", status=WorkflowRunStatus.SUCCEEDED, page=2, limit=100,
                        keyword="hello", created_by_end_user_session_id="airflow")
    assert isinstance(page, WorkflowLogPage)
    assert (page.page, page.limit, page.total, page.has_more) == (1, 20, 1, False)
    [entry] = page.data
    assert entry.created_from == "service-api"
    assert entry.created_by_end_user is not None
    assert entry.created_by_end_user.session_id == "airflow"
    assert entry.workflow_run.id == RUN_ID
    assert entry.workflow_run.status is WorkflowRunStatus.SUCCEEDED
    assert entry.workflow_run.triggered_from == "app-run"
    assert entry.workflow_run.created == CREATED
    assert dict(route.calls.last.request.url.params) == {
        "keyword": "hello", "status": "succeeded", "page": "2", "limit": "100",
        "created_by_end_user_session_id": "airflow"}


def test_logs_defaults_omit_unset_filters(harness: Harness, router: respx.MockRouter) -> None:
    route = router.get(url("/workflows/logs")).respond(200, json={**b.LOGS_PAGE, "data": [], "total": 0})
    assert harness.call("list_workflow_logs").data == []
    assert dict(route.calls.last.request.url.params) == {"page": "1", "limit": "20"}


def test_info(harness: Harness, router: respx.MockRouter) -> None:
    router.get(url("/info")).respond(200, json=b.APP_INFO)
    info = harness.call("get_info")
    assert isinstance(info, AppInfo)
    assert (info.name, info.mode, info.tags, info.author_name) == ("Summarise tickets", "workflow", ["support"], "Ada")


def test_parameters_flatten_user_input_form(harness: Harness, router: respx.MockRouter) -> None:
    router.get(url("/parameters")).respond(200, json=b.APP_PARAMETERS)
    params = harness.call("get_parameters")
    assert isinstance(params, AppParameters)
    assert [(v.control, v.variable, v.label, v.required) for v in params.variables] == [
        ("text-input", "query", "Query", True),
        ("paragraph", "context", "Context", False),
        ("select", "tone", "Tone", True),
    ]
    assert params.variables[2].options == ["formal", "casual"]
    assert params.variables[2].default == "formal"
    assert params.required_variables == ["query", "tone"]
    assert params.system_parameters["workflow_file_upload_limit"] == 10


def test_parameters_ignore_entries_without_a_variable() -> None:
    params = AppParameters.model_validate({"user_input_form": [{"text-input": {"label": "x"}},
                                                               {"number": {"variable": "n"}}]})
    assert [(v.control, v.variable, v.required) for v in params.variables] == [("number", "n", False)]


def test_server_info_without_authorization(harness: Harness, router: respx.MockRouter) -> None:
    route = router.get(BASE + "/").respond(200, json=b.SERVER_INFO)
    info = harness.call("get_server_version")
    assert isinstance(info, ServerInfo)
    assert (info.welcome, info.api_version, info.server_version) == ("Dify OpenAPI", "v1", "1.13.0")
    assert info.at_least(1, 13)
    assert info.at_least(1, 12, 9)
    assert not info.at_least(1, 13, 1)
    assert not info.at_least(1, 14)
    request = route.calls.last.request
    assert "Authorization" not in request.headers
    assert request.url.path == "/v1/"
    assert request.headers["User-Agent"].startswith("airflow-provider-dify/")


def test_other_calls_do_send_the_key(harness: Harness, router: respx.MockRouter) -> None:
    route = router.get(url("/info")).respond(200, json=b.APP_INFO)
    harness.call("get_info")
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {harness.config.api_key.get_secret_value()}"


@pytest.mark.parametrize(("version", "expected"), [
    ("1.13.0", (1, 13, 0)),
    ("0.15.3", (0, 15, 3)),
    ("1.13.0-rc1", (1, 13, 0)),
    ("1.0.0-beta.1", (1, 0, 0)),
    ("1.10.1rc2", (1, 10, 1)),
    ("v1.2", (1, 2)),
    ("main", ()),
])
def test_version_tuple(version: str, expected: tuple[int, ...]) -> None:
    assert ServerInfo(server_version=version).version_tuple == expected


def test_prerelease_is_not_newer_than_its_release() -> None:
    assert not ServerInfo(server_version="1.13.0-rc1").at_least(1, 13, 1)
    assert ServerInfo(server_version="1.13.0-rc1").at_least(1, 13)
    assert not ServerInfo(server_version="0.15.3").at_least(1, 13)


def test_upload_bytes_201(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(url("/files/upload")).respond(201, json=b.UPLOADED)
    uploaded = harness.call("upload_file", b"%PDF-1.4 tiny", "alice", filename="report.pdf",
                            mime_type="application/pdf")
    assert isinstance(uploaded, UploadedFile)
    assert (uploaded.id, uploaded.name, uploaded.size, uploaded.mime_type) == (FILE_ID, "report.pdf", 12,
                                                                               "application/pdf")
    request = route.calls.last.request
    assert request.headers["content-type"].startswith("multipart/form-data")
    body = request.content
    assert b'name="file"; filename="report.pdf"' in body
    assert b"Content-Type: application/pdf" in body
    assert b"%PDF-1.4 tiny" in body
    assert b'name="user"\r\n\r\nalice' in body


def test_upload_path_and_file_object(harness: Harness, router: respx.MockRouter, tmp_path: Path) -> None:
    route = router.post(url("/files/upload")).respond(201, json=b.UPLOADED)
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello file")
    harness.call("upload_file", path)
    first = route.calls.last.request.content
    assert b'filename="notes.txt"' in first
    assert b"hello file" in first
    assert b"application/octet-stream" in first
    assert b'name="user"\r\n\r\nairflow' in first
    harness.call("upload_file", str(path), filename="renamed.txt")
    assert b'filename="renamed.txt"' in route.calls.last.request.content
    harness.call("upload_file", io.BytesIO(b"from a stream"), filename="s.bin")
    assert b"from a stream" in route.calls.last.request.content


def test_stop(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(url(f"/workflows/tasks/{TASK_ID}/stop")).respond(200, json=b.STOP_OK)
    result = harness.call("stop_workflow_task", TASK_ID)
    assert isinstance(result, StopResult)
    assert result.result == "success"
    assert json.loads(route.calls.last.request.content) == {"user": "airflow"}
    harness.call("stop_workflow_task", TASK_ID.upper(), "alice")
    assert json.loads(route.calls.last.request.content) == {"user": "alice"}


def test_ids_are_normalised_into_the_path(harness: Harness, router: respx.MockRouter) -> None:
    route = router.get(RUN_URL).respond(200, json=b.RUN_DETAIL)
    harness.call("get_workflow_run", f"  {RUN_ID.upper()} ")
    assert route.call_count == 1


def test_default_user_comes_from_config(harness: Harness, router: respx.MockRouter) -> None:
    route = router.post(url("/workflows/run")).respond(200, json=b.BLOCKING_SUCCEEDED)
    harness.with_config(user="etl-bot").call("run_workflow", {})
    assert json.loads(route.calls.last.request.content)["user"] == "etl-bot"
