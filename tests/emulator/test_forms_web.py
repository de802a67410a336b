"""Human-input forms on a Dify 1.13.2 emulator (the default): the key-less web route
``/api/form/human_input/{token}`` (the service route comes with 1.14), email delivery, defaults,
a chatflow that pauses, and the checks on a scripted form."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from dify_provider.testing import DifyEmulator, FormActionSpec, FormInputSpec, FormSpec, Scenario

from .conftest import chat_body, make_client, open_stream, run_body, succeeded_outputs

SIGN_OFF = FormSpec(
    node_id="sign_off",
    title="Sign-off",
    inputs=(
        FormInputSpec(type="select", name="level", options=("low", "high")),
        FormInputSpec(type="paragraph", name="why"),
    ),
    actions=(FormActionSpec(id="sign", title="Sign"),),
)


@pytest.fixture
def web(emu: DifyEmulator) -> Iterator[httpx.Client]:
    """A client of Dify's web API, without credentials."""
    with make_client(emu, app=None, base_url=f"{emu.root_url}/api") as c:
        yield c


def paused_run(emu: DifyEmulator, *forms: FormSpec) -> tuple[str, str | None]:
    """A run paused at its first form, started as a 1.13.2 client must to learn the token: streaming
    (a blocking answer names no form, recording hitl/20)."""
    emu.script("approval", Scenario(status="paused", forms=forms or None))
    with make_client(emu, "approval") as c, open_stream(
        c, "POST", "/workflows/run", json=run_body(mode="streaming")
    ) as reader:
        reader.read_all()  # the stream closes at the pause
    required = next(e for e in reader.events if e["event"] == "human_input_required")
    return required["workflow_run_id"], required["data"]["form_token"]


def test_the_web_route_needs_no_key(web: httpx.Client, emu: DifyEmulator) -> None:
    """Recordings hitl/50-60: the form by token, on a 1.13.2 that has no service-API form route."""
    assert not emu.config.has_events_api
    run_id, token = paused_run(emu, SIGN_OFF)
    got = web.get(f"/form/human_input/{token}")
    assert (got.status_code, got.headers["content-type"], got.headers["x-version"]) == (
        200, "application/json", "1.13.2")  # fmt: skip
    assert b'"form_content": "' in got.content  # json.dumps' own separators, as Dify writes it
    form = got.json()
    assert set(form) == {"form_content", "inputs", "resolved_default_values", "user_actions", "expiration_time", "site"}
    assert set(form["site"]) == {"app_id", "end_user_id", "enable_site", "site", "model_config", "plan",
                                 "can_replace_logo", "custom_config"}
    assert (form["site"]["app_id"], form["site"]["site"]["title"]) == (emu.app_id("approval"), "approval")
    assert [a["id"] for a in form["user_actions"]] == ["sign"]
    with make_client(emu, "approval") as service:
        missing = service.get(f"/form/human_input/{token}")
        assert (missing.status_code, missing.headers["content-type"]) == (404, "text/html; charset=utf-8")
        assert service.get(f"{emu.root_url}/api/form/human_input/{token}").json() == form  # a key is ignored

    path = f"/form/human_input/{token}"
    reqparse = [
        (web.post(path, json={"action": "sign"}), "inputs", "Missing required parameter in the JSON body"),
        (web.post(path, json={"inputs": "x", "action": "sign"}), "inputs",
         "dictionary update sequence element #0 has length 1; 2 is required"),
        (web.post(path, json={"inputs": {}}), "action", "Missing required parameter in the JSON body"),
    ]
    for response, name, why in reqparse:
        assert (response.status_code, response.json()) == (
            400, {"errors": {name: why}, "message": "Input payload validation failed"})  # fmt: skip
    refused = [
        web.post(path, json={"inputs": {"level": "low"}, "action": "sign"}),
        web.post(path, json={"inputs": {"level": "low", "why": ""}, "action": "Sign"}),  # a title is no id
    ]
    assert [(r.status_code, r.json()["code"], r.json()["message"]) for r in refused] == [
        (400, "invalid_form_data", "Missing required inputs: why"),
        (400, "invalid_form_data", "Invalid action: Sign"),
    ]
    ok = web.post(path, json={"inputs": {"level": "low", "why": "fine", "extra": 1}, "action": "sign"})
    assert (ok.status_code, ok.json()) == (200, {})
    assert web.post(path, json={"inputs": {}, "action": "sign"}).json()["code"] == "human_input_form_submitted"
    assert web.get(path).status_code == 412
    unknown = web.post("/form/human_input/nosuchtoken123", json={"inputs": {}, "action": "sign"})
    assert (unknown.status_code, unknown.json()) == (404, {
        "code": "not_found",
        "message": "Form not found. You have requested this URI [/api/form/human_input/nosuchtoken123] but did "
                   "you mean /api/form/human_input/<string:form_token> or "
                   "/console/api/form/human_input/<string:form_token> ?",
        "status": 404,
    })  # fmt: skip

    assert succeeded_outputs(emu, run_id)["branch"] == "sign"
    recorded = emu.requests_to("POST", f"/api/form/human_input/{token}")
    assert [(r.status, r.app) for r in recorded] == [(400, None)] * 5 + [(200, None), (412, None)]
    assert recorded[5].body == {"inputs": {"level": "low", "why": "fine", "extra": 1}, "action": "sign"}


def test_the_content_shows_the_runs_variables(web: httpx.Client, emu: DifyEmulator) -> None:
    form = FormSpec(content="Draft: {{#start.text#}} by {{#sys.user_id#}} ({{#llm.text#}}): {{#$output.comment#}}")
    run_id, token = paused_run(emu, form)
    shown = "Draft: hello by tester (llm.text): {{#$output.comment#}}"  # an unknown variable: its bare name
    assert web.get(f"/form/human_input/{token}").json()["form_content"] == shown
    emu.resume(run_id, inputs={"comment": "ok"})
    assert succeeded_outputs(emu, run_id)["human_input"]["human_input"]["inputs"] == {"comment": "ok"}


def test_an_email_form_has_no_token(emu: DifyEmulator) -> None:
    emu.script("approval", Scenario(status="paused", forms=(FormSpec(node_id="mail", delivery="email"),)))
    with make_client(emu, "approval") as c, open_stream(
        c, "POST", "/workflows/run", json=run_body(mode="streaming")
    ) as reader:
        reader.read_all()  # the stream closes at the pause
    required, paused = reader.events[-2]["data"], reader.events[-1]["data"]
    assert (required["form_token"], required["display_in_ui"]) == (None, False)
    assert (paused["reasons"][0]["form_token"], paused["reasons"][0]["node_id"]) == (None, "mail")
    run_id = reader.events[0]["workflow_run_id"]
    snapshot = emu.runs[run_id]
    assert (snapshot.form_token, snapshot.form_node_id) == (None, "mail")
    emu.resume(run_id, "reject")  # answered through the mailed link, as far as the run can tell
    assert succeeded_outputs(emu, run_id)["human_input"] == {
        "mail": {"action": "reject", "action_text": "Reject", "inputs": {"comment": ""}}}


def test_defaults_show_as_dify_shows_them(web: httpx.Client, emu: DifyEmulator) -> None:
    form = FormSpec(inputs=(
        FormInputSpec(type="text_input", name="greeting", default="hi"),
        FormInputSpec(type="text_input", name="who", default_from=("start", "text")),
        FormInputSpec(type="text_input", name="uid", default_from=("sys", "user_id")),
        FormInputSpec(type="text_input", name="nothing", default_from=("llm", "text")),
    ))  # fmt: skip
    run_id, token = paused_run(emu, form)
    shown = web.get(f"/form/human_input/{token}").json()
    assert [i["default"] for i in shown["inputs"]] == [
        {"type": "constant", "selector": [], "value": "hi"},
        {"type": "variable", "selector": ["start", "text"], "value": ""},
        {"type": "variable", "selector": ["sys", "user_id"], "value": ""},
        {"type": "variable", "selector": ["llm", "text"], "value": ""},
    ]
    # Only variable defaults are resolved, and one that resolves to nothing is left out.
    assert shown["resolved_default_values"] == {"who": "hello", "uid": "tester"}
    emu.resume(run_id)  # the web app sends what it prefilled
    assert succeeded_outputs(emu, run_id)["human_input"]["human_input"]["inputs"] == {
        "greeting": "hi", "who": "hello", "uid": "tester", "nothing": ""}  # fmt: skip


def test_a_chatflow_pauses_for_its_forms(web: httpx.Client, emu: DifyEmulator) -> None:
    """Recordings hitl/A0, A2, A7, C2: the stream closes at the pause; ``GET /messages`` lists the
    message's forms, with the token of the one waiting (how a chat client finds a later form)."""
    confirm = FormSpec(node_id="confirm", title="Confirm", content="Reply to {{#sys.query#}}?", inputs=(),
                       actions=(FormActionSpec(id="go", title="Go"),))
    emu.script("chat", Scenario(status="paused", step_seconds=0.005, tokens_per_step=0,
                                forms=(FormSpec(), confirm)))  # fmt: skip
    with make_client(emu, "chat") as c:
        with open_stream(c, "POST", "/chat-messages", json=chat_body("hi", mode="streaming")) as reader:
            reader.read_all()
        assert reader.names[-2:] == ["human_input_required", "workflow_paused"]
        first = reader.events[-1]
        token = first["data"]["reasons"][0]["form_token"]
        params = {"conversation_id": first["conversation_id"], "user": "tester"}

        def contents() -> list[Any]:
            (item,) = c.get("/messages", params=params).json()["data"]
            return list(item["extra_contents"])

        (waiting,) = contents()
        assert (waiting["submitted"], waiting["form_submission_data"], waiting["type"]) == (False, None, "human_input")
        assert waiting["form_definition"]["form_token"] == token
        submitted = web.post(f"/form/human_input/{token}", json={"inputs": {"comment": "sure"}, "action": "approve"})
        assert submitted.json() == {}
        run = emu.wait_for(lambda r: r.message_id == first["message_id"] and r.form_node_id == "confirm")
        answered, pending = contents()
        assert answered["form_submission_data"] == {
            "node_id": "human_input", "node_title": "Human Input", "action_id": "approve", "action_text": "Approve",
            "rendered_content": "Please review the result before it is published.\n\nsure"}  # fmt: skip
        definition = pending["form_definition"]
        assert (definition["form_token"], definition["form_content"]) == (run.form_token, "Reply to hi?")
    assert web.post(f"/form/human_input/{run.form_token}", json={"inputs": {}, "action": "go"}).status_code == 200
    outputs = succeeded_outputs(emu, run.id)
    assert outputs["answer"] == "Echo: hi (turn 1)"
    assert outputs["branch"] == "go"
    assert list(outputs["human_input"]) == ["human_input", "confirm"]
    assert emu.wait_for_message(first["message_id"], status="succeeded").answer == "Echo: hi (turn 1)"


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: FormActionSpec(id="1st", title="First"), "should match pattern"),
        (lambda: FormActionSpec(id="a" * 21, title="Long"), "at most 20 characters"),
        (lambda: FormInputSpec(type="select", name="level"), "needs options"),
        (lambda: FormInputSpec(name="note", options=("a",)), "only a select has options"),
        (lambda: FormSpec(inputs=(FormInputSpec(name="a"), FormInputSpec(name="a"))), "duplicated output variable"),
        (lambda: FormSpec(actions=(FormActionSpec(id="x", title="X"),) * 2), "duplicated user action id 'x'"),
        (lambda: FormSpec(end_on=("maybe",)), "end_on names no action"),
        (lambda: Scenario(forms=(FormSpec(),)), 'status="paused"'),
        (lambda: Scenario(status="paused", forms=(FormSpec(), FormSpec())), "share a node_id"),
    ],
)
def test_a_form_dify_would_refuse_fails_loudly(build: Callable[[], object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        build()
