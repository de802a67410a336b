"""The Chenyu client (sync and async, through respx): envelope rules, error classes by meaning,
models with ISO timestamps, the shared retry policy, status mapping and the waiting snapshot.

Bodies are the documented examples of Chenyu's "query workflow execution progress" page.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pendulum
import pytest
import respx

from dify_provider.client import (
    DifyAuthError,
    DifyConfigError,
    DifyConnectionError,
    DifyError,
    DifyInvalidInputError,
    DifyNotFoundError,
    DifyRateLimitError,
    DifyResponseError,
    DifyServerError,
    DifyTimeoutError,
    Reason,
    RetryPolicy,
    Verdict,
)
from dify_provider.client._core import Retry, retryable
from dify_provider.client.chenyu import (
    TERMINAL_STATUSES,
    AsyncChenyuClient,
    ChenyuAPIError,
    ChenyuAuthError,
    ChenyuClient,
    ChenyuConfig,
    ChenyuNotFoundError,
    ChenyuRateLimitError,
    ChenyuRunStatus,
    ChenyuServerError,
    RunProgress,
    judge,
    snapshot_of_chenyu_error,
    snapshot_of_progress,
)
from dify_provider.client.chenyu._api import get_run_progress
from dify_provider.client.waiting import Snapshot

API_KEY = "cy-Qx7vS3cr3tK3y-never-print-me"
SECRET_FRAGMENT = "Qx7vS3cr3tK3y"
BASE = "https://www.chenyu.cn"
URL = f"{BASE}/api/open/v2/workflow/run/execution"
RUN_ORDER_ID = "wfrun_314ff7d8b7a5beff1388"
FAST_RETRY = RetryPolicy(max_attempts=3, max_elapsed=60.0, initial_backoff=0.01, max_backoff=0.04)

SUCCEEDED: dict[str, Any] = {
    "code": 0,
    "msg": "查询成功",
    "data": {
        "task_id": "task_1778147626528703038_eb84d292e0851c08",
        "workflow_id": "wf_861ef31e94dcfb10e6e7",
        "status": "succeeded",
        "queue_info": None,
        "progress_percent": 100,
        "progress_snapshot": {"internal_status": "succeeded", "completed_node_count": 7,
                              "total_runnable_nodes": 7, "last_event_type": "execution_success"},
        "logs": [{"at": "2026-05-08T10:00:01Z", "event_type": "execution_start", "level": "info",
                  "message": "execution started", "progress_percent": 0}],
        "actual_execution_duration_sec": 8.42,
        "compute_cost": 0.0002878,
        "external_model_cost": 0,
        "total_cost": 0.0002878,
        "outputs": {"n9_images": "https://www.chenyu.cn/media/example-output"},
        "error": None,
        "created_at": "2026-05-08T10:00:00Z",
        "started_at": "2026-05-08T10:00:01Z",
        "terminal_at": "2026-05-08T10:00:10Z",
    },
}
TASK_NOT_FOUND: dict[str, Any] = {
    "code": 1,
    "msg": "Task not found.",
    "data": {"error": {"reason": "Task not found.", "detail": "execution task task_x does not exist",
                       "engine_code": "TASK_NOT_FOUND", "status_code": 404}},
}


def body(status: str = "succeeded", **data: Any) -> dict[str, Any]:
    answer = copy.deepcopy(SUCCEEDED)
    answer["data"].update(status=status, **data)
    return answer


def engine_error(status_code: int | None, engine_code: str = "ENGINE_ERROR", code: int = 1) -> dict[str, Any]:
    return {"code": code, "msg": "Execution engine error.",
            "data": {"error": {"reason": "Execution engine error.", "detail": "the engine is restarting",
                               "engine_code": engine_code, "status_code": status_code}}}


@dataclass
class Harness:
    """Runs one client method on a fresh sync or async client; retry sleeps are recorded."""

    kind: Literal["sync", "async"]
    config: ChenyuConfig = field(default_factory=lambda: ChenyuConfig(api_key=API_KEY, retry=FAST_RETRY,
                                                                      verify=False))
    sleeps: list[float] = field(default_factory=list)

    def with_retry(self, **overrides: Any) -> Harness:
        config = dataclasses.replace(self.config, retry=dataclasses.replace(self.config.retry, **overrides))
        return dataclasses.replace(self, config=config, sleeps=[])

    def progress(self, run_order_id: Any = RUN_ORDER_ID) -> RunProgress:
        if self.kind == "sync":
            with ChenyuClient(self.config, sleep=self.sleeps.append) as client:
                return client.get_run_progress(run_order_id)

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        async def run() -> RunProgress:
            async with AsyncChenyuClient(self.config, sleep=sleep) as client:
                return await client.get_run_progress(run_order_id)

        return asyncio.run(run())

    def error(self, run_order_id: Any = RUN_ORDER_ID) -> DifyError:
        with pytest.raises(DifyError) as info:
            self.progress(run_order_id)
        return info.value


@pytest.fixture(params=["sync", "async"])
def cy(request: pytest.FixtureRequest, router: respx.MockRouter) -> Harness:
    return Harness(kind=request.param)


# --- the request ----------------------------------------------------------------------------


def test_request_shape(cy: Harness, router: respx.MockRouter) -> None:
    route = router.get(URL).respond(200, json=SUCCEEDED)
    cy.progress()
    request = route.calls.last.request
    assert request.url.params["run_order_id"] == RUN_ORDER_ID
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["User-Agent"].startswith("airflow-provider-dify/")


@pytest.mark.parametrize(("given", "expected"), [
    (None, BASE),
    ("", BASE),
    ("www.chenyu.cn", BASE),
    ("https://www.chenyu.cn/", BASE),
    ("http://localhost:8080", "http://localhost:8080"),
    ("https://gw.example.com/chenyu/", "https://gw.example.com/chenyu"),
])
def test_base_url_defaults_and_keeps_prefixes(given: str | None, expected: str) -> None:
    config = ChenyuConfig(api_key=API_KEY, base_url=given or "")
    assert config.base_url == expected
    call = get_run_progress(RUN_ORDER_ID)
    assert call.method == "GET"
    assert call.path == "/api/open/v2/workflow/run/execution"
    assert call.retry is Retry.SAFE


@pytest.mark.parametrize("bad", [None, "", "   ", "wfrun 1", "../etc", "x" * 200, "wfrun_1\nx"])
def test_bad_run_order_id_fails_before_any_request(cy: Harness, router: respx.MockRouter, bad: Any) -> None:
    error = cy.error(bad)
    assert isinstance(error, DifyConfigError)
    assert error.field == "run_order_id"
    assert "wfrun_314ff7d8b7a5beff1388" in str(error)  # shows what a good one looks like
    assert not router.calls


def test_empty_key_names_the_field() -> None:
    with pytest.raises(DifyConfigError) as info:
        ChenyuConfig(api_key="  ")
    assert info.value.field == "api_key"
    assert "Chenyu" in str(info.value)


# --- success: the models ----------------------------------------------------------------------


def test_documented_success_body(cy: Harness, router: respx.MockRouter) -> None:
    router.get(URL).respond(200, json=SUCCEEDED)
    progress = cy.progress()
    assert progress.run_order_id == RUN_ORDER_ID  # set by the client: not in Chenyu's body
    assert progress.status is ChenyuRunStatus.SUCCEEDED
    assert progress.is_terminal
    assert progress.status_known
    assert progress.task_id == "task_1778147626528703038_eb84d292e0851c08"
    assert progress.progress_percent == 100
    assert progress.progress_snapshot.completed_node_count == 7
    assert progress.actual_execution_duration_sec == 8.42
    assert (progress.compute_cost, progress.external_model_cost, progress.total_cost) == (0.0002878, 0, 0.0002878)
    assert progress.outputs == {"n9_images": "https://www.chenyu.cn/media/example-output"}
    assert progress.error is None
    for moment in (progress.created_at, progress.started_at, progress.terminal_at, progress.logs[0].at):
        assert isinstance(moment, pendulum.DateTime)
        assert moment.utcoffset() == pendulum.duration(0)
    assert progress.created_at == pendulum.datetime(2026, 5, 8, 10, 0, 0)
    assert progress.logs[0].event_type == "execution_start"
    assert progress.queued_sec == 1.0
    assert progress.total_sec == 10.0


def test_summary_is_json_safe_and_holds_outputs_status_durations_costs() -> None:
    progress = RunProgress.model_validate(SUCCEEDED["data"]).model_copy(update={"run_order_id": RUN_ORDER_ID})
    summary = json.loads(json.dumps(progress.summary()))
    assert summary["status"] == "succeeded"
    assert summary["outputs"] == SUCCEEDED["data"]["outputs"]
    assert summary["actual_execution_duration_sec"] == 8.42
    assert (summary["queued_sec"], summary["total_sec"]) == (1.0, 10.0)
    assert (summary["compute_cost"], summary["external_model_cost"], summary["total_cost"]) == (0.0002878, 0, 0.0002878)
    assert summary["terminal_at"] == "2026-05-08T10:00:10+00:00"
    assert "logs" not in summary  # they go to the task log, not XCom


def test_models_are_lenient_with_nulls_and_extras() -> None:
    progress = RunProgress.model_validate({
        "status": "queued", "queue_info": {"position": 3, "estimated_wait_sec": 40}, "logs": None,
        "outputs": None, "progress_percent": None, "progress_snapshot": None, "error": "",
        "created_at": "2026-05-08T18:00:00+08:00", "started_at": None, "something_new": {"x": 1},
    })
    assert progress.logs == []
    assert progress.outputs == {}
    assert progress.progress_percent == 0
    assert progress.queue_info is not None
    assert progress.queue_info.position == 3
    assert progress.error is None
    assert progress.created_at == pendulum.datetime(2026, 5, 8, 10)  # offsets are honoured
    assert progress.queued_sec is None
    failed = RunProgress.model_validate({"status": "failed", "error": {"reason": "boom", "engine_code": "X"}})
    assert failed.error is not None
    assert failed.error.text() == "boom"


def test_unknown_status_is_kept_raw_and_waits() -> None:
    progress = RunProgress.model_validate({"status": "paused_for_review"})
    assert progress.status == "paused_for_review"
    assert not progress.status_known
    assert not progress.is_terminal
    assert judge(progress.status).verdict is Verdict.WAIT


@pytest.mark.parametrize("data", [{"status": None}, {}, {"status": "running", "created_at": "yesterday"},
                                  {"status": "running", "logs": "nope"}])
def test_a_body_that_would_mislead_is_a_response_error(cy: Harness, router: respx.MockRouter,
                                                       data: dict[str, Any]) -> None:
    route = router.get(URL).respond(200, json={"code": 0, "msg": "ok", "data": data})
    error = cy.error()
    assert isinstance(error, DifyResponseError)
    assert "unexpected progress data from Chenyu" in str(error)
    assert route.call_count == 1


@pytest.mark.parametrize("text", ['{"code": 0, "msg": "ok", "data": {"status": "runn', "<html>502</html>", ""])
def test_malformed_json_is_a_response_error(cy: Harness, router: respx.MockRouter, text: str) -> None:
    route = router.get(URL).respond(200, text=text)
    error = cy.error()
    assert isinstance(error, DifyResponseError)
    assert "not a {code, msg, data} envelope" in str(error)
    assert route.call_count == 1  # a parse error is not retried inside the client (the waiter retries)


# --- failures: the envelope decides, not only the HTTP status --------------------------------------


def test_code_not_zero_with_http_200_is_an_error(cy: Harness, router: respx.MockRouter) -> None:
    route = router.get(URL).respond(200, json={"code": 7, "msg": "Quota of the workspace is exhausted.", "data": {}})
    error = cy.error()
    assert type(error) is ChenyuAPIError
    assert error.envelope_code == 7
    assert error.code == "code 7"
    assert "Chenyu API error" in str(error)
    assert "Quota of the workspace is exhausted." in str(error)
    assert route.call_count == 1


@pytest.mark.parametrize("http_status", [200, 404])
def test_task_not_found_is_not_found(cy: Harness, router: respx.MockRouter, http_status: int) -> None:
    route = router.get(URL).respond(http_status, json=TASK_NOT_FOUND)
    error = cy.error()
    assert isinstance(error, ChenyuNotFoundError)
    assert isinstance(error, DifyNotFoundError)
    assert (error.status, error.code, error.envelope_code) == (404, "TASK_NOT_FOUND", 1)
    assert error.error is not None
    assert error.error.detail == "execution task task_x does not exist"
    assert str(error).startswith("Chenyu API error 404 TASK_NOT_FOUND on /api/open/v2/workflow/run/execution: "
                                 "Task not found: execution task task_x does not exist")
    assert route.call_count == 1


@pytest.mark.parametrize(("http_status", "answer", "cls"), [
    (401, {"code": 401, "msg": "Unauthorized."}, ChenyuAuthError),
    (403, {"code": 403, "msg": "Forbidden."}, ChenyuAuthError),
    (404, {"code": 404, "msg": "Not Found"}, ChenyuNotFoundError),
    (400, {"code": 400, "msg": "run_order_id is required"}, DifyInvalidInputError),
    (500, {"code": 500, "msg": "Internal error"}, ChenyuServerError),
    (200, engine_error(401, "UNAUTHORIZED"), ChenyuAuthError),
    (200, engine_error(500), ChenyuServerError),
])
def test_errors_are_classed_by_meaning(cy: Harness, router: respx.MockRouter, http_status: int,
                                       answer: dict[str, Any], cls: type[DifyError]) -> None:
    route = router.get(URL).respond(http_status, json=answer)
    assert isinstance(cy.error(), cls)
    assert route.call_count == 1  # none of these is worth re-sending


def test_auth_error_says_what_to_fix(cy: Harness, router: respx.MockRouter) -> None:
    router.get(URL).respond(401, json={"code": 401, "msg": "Unauthorized."})
    error = cy.error()
    assert isinstance(error, DifyAuthError)
    assert "check the Chenyu API key stored in the connection's password" in str(error)


def test_proxy_html_page_is_reported_readably(cy: Harness, router: respx.MockRouter) -> None:
    router.get(URL).respond(500, text="<html>\r\n<head><title>500 Internal Server Error</title></head></html>")
    error = cy.error()
    assert isinstance(error, ChenyuServerError)
    assert "500 Internal Server Error" in str(error)


# --- retries: the Dify policy, unchanged ------------------------------------------------------------

TRANSIENT: dict[str, Any] = {
    "ConnectError": lambda: httpx.ConnectError("[Errno 111] Connection refused"),
    "ReadTimeout": lambda: httpx.ReadTimeout("timed out"),
    "RemoteProtocolError": lambda: httpx.RemoteProtocolError("Server disconnected without sending a response."),
    "429": lambda: httpx.Response(429, json={"code": 429, "msg": "Too many requests."}),
    "502-html": lambda: httpx.Response(502, text="<html>bad gateway</html>"),
    "503": lambda: httpx.Response(503, json={"code": 503, "msg": "busy"}),
    "504": lambda: httpx.Response(504, text="Gateway Timeout"),
    "engine-503-in-http-200": lambda: httpx.Response(200, json=engine_error(503)),
}


@pytest.mark.parametrize("name", TRANSIENT)
def test_transient_failures_are_retried(cy: Harness, router: respx.MockRouter, name: str) -> None:
    route = router.get(URL).mock(side_effect=[TRANSIENT[name](), httpx.Response(200, json=SUCCEEDED)])
    assert cy.progress().status == "succeeded"
    assert route.call_count == 2
    assert len(cy.sleeps) == 1


def test_retry_after_is_honoured_and_the_last_error_is_typed(cy: Harness, router: respx.MockRouter) -> None:
    route = router.get(URL).respond(429, json={"code": 429, "msg": "slow down"}, headers={"Retry-After": "7"})
    error = cy.error()
    assert isinstance(error, ChenyuRateLimitError)
    assert isinstance(error, DifyRateLimitError)
    assert error.retry_after == 7.0
    assert route.call_count == 3
    assert cy.sleeps == [7.0, 7.0]


def test_transport_errors_name_chenyu(cy: Harness, router: respx.MockRouter) -> None:
    router.get(URL).mock(side_effect=httpx.ConnectError("[Errno 111] Connection refused"))
    error = cy.with_retry(max_attempts=2).error()
    assert isinstance(error, DifyConnectionError)
    assert "could not reach Chenyu for /api/open/v2/workflow/run/execution" in str(error)
    router.get(URL).mock(side_effect=httpx.ReadTimeout("timed out"))
    assert "Chenyu did not answer" in str(cy.with_retry(max_attempts=1).error())


def test_retry_rules_are_the_shared_ones() -> None:
    """Chenyu's classes derive from the generic ones, so ``retryable`` needs no Chenyu branch."""
    for status, expected in ((502, True), (503, True), (504, True), (500, False)):
        assert retryable(ChenyuServerError(status, "x", "y"), Retry.SAFE) is expected
    assert retryable(ChenyuRateLimitError(429, "x", "y"), Retry.SAFE)
    assert not retryable(ChenyuNotFoundError(404, "TASK_NOT_FOUND", "y"), Retry.SAFE)
    assert not retryable(ChenyuAPIError(200, "code 1", "y"), Retry.SAFE)


# --- secrets ---------------------------------------------------------------------------------------


def test_the_key_is_never_shown(cy: Harness, router: respx.MockRouter) -> None:
    router.get(URL).respond(401, json={"code": 401, "msg": f"bad token Bearer {API_KEY[:4]}"})
    error = cy.error()
    config = cy.config

    async def async_repr() -> str:
        async with AsyncChenyuClient(config) as client:
            return repr(client)

    with ChenyuClient(config) as client:
        texts = [repr(config), str(config), repr(client), asyncio.run(async_repr()), str(error), repr(error)]
    assert not any(SECRET_FRAGMENT in text for text in texts)


# --- status mapping and the waiting snapshot ----------------------------------------------------------


@pytest.mark.parametrize(("status", "verdict", "reason"), [
    ("queued", Verdict.WAIT, Reason.RUNNING),
    ("running", Verdict.WAIT, Reason.RUNNING),
    ("succeeded", Verdict.SUCCESS, Reason.SUCCEEDED),
    ("failed", Verdict.FAILURE, Reason.FAILED),
    ("canceled", Verdict.FAILURE, Reason.STOPPED),
    ("cancelled", Verdict.WAIT, Reason.UNKNOWN_STATUS),  # not Chenyu's spelling: unknown, so it waits
    ("", Verdict.WAIT, Reason.UNKNOWN_STATUS),
])
def test_status_table(status: str, verdict: Verdict, reason: Reason) -> None:
    decision = judge(status)
    assert (decision.verdict, decision.reason) == (verdict, reason)
    assert (status in TERMINAL_STATUSES) is (verdict is not Verdict.WAIT)


def progress_of(status: str, **data: Any) -> RunProgress:
    return RunProgress.model_validate(body(status, **data)["data"])


def test_queued_snapshot_shows_position_and_wait() -> None:
    snap = snapshot_of_progress(progress_of("queued", queue_info={"position": 3, "estimated_wait_sec": 150},
                                            progress_percent=0), RUN_ORDER_ID)
    assert snap.verdict is Verdict.WAIT
    assert snap.message == f"Chenyu run {RUN_ORDER_ID} is queued: position 3, about 2.5 min to wait"
    assert snap.progress[-1] == snap.message
    assert snap.progress[0] == "Chenyu log 10:00:01 INFO execution_start: execution started"


def test_running_snapshot_shows_percent_nodes_and_log_lines() -> None:
    logs = [{"at": "2026-05-08T10:00:01Z", "event_type": "execution_start", "level": "info", "message": "go"},
            {"at": "2026-05-08T10:00:04Z", "event_type": "node_succeeded", "level": "info", "message": "image ok",
             "node_id": "n3"}]
    snap = snapshot_of_progress(progress_of("running", progress_percent=42.857, logs=logs, progress_snapshot={
        "completed_node_count": 3, "total_runnable_nodes": 7}), RUN_ORDER_ID)
    assert snap.progress == (
        "Chenyu log 10:00:01 INFO execution_start: go",
        "Chenyu log 10:00:04 INFO node_succeeded [n3]: image ok",
        f"Chenyu run {RUN_ORDER_ID} is running: 43% (3/7 nodes)",
    )


def test_terminal_snapshots_carry_the_xcom_detail_and_a_clear_message() -> None:
    ok = snapshot_of_progress(progress_of("succeeded"), RUN_ORDER_ID)
    assert ok.verdict is Verdict.SUCCESS
    assert ok.message == (f"Chenyu run {RUN_ORDER_ID} succeeded in 8.4 s, cost 0.0002878 "
                          "(compute 0.0002878, external models 0)")
    assert ok.detail["total_cost"] == 0.0002878
    assert ok.detail["outputs"]
    assert ok.progress == ("Chenyu log 10:00:01 INFO execution_start: execution started",)  # no status line
    failed = snapshot_of_progress(progress_of("failed", error={"reason": "Node n4 failed", "detail": "CUDA OOM"}),
                                  RUN_ORDER_ID)
    assert failed.message == f"Chenyu run {RUN_ORDER_ID} failed: Node n4 failed: CUDA OOM"
    canceled = snapshot_of_progress(progress_of("canceled"), RUN_ORDER_ID)
    assert (canceled.reason, canceled.status) == (Reason.STOPPED, "canceled")
    assert canceled.message == f"Chenyu run {RUN_ORDER_ID} was canceled"


def test_failed_run_without_error_object_falls_back_to_its_last_error_log_line() -> None:
    logs = [{"at": None, "level": "error", "message": "model timed out", "event_type": "node_failed"}]
    snap = snapshot_of_progress(progress_of("failed", logs=logs), RUN_ORDER_ID)
    assert snap.message.endswith("failed: model timed out")


def test_events_carry_no_progress_and_round_trip() -> None:
    snap = snapshot_of_progress(progress_of("succeeded"), RUN_ORDER_ID)
    event = snap.to_event()
    assert "progress" not in event
    json.dumps(event)
    assert Snapshot.from_event(event) == dataclasses.replace(snap, progress=())


@pytest.mark.parametrize(("error", "verdict", "reason", "text"), [
    (ChenyuNotFoundError(404, "TASK_NOT_FOUND", "Task not found."), Verdict.FAILURE, Reason.NOT_FOUND,
     f"Chenyu run {RUN_ORDER_ID} not found: wrong run order id"),
    (ChenyuAuthError(401, "UNAUTHORIZED", "no"), Verdict.FAILURE, Reason.AUTH, "Chenyu refused the connection's"),
    (ChenyuServerError(503, "x", "busy"), Verdict.WAIT, Reason.ERROR, "transient error, still waiting"),
    (DifyTimeoutError("Chenyu did not answer"), Verdict.WAIT, Reason.ERROR, "transient error"),
    (DifyResponseError("garbage"), Verdict.WAIT, Reason.ERROR, "transient error"),
    (ChenyuAPIError(200, "code 7", "quota"), Verdict.FAILURE, Reason.ERROR, "quota"),
])
def test_errors_as_snapshots(error: DifyError, verdict: Verdict, reason: Reason, text: str) -> None:
    snap = snapshot_of_chenyu_error(RUN_ORDER_ID, error)
    assert (snap.verdict, snap.reason) == (verdict, reason)
    assert text in snap.message


def test_server_errors_are_also_generic_server_errors() -> None:
    assert issubclass(ChenyuServerError, DifyServerError)
