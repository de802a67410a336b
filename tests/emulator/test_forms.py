"""Scripted human-input forms on the service API (Dify 1.14's ``/v1/form/human_input/{token}``, so
this module runs the emulator as 1.14.0): several pauses per run, each form with its own token,
Dify's checks on an answer, the answers in the outputs, an ``end_on`` branch, and timeouts the test
decides on (``expire_form``). The 1.13.2 web route, email delivery and chatflows: test_forms_web.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dify_provider.testing import DifyEmulator, FormActionSpec, FormInputSpec, FormSpec, Scenario

from .conftest import auth, make_client, open_stream, run_body, succeeded_outputs

REVIEW = FormSpec(
    node_id="review",
    title="Review",
    content="Check: {{#$output.note#}}",
    inputs=(FormInputSpec(type="text_input", name="note"),),
    actions=(FormActionSpec(id="ok", title="OK", button_style="primary"), FormActionSpec(id="no", title="No")),
    end_on=("no",),
)
SIGN_OFF = FormSpec(
    node_id="sign_off",
    title="Sign-off",
    inputs=(
        FormInputSpec(type="select", name="level", options=("low", "high")),
        FormInputSpec(type="paragraph", name="why", default="because"),
    ),
    actions=(FormActionSpec(id="sign", title="Sign"),),
)
TWO_FORMS = Scenario(status="paused", forms=(REVIEW, SIGN_OFF))


@pytest.fixture
def emu(dify_emulator: DifyEmulator) -> DifyEmulator:
    dify_emulator.configure(server_version="1.14.0")
    return dify_emulator


@pytest.fixture
def approval(emu: DifyEmulator) -> Iterator[httpx.Client]:
    """A service-API client with the ``approval`` app's key."""
    with make_client(emu, "approval") as c:
        yield c


def start_paused(client: httpx.Client, emu: DifyEmulator, scenario: Scenario | None = None) -> tuple[str, str]:
    """A blocking run that returns at its first pause: (run id, the first form's token)."""
    if scenario is not None:
        emu.script("approval", scenario)
    data = client.post("/workflows/run", json=run_body()).json()
    assert data["data"]["status"] == "paused"
    return data["workflow_run_id"], data["data"]["reasons"][0]["form_token"]


def answer(client: httpx.Client, token: str, action: str, **inputs: Any) -> httpx.Response:
    return client.post(f"/form/human_input/{token}", json={"inputs": inputs, "action": action, "user": "tester"})


def test_two_forms_one_after_the_other(approval: httpx.Client, emu: DifyEmulator) -> None:
    run_id, first = start_paused(approval, emu, TWO_FORMS)
    form = approval.get(f"/form/human_input/{first}").json()
    assert form["user_actions"] == [
        {"id": "ok", "title": "OK", "button_style": "primary"},
        {"id": "no", "title": "No", "button_style": "default"},
    ]
    assert form["inputs"] == [{"type": "text_input", "output_variable_name": "note", "default": None}]
    assert emu.runs[run_id].form_node_id == "review"

    assert (answer(approval, first, "ok", note="fine").status_code, emu.runs[run_id].forms_answered) == (200, 1)
    second = emu.wait_for(lambda r: r.id == run_id and r.form_node_id == "sign_off", status="paused")
    assert second.form_token not in (None, first)
    form = approval.get(f"/form/human_input/{second.form_token}").json()
    level, why = form["inputs"]
    assert level["option_source"] == {"type": "constant", "value": ["low", "high"]}
    assert why["default"] == {"type": "constant", "selector": [], "value": "because"}
    assert form["resolved_default_values"] == {}  # Dify resolves variable defaults only
    stale = approval.get(f"/form/human_input/{first}")
    assert (stale.status_code, stale.json()["code"]) == (412, "human_input_form_submitted")

    assert answer(approval, second.form_token or "", "sign", level="high", why="ready").status_code == 200
    done = emu.wait_for(run_id, status="succeeded")
    assert done.total_steps == 3 + 1 + 1 + 1 + 1  # nodes, review, the node between, sign-off, the end
    assert done.outputs is not None
    assert done.outputs["text"] == "HELLO"  # the app's outputs are still there
    assert done.outputs["human_input"] == {
        "review": {"action": "ok", "action_text": "OK", "inputs": {"note": "fine"}},
        "sign_off": {"action": "sign", "action_text": "Sign", "inputs": {"level": "high", "why": "ready"}},
    }
    assert done.outputs["branch"] == "sign"
    assert approval.get(f"/workflows/run/{run_id}").json()["outputs"] == done.outputs


def test_an_end_on_action_ends_the_run_after_its_form(approval: httpx.Client, emu: DifyEmulator) -> None:
    run_id, token = start_paused(approval, emu, TWO_FORMS)
    assert answer(approval, token, "no", note="not good").status_code == 200
    done = emu.wait_for(run_id, status="succeeded")
    assert done.total_steps == 3 + 1  # no sign-off, no node after the form
    assert done.outputs is not None
    assert (done.outputs["branch"], list(done.outputs["human_input"])) == ("no", ["review"])


def test_an_answer_is_checked_as_dify_checks_it(approval: httpx.Client, emu: DifyEmulator) -> None:
    run_id, token = start_paused(approval, emu, Scenario(status="paused", forms=(SIGN_OFF,)))
    refused = [
        answer(approval, token, "maybe"),  # the action first, whatever the inputs
        answer(approval, token, "sign"),
        answer(approval, token, "sign", level="medium", why=""),  # not an option (our guess at its check)
    ]
    assert [(r.status_code, r.json()["code"]) for r in refused] == [(400, "invalid_form_data")] * 3
    messages = [r.json()["message"] for r in refused[:2]]
    assert messages == ["Invalid action: maybe", "Missing required inputs: level, why"]
    assert emu.runs[run_id].status == "paused"  # a refused answer changes nothing

    with pytest.raises(ValueError, match="Invalid action: maybe"):
        emu.resume(run_id, action="maybe")
    with httpx.Client(base_url=emu.admin_url) as admin:
        bad = admin.post(f"/runs/{run_id}/resume", json={"action": "sign", "inputs": {"level": "medium"}})
        assert bad.status_code == 400
        assert "level" in bad.json()["error"]
    assert answer(approval, token, "sign", level="low", why="").status_code == 200


def test_a_form_answered_in_the_web_app_is_submitted(approval: httpx.Client, emu: DifyEmulator) -> None:
    emu.script("approval", Scenario(status="paused"))  # the default form: a comment, approve or reject
    data = approval.post("/workflows/run", json=run_body()).json()
    run_id, reason = data["workflow_run_id"], data["data"]["reasons"][0]
    emu.resume(run_id)  # no inputs: the comment stays empty, as the page left it
    for response in (answer(approval, reason["form_token"], "approve", comment="late"),
                     approval.get(f"/form/human_input/{reason['form_token']}")):
        assert (response.status_code, response.json()) == (412, {
            "code": "human_input_form_submitted",
            "message": f"This form has already been submitted by another user, form_id={reason['form_id']}",
            "status": 412,
        })  # fmt: skip
    assert "human_input" not in succeeded_outputs(emu, run_id)  # no forms scripted: outputs as before
    with pytest.raises(ValueError, match="not waiting for input"):
        emu.resume(run_id)


def test_expire_form_takes_the_timeout_branch(approval: httpx.Client, emu: DifyEmulator) -> None:
    with httpx.Client(base_url=emu.admin_url) as admin:
        scripted = admin.post("/script", json={"app": "approval", "scenarios": [TWO_FORMS.model_dump(mode="json")]})
        assert scripted.json() == {"scripted": 1}
        run_id, token = start_paused(approval, emu)
        expired = admin.post(f"/runs/{run_id}/expire-form")
        assert (expired.status_code, expired.json()["form_token"]) == (200, None)
        second = emu.wait_for(lambda r: r.id == run_id and r.form_node_id == "sign_off", status="paused")
        late = answer(approval, token, "ok", note="late")
        assert (late.status_code, late.json()["code"]) == (412, "human_input_form_expired")
        assert late.json()["message"].startswith("This form has expired, form_id=")
        assert second.forms_answered == 0  # a timeout is no answer
        emu.expire_form(run_id)  # the last one times out too
        assert admin.post(f"/runs/{run_id}/expire-form").status_code == 409  # nothing waits any more
    outputs = succeeded_outputs(emu, run_id)
    assert (outputs["branch"], outputs["human_input"]) == ("timeout", {})


def test_expiry_by_the_clock_refuses_answers(approval: httpx.Client, emu: DifyEmulator) -> None:
    """``ttl_seconds=0``: the form expires as it opens; nothing sweeps it, the test times it out."""
    run_id, token = start_paused(approval, emu, Scenario(status="paused", forms=(FormSpec(ttl_seconds=0),)))
    assert answer(approval, token, "approve", comment="").json()["code"] == "human_input_form_expired"
    with pytest.raises(ValueError, match="expired"):
        emu.resume(run_id)
    assert emu.runs[run_id].status == "paused"
    emu.expire_form(run_id)
    assert succeeded_outputs(emu, run_id)["branch"] == "timeout"


def test_a_snapshot_then_what_happens_next(approval: httpx.Client, emu: DifyEmulator) -> None:
    """``include_state_snapshot`` and ``continue_on_pause``: the state Dify rebuilds (one start, the
    nodes without details, only the pause the run waits in now), then the live events."""
    run_id, _ = start_paused(approval, emu, TWO_FORMS)
    emu.resume(run_id, "ok", {"note": "fine"})
    emu.wait_for(lambda r: r.id == run_id and r.form_node_id == "sign_off", status="paused")
    params = {"user": "tester", "include_state_snapshot": "true", "continue_on_pause": "true"}
    with open_stream(approval, "GET", f"/workflow/{run_id}/events", params=params) as reader:
        snapshot = reader.until_event("workflow_paused").events
        emu.expire_form(run_id)
        reader.read_all()
    assert [e["event"] for e in snapshot] == ["workflow_started", *["node_started", "node_finished"] * 6,
                                              "workflow_paused"]  # no human_input_required, no form filled
    assert snapshot[-1]["data"]["reasons"][0]["node_id"] == "sign_off"
    live = reader.events[len(snapshot):]
    of = {name: [e["data"] for e in live if e["event"] == name] for name in {e["event"] for e in live}}
    assert [d["reason"] for d in of["workflow_started"]] == ["resumption"]
    (timeout,) = of["human_input_form_timeout"]
    assert set(timeout) == {"node_id", "node_title", "expiration_time"}
    assert (timeout["node_id"], timeout["node_title"]) == ("sign_off", "Sign-off")
    outputs = {d["node_id"]: d["outputs"] for d in of["node_finished"]}
    assert outputs["sign_off"] == {"__action_id": ""}  # HumanInputNode's timeout outputs
    assert reader.names[-1] == "workflow_finished"
    finished = of["workflow_finished"][0]["outputs"]
    assert (finished["branch"], list(finished["human_input"])) == ("timeout", ["review"])


def test_forms_of_another_app_are_not_found(approval: httpx.Client, emu: DifyEmulator) -> None:
    _, token = start_paused(approval, emu)
    response = approval.get(f"/form/human_input/{token}", headers=auth(emu, "echo"))
    assert (response.status_code, response.json()["message"]) == (404, "Form not found")


def test_a_snapshot_ends_at_the_form_that_waits_now(approval: httpx.Client, emu: DifyEmulator) -> None:
    """Without ``continue_on_pause`` the replay closes at the current pause, the only one it has."""
    run_id, _ = start_paused(approval, emu, TWO_FORMS)
    emu.resume(run_id, "ok", {"note": "fine"})
    waiting = emu.wait_for(lambda r: r.id == run_id and r.form_node_id == "sign_off", status="paused")
    params = {"user": "tester", "include_state_snapshot": "true"}
    with open_stream(approval, "GET", f"/workflow/{run_id}/events", params=params) as reader:
        reader.read_all()  # closes by itself
    assert (reader.names.count("workflow_paused"), reader.names[-1]) == (1, "workflow_paused")
    assert "human_input_required" not in reader.names
    assert reader.events[-1]["data"]["reasons"][0]["form_token"] == waiting.form_token
