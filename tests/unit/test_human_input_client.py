"""The human-input calls (``dify_provider.client.human_input``), sync and async: the shapes of a
real Dify 1.13.2 (``tests/contract/recordings-hitl``), the route they take (the service route of
>= 1.14, else 1.13's web route), the errors a form answers, and finding the pending form in a
run's events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from dify_provider.client import DifyConfigError, DifyError, DifyFormClosedError, DifyInvalidInputError, StreamEvent
from dify_provider.client.human_input._pending import pending_form

from ._harness import API_KEY, RUN_ID, Harness, frame, sse_response, url

RECORDINGS = Path(__file__).resolve().parents[1] / "contract" / "recordings-hitl"
TOKEN = "Ng1NgP847fhDMIusgZj2qc"
WEB = "https://api.dify.ai/api/form/human_input/" + TOKEN


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text())
    return data


def answer(name: str) -> httpx.Response:
    response = recorded(name)["response"]
    return httpx.Response(response["status"], json=response["body"])


def html_404() -> httpx.Response:
    return httpx.Response(404, text="<!doctype html><html><title>404 Not Found</title></html>",
                          headers={"Content-Type": "text/html"})


def test_a_1132_form_parses(harness: Harness, router: respx.MockRouter) -> None:
    router.get(url(f"/form/human_input/{TOKEN}")).mock(return_value=html_404())
    web = router.get(WEB).mock(return_value=answer("50-web-get-form-noauth"))
    form = harness.call("get_human_input_form", TOKEN)
    assert [(f.type, f.name) for f in form.inputs] == [("text_input", "title"), ("paragraph", "comment")]
    assert [(a.id, a.title) for a in form.user_actions] == [("approve", "Approve"), ("reject", "Reject")]
    assert form.expiration_time == 1796296458
    assert form.action_for("Reject").id == "reject"
    assert "Title: **[title]**" in form.readable_content()
    # 1.13's web route is unauthenticated: the app key is not sent where it is not needed.
    assert "Authorization" not in web.calls.last.request.headers


def test_the_service_route_is_used_where_it_exists(harness: Harness, router: respx.MockRouter) -> None:
    service = router.post(url(f"/form/human_input/{TOKEN}")).mock(return_value=httpx.Response(200, json={}))
    harness.call("submit_human_input_form", TOKEN, {"title": "t", "comment": ""}, "approve", "alice")
    sent = json.loads(service.calls.last.request.content)
    assert sent == {"inputs": {"title": "t", "comment": ""}, "action": "approve", "user": "alice"}
    assert service.calls.last.request.headers["Authorization"] == f"Bearer {API_KEY}"


def test_without_the_service_route_the_web_route_answers(harness: Harness, router: respx.MockRouter) -> None:
    router.post(url(f"/form/human_input/{TOKEN}")).mock(return_value=html_404())
    web = router.post(WEB).mock(return_value=answer("60-web-post-approve"))
    harness.call("submit_human_input_form", TOKEN, {"title": "t", "comment": "c"}, "approve", "alice")
    assert json.loads(web.calls.last.request.content) == {"inputs": {"title": "t", "comment": "c"},
                                                          "action": "approve"}


@pytest.mark.parametrize(("recording", "submitted"), [("60b-web-post-second-time", True),
                                                      ("91b-web-post-expired-form", False)])
def test_a_closed_form_is_a_typed_412(harness: Harness, router: respx.MockRouter, recording: str,
                                      submitted: bool) -> None:
    router.post(url(f"/form/human_input/{TOKEN}")).mock(return_value=html_404())
    router.post(WEB).mock(return_value=answer(recording))
    with pytest.raises(DifyFormClosedError) as caught:
        harness.call("submit_human_input_form", TOKEN, {"title": "", "comment": ""}, "approve")
    assert (caught.value.status, caught.value.submitted, caught.value.expired) == (412, submitted, not submitted)


def test_a_refused_answer_names_what_is_missing(harness: Harness, router: respx.MockRouter) -> None:
    router.post(url(f"/form/human_input/{TOKEN}")).mock(return_value=answer("51-web-post-missing-input"))
    with pytest.raises(DifyInvalidInputError, match="Missing required inputs") as caught:
        harness.call("submit_human_input_form", TOKEN, {"title": "t"}, "approve")
    assert caught.value.code == "invalid_form_data"


@pytest.mark.parametrize(("args", "field"), [(("a/b", {}, "approve"), "form_token"),
                                             ((TOKEN, [], "approve"), "inputs"),
                                             ((TOKEN, {}, ""), "action")])
def test_bad_arguments_fail_before_sending(harness: Harness, router: respx.MockRouter, args: tuple[Any, ...],
                                           field: str) -> None:
    with pytest.raises(DifyConfigError, match=field):
        harness.call("submit_human_input_form", *args)
    assert not router.calls


def _events(path: str) -> list[StreamEvent]:
    lines = (RECORDINGS / path).read_text().splitlines()
    return [StreamEvent.model_validate(json.loads(line[6:])) for line in lines if line.startswith("data: ")]


def test_the_pending_form_of_a_recorded_stream() -> None:
    form = pending_form(_events("10-run-streaming-pauses.sse.txt"))
    assert form is not None
    assert form.answerable
    assert form.node_title == "Review"
    assert form.expiration_time  # from human_input_required: a reason alone has none


def test_a_replay_names_the_current_pause_only() -> None:
    """Dify's snapshot replay carries the current ``workflow_paused``, not the stream's
    ``human_input_required``; a raw log carries an answered pause before it."""
    def ev(event: str, **data: Any) -> StreamEvent:
        return StreamEvent(event=event, data=data)

    first = {"TYPE": "human_input_required", "form_token": "tok1", "node_id": "review", "node_title": "Review"}
    second = {**first, "form_token": "tok2", "node_id": "final", "node_title": "Final"}
    raw = [ev("human_input_required", **first), ev("workflow_paused", reasons=[first]), ev("workflow_started"),
           ev("human_input_form_filled", node_id="review"), ev("workflow_paused", reasons=[second])]
    found = pending_form(raw)
    assert found is not None
    assert found.form_token == "tok2"
    assert pending_form([ev("workflow_started"), ev("workflow_paused", reasons=[second])]) == found
    assert pending_form(raw[:4]) is None  # answered, resumed, not paused again
    email = {**first, "form_token": None}
    found = pending_form([ev("human_input_required", **email), ev("workflow_paused", reasons=[email])])
    assert found is not None
    assert not found.answerable


def test_the_events_replay_finds_the_form(harness: Harness, router: respx.MockRouter) -> None:
    reason = {"TYPE": "human_input_required", "form_token": TOKEN, "node_id": "final", "node_title": "Final"}
    router.get(url(f"/workflow/{RUN_ID}/events")).mock(return_value=sse_response(
        frame({"event": "workflow_started", "workflow_run_id": RUN_ID, "task_id": RUN_ID, "data": {}}),
        frame({"event": "workflow_paused", "workflow_run_id": RUN_ID, "task_id": RUN_ID,
               "data": {"reasons": [reason]}}),
    ))
    if harness.kind == "async":
        pytest.skip("the replay is read by the worker (sync client) only")
    form = harness.call("pending_human_input_form", RUN_ID, "alice")
    assert form.form_token == TOKEN
    params = dict(router.calls.last.request.url.params)
    assert params == {"user": "alice", "include_state_snapshot": "true"}


def test_no_events_api_means_no_pending_form(harness: Harness, router: respx.MockRouter) -> None:
    if harness.kind == "async":
        pytest.skip("the replay is read by the worker (sync client) only")
    router.get(url(f"/workflow/{RUN_ID}/events")).mock(return_value=html_404())
    assert harness.call("pending_human_input_form", RUN_ID, "alice") is None


@pytest.mark.parametrize("reply", [
    httpx.Response(404, json={"code": "not_found", "message": "Form not found", "status": 404}),
    httpx.Response(200, text="not json"),
    httpx.ConnectError("refused"),
], ids=["404", "bad-body", "unreachable"])
def test_errors_name_the_route_not_the_token(harness: Harness, router: respx.MockRouter, reply: Any) -> None:
    """The token is a capability (1.13's web route takes it without a key): no error text shows it."""
    route = router.get(url(f"/form/human_input/{TOKEN}"))
    route.mock(side_effect=reply) if isinstance(reply, Exception) else route.mock(return_value=reply)
    with pytest.raises(DifyError) as caught:
        harness.with_retry(max_attempts=1).call("get_human_input_form", TOKEN)
    assert TOKEN not in str(caught.value)
    assert "/form/human_input/{form_token}" in str(caught.value)
