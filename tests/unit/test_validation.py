"""Bad arguments and configuration are DifyConfigError naming the field, before any request."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import respx
from pydantic import SecretStr

from dify_provider.client import ClientConfig, DifyConfigError, WorkflowRunStatus

from . import _bodies as b
from ._harness import API_KEY, RUN_ID, TASK_ID, Harness, url

GOOD_INPUTS = {"query": "hello"}


def run(*args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    return ("run_workflow", args, kwargs)


def stream(*args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    return ("run_workflow", args, {**kwargs, "response_mode": "streaming"})


BAD_CALLS: list[Any] = [
    # inputs
    pytest.param(run("query=hello"), "inputs", id="inputs-str"),
    pytest.param(run([("query", "hello")]), "inputs", id="inputs-list"),
    pytest.param(run({1: "x"}), "inputs", id="inputs-int-key"),
    pytest.param(run({("a", "b"): "x"}), "inputs", id="inputs-tuple-key"),
    pytest.param(run({"when": datetime(2024, 1, 1)}), "inputs", id="inputs-datetime"),
    pytest.param(run({"x": math.nan}), "inputs", id="inputs-nan"),
    pytest.param(run({"x": {"deep": [math.inf]}}), "inputs", id="inputs-nested-inf"),
    pytest.param(run({"x": {1, 2}}), "inputs", id="inputs-set"),
    pytest.param(run({"x": b"bytes"}), "inputs", id="inputs-bytes"),
    pytest.param(stream({"when": datetime(2024, 1, 1)}), "inputs", id="stream-inputs-datetime"),
    # user
    pytest.param(run(GOOD_INPUTS, ""), "user", id="user-empty"),
    pytest.param(run(GOOD_INPUTS, "   "), "user", id="user-blank"),
    pytest.param(run(GOOD_INPUTS, 42), "user", id="user-int"),
    pytest.param(stream(GOOD_INPUTS, ""), "user", id="stream-user-empty"),
    pytest.param(("stop_workflow_task", (TASK_ID, ""), {}), "user", id="stop-user-empty"),
    pytest.param(("upload_file", (b"x", " "), {"filename": "a.txt"}), "user", id="upload-user-blank"),
    # response mode
    pytest.param(run(GOOD_INPUTS, response_mode="async"), "response_mode", id="response_mode"),
    pytest.param(run(GOOD_INPUTS, response_mode="Streaming"), "response_mode", id="response_mode-case"),
    # ids
    pytest.param(run(GOOD_INPUTS, workflow_id="draft"), "workflow_id", id="workflow_id-word"),
    pytest.param(run(GOOD_INPUTS, workflow_id=""), "workflow_id", id="workflow_id-empty"),
    pytest.param(stream(GOOD_INPUTS, workflow_id="../../x"), "workflow_id", id="stream-workflow_id-traversal"),
    pytest.param(("get_workflow_run", ("123",), {}), "workflow_run_id", id="run_id-number"),
    pytest.param(("get_workflow_run", ("",), {}), "workflow_run_id", id="run_id-empty"),
    pytest.param(("get_workflow_run", (None,), {}), "workflow_run_id", id="run_id-none"),
    pytest.param(("get_workflow_run", (RUN_ID + "/../x",), {}), "workflow_run_id", id="run_id-suffix"),
    pytest.param(("stop_workflow_task", ("task-1",), {}), "task_id", id="task_id"),
    # files
    pytest.param(run(GOOD_INPUTS, files="https://example.com/a.png"), "files", id="files-str"),
    pytest.param(run(GOOD_INPUTS, files={"transfer_method": "remote_url"}), "files", id="files-dict"),
    pytest.param(run(GOOD_INPUTS, files=["https://example.com/a.png"]), "files", id="files-list-of-str"),
    pytest.param(run(GOOD_INPUTS, files=[{"type": "image", "url": "https://e/a.png"}]), "files[0].transfer_method",
                 id="files-no-method"),
    pytest.param(run(GOOD_INPUTS, files=[{"type": "image", "transfer_method": "ftp", "url": "x"}]),
                 "files[0].transfer_method", id="files-bad-method"),
    pytest.param(run(GOOD_INPUTS, files=[{"type": "image", "transfer_method": "remote_url"}]), "files[0].url",
                 id="files-no-url"),
    pytest.param(run(GOOD_INPUTS, files=[{"type": "image", "transfer_method": "remote_url", "url": "https://e/a"},
                                         {"type": "document", "transfer_method": "local_file"}]),
                 "files[1].upload_file_id", id="files-second-no-upload-id"),
    # log filters
    pytest.param(("list_workflow_logs", (), {"status": "running"}), "status", id="logs-status-running"),
    pytest.param(("list_workflow_logs", (), {"status": WorkflowRunStatus.PAUSED}), "status", id="logs-status-paused"),
    pytest.param(("list_workflow_logs", (), {"status": "partial-succeeded"}), "status", id="logs-status-partial"),
    pytest.param(("list_workflow_logs", (), {"status": "SUCCEEDED"}), "status", id="logs-status-case"),
    pytest.param(("list_workflow_logs", (), {"limit": 0}), "limit", id="logs-limit-0"),
    pytest.param(("list_workflow_logs", (), {"limit": 101}), "limit", id="logs-limit-101"),
    pytest.param(("list_workflow_logs", (), {"page": 0}), "page", id="logs-page-0"),
    pytest.param(("list_workflow_logs", (), {"page": 100000}), "page", id="logs-page-100000"),
    # uploads
    pytest.param(("upload_file", (b"x",), {}), "filename", id="upload-bytes-no-name"),
    pytest.param(("upload_file", (b"x",), {"filename": "dir/a.txt"}), "filename", id="upload-slash"),
    pytest.param(("upload_file", (b"x",), {"filename": "dir\\a.txt"}), "filename", id="upload-backslash"),
    pytest.param(("upload_file", ("/nonexistent/definitely/missing.pdf",), {}), "file", id="upload-missing-path"),
]


@pytest.mark.parametrize(("call", "field"), BAD_CALLS)
def test_bad_arguments_fail_before_any_request(harness: Harness, router: respx.MockRouter,
                                               call: tuple[str, tuple[Any, ...], dict[str, Any]],
                                               field: str) -> None:
    catch_all = router.route().respond(500)
    method, args, kwargs = call
    with pytest.raises(DifyConfigError) as info:
        harness.call(method, *args, **kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, ValueError)
    assert not catch_all.called
    assert not router.calls


def test_upload_of_a_directory_is_rejected(harness: Harness, router: respx.MockRouter, tmp_path: Path) -> None:
    with pytest.raises(DifyConfigError) as info:
        harness.call("upload_file", tmp_path)
    assert info.value.field == "file"
    assert not router.calls


@pytest.mark.parametrize("inputs", [
    pytest.param(None, id="none-means-empty"),
    pytest.param({}, id="empty"),
    pytest.param({"s": "x", "n": 1, "f": 1.5, "b": True, "o": {"k": [1, None]}, "z": None}, id="all-json-types"),
    pytest.param({"file": {"type": "image", "transfer_method": "remote_url", "url": "https://e/a.png"}},
                 id="file-variable"),
])
def test_good_inputs_are_sent_as_given(harness: Harness, router: respx.MockRouter, inputs: Any) -> None:
    route = router.post(url("/workflows/run")).respond(200, json=b.BLOCKING_SUCCEEDED)
    harness.call("run_workflow", inputs)
    assert json.loads(route.calls.last.request.content)["inputs"] == (inputs or {})


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "field"), [
    pytest.param({"api_key": ""}, "api_key", id="api_key-empty"),
    pytest.param({"api_key": "   "}, "api_key", id="api_key-blank"),
    pytest.param({"api_key": SecretStr("")}, "api_key", id="api_key-empty-secret"),
    pytest.param({"base_url": "ftp://api.dify.ai/v1"}, "base_url", id="base_url-ftp"),
    pytest.param({"base_url": "http://"}, "base_url", id="base_url-no-host"),
    pytest.param({"base_url": "https://exa mple.com"}, "base_url", id="base_url-space"),
    pytest.param({"base_url": "https://[::1"}, "base_url", id="base_url-bad-ipv6"),
    pytest.param({"stream_idle_timeout": 10}, "stream_idle_timeout", id="idle-10"),
    pytest.param({"stream_idle_timeout": 9.5}, "stream_idle_timeout", id="idle-9.5"),
    pytest.param({"stream_idle_timeout": 0}, "stream_idle_timeout", id="idle-0"),
    pytest.param({"stream_idle_timeout": -1}, "stream_idle_timeout", id="idle-negative"),
    pytest.param({"timeout": 0}, "timeout", id="timeout-0"),
    pytest.param({"connect_timeout": -1.0}, "connect_timeout", id="connect_timeout-negative"),
])
def test_bad_config(overrides: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {"api_key": API_KEY, **overrides}  # a plain str is accepted too
    with pytest.raises(DifyConfigError) as info:
        ClientConfig(**values)
    assert info.value.field == field
    assert API_KEY not in str(info.value)


def test_idle_timeout_just_above_the_ping_interval_is_fine() -> None:
    assert ClientConfig(api_key=SecretStr(API_KEY), stream_idle_timeout=10.5).stream_idle_timeout == 10.5


# --- inputs against the app's input form (GET /parameters) ---------------------------------------
# A real Dify 1.13.2 answers a refused input in streaming mode with silence, so the operator checks
# inputs with Dify's own rules (BaseAppGenerator._validate_inputs) before it starts a run.

FORM = {"user_input_form": [
    {"text-input": {"variable": "query", "required": True, "max_length": 5}},
    {"paragraph": {"variable": "notes"}},
    {"select": {"variable": "tone", "options": ["formal", "casual"]}},
    {"number": {"variable": "delay"}},
    {"file": {"variable": "doc"}},
    {"file-list": {"variable": "docs"}},
]}


@pytest.mark.parametrize(("inputs", "problem"), [
    ({"query": "hi"}, None),
    ({"query": "hi", "delay": "2.5", "tone": "casual", "doc": {"type": "document"}, "docs": [], "extra": 1}, None),
    ({"query": "hi", "delay": 3, "notes": ""}, None),
    ({}, "missing required workflow input(s) 'query'"),
    ({"query": ""}, "missing required workflow input(s) 'query'"),
    ({"query": "toolong"}, "'query' must be at most 5 characters, got 7"),
    ({"query": 42}, "'query' must be a string (text-input), got int"),
    ({"query": "hi", "delay": "abc"}, "'delay' must be a valid number, got 'abc'"),
    ({"query": "hi", "delay": [1]}, "'delay' must be a number, got list"),
    ({"query": "hi", "tone": "rude"}, "'tone' must be one of ['formal', 'casual'], got 'rude'"),
    ({"query": "hi", "doc": "a.pdf"}, "'doc' must be a file object"),
    ({"query": "hi", "docs": ["a.pdf"]}, "'docs' must be a list of file objects"),
], ids=["ok", "ok-all", "ok-number", "missing", "blank", "too-long", "not-str", "nan", "number-type",
        "not-an-option", "file", "file-list"])
def test_inputs_checked_like_dify(inputs: dict[str, Any], problem: str | None) -> None:
    from dify_provider.client import AppParameters

    problems = AppParameters.model_validate(FORM).input_problems(inputs)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1
        assert problems[0].startswith(problem)


def test_every_problem_is_reported_at_once() -> None:
    from dify_provider.client import AppParameters

    problems = AppParameters.model_validate(FORM).input_problems({"tone": "rude", "delay": "x"})
    assert problems == ["missing required workflow input(s) 'query'", "'tone' must be one of ['formal', 'casual'], "
                        "got 'rude'", "'delay' must be a valid number, got 'x'"]
