"""The e2e's human-input part (Airflow 3.3+, browser mode): a person answers a Dify form in the
Airflow UI. Called by ``scripts/e2e.py`` once the other examples are checked.

1. Scripts the emulator's ``echo`` app to pause on a "Review the draft" form (a text line with a
   default, a paragraph, a select; "Approve" / "Reject") and triggers ``example_dify_human_input``
   through ``/api/v2``.
2. Waits (REST) until task ``draft`` is ``awaiting_input`` with its required action written, and
   checks the action's subject, body, options and params against the form.
3. In headless Chromium, with real mouse clicks and typing: Browse > Required Actions, the row of
   this run ("... Required"), its subject link to the task instance's "Required Action" tab
   ("Awaiting Input"), fills ``headline``, ``comment`` (a textarea) and ``tone`` (a select), and
   presses "Approve"; the page then shows the task's 'Success' by itself. Screenshots in
   ``.e2e/artifacts/``: ``hitl-form-filled.png``, ``hitl-form-answered.png``, ``hitl-task-success.png``.
4. Waits for the DAG run and checks the answer end to end: Airflow's hitlDetails, the Dify run's
   outputs (emulator), XCom ``human_input`` and ``return_value`` of ``draft``, ``publish``'s
   branch, and that the form was posted to Dify exactly once.

The emulator keeps the e2e's server version (Dify 1.13.2): the operator stays on the run's
stream until the pause and answers on 1.13's web route (``/api/form/human_input/{token}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from demo import ROOT, EmulatorProcess, say

from dify_provider.testing.forms import FormActionSpec, FormInputSpec, FormSpec
from dify_provider.testing.models import Scenario

if TYPE_CHECKING:
    from e2e import AirflowStack, Browser, Report

DAG_HITL = "example_dify_human_input"
SUBJECT = "Review the draft"
REVIEW = FormSpec(
    node_id="review", title=SUBJECT,
    content="Check the summary before it is published.\n\n{{#$output.comment#}}",
    inputs=(FormInputSpec(type="text_input", name="headline", default="Draft"),
            FormInputSpec(type="paragraph", name="comment"),
            FormInputSpec(type="select", name="tone", options=("plain", "formal"))),
    actions=(FormActionSpec(id="approve", title="Approve", button_style="primary"),
             FormActionSpec(id="reject", title="Reject")),
    end_on=("reject",),
)
SCENARIO = Scenario(status="paused", forms=(REVIEW,), after_resume="succeeded")
#: What the person types and chooses in the UI (the comment on two lines: it is a textarea).
ANSWER = {"headline": "Q3 numbers", "comment": "Ship it.\nThe totals were checked.", "tone": "formal"}
SHOT_FILLED, SHOT_ANSWERED, SHOT_DONE = "hitl-form-filled.png", "hitl-form-answered.png", "hitl-task-success.png"

T = TypeVar("T")


class Poll(Protocol):
    """``e2e.poll``."""

    def __call__(self, what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.25,
                 alive: Callable[[], None] | None = None) -> T: ...


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def run_hitl_example(stack: AirflowStack, emulator: EmulatorProcess, report: Report, poll: Poll,
                     new_browser: Callable[[], Browser]) -> None:
    """The whole step (``e2e.poll``; ``new_browser`` makes the :class:`e2e.Browser` it starts)."""
    version = str(stack.get("/version")["version"])
    if _version(version) < (3, 3):
        say(f"▶ Example 4 skipped: Airflow {version} has no 'awaiting_input' (required actions answered "
            "in the UI are an Airflow 3.3 step of this e2e)")
        return
    with report.phase("Example 4: a person answers a Dify form in the Airflow UI (Required Actions)"):
        run_id, dify_run = _pause(stack, emulator, report, poll)
        asyncio.run(_answer_in_ui(new_browser(), stack, run_id, dify_run["form_token"], report))
        if not stack.get(_hitl_path(stack, run_id))["response_received"]:
            say("  nobody answered the form: the DAG run waits (until Airflow is stopped)")
            return
        _check_outcome(stack, emulator, report, poll, run_id, dify_run)


# --------------------------------------------------------------------------------------------
# 1-2. The pause, and the required action through REST
# --------------------------------------------------------------------------------------------


def _hitl_path(stack: AirflowStack, run_id: str) -> str:
    return f"{stack.ti_path(DAG_HITL, run_id, 'draft')}/-1/hitlDetails"


def _pause(stack: AirflowStack, emulator: EmulatorProcess, report: Report,
           poll: Poll) -> tuple[str, dict[str, Any]]:
    poll(f"{DAG_HITL} to be parsed and unpaused", lambda: not stack.get(f"/dags/{DAG_HITL}")["is_paused"], 120,
         alive=stack.alive)
    emulator.admin("POST", "/script", {"app": "echo", "scenarios": [SCENARIO.model_dump(mode="json")]})
    run_id = str(stack.api("POST", f"/dags/{DAG_HITL}/dagRuns", {"logical_date": None})["dag_run_id"])
    say(f"  {DAG_HITL}: {run_id}")
    user = f"airflow:{DAG_HITL}:draft:{run_id}"

    def paused() -> dict[str, Any] | None:
        return next((r for r in emulator.admin("GET", "/runs?status=paused") if r["user"] == user), None)

    def awaiting() -> dict[str, Any] | None:  # 404 until the task has written it
        detail: dict[str, Any] = stack.get(_hitl_path(stack, run_id))
        return detail if detail["task_instance"]["state"] == "awaiting_input" else None

    dify_run = poll("the Dify run to pause on its form", paused, 120, alive=stack.alive)
    detail = poll("task 'draft' to be awaiting input", awaiting, 120, alive=stack.alive)
    report.equal((dify_run["form_node_id"], stack.ti(DAG_HITL, run_id, "draft")["state"]),
                 ("review", "awaiting_input"),
                 "example 4: the Dify run paused on form 'review' and task 'draft' is awaiting_input")
    report.equal((detail["subject"], detail["body"], detail["options"], detail["multiple"],
                  detail["response_received"]),
                 (SUBJECT, "Check the summary before it is published.\n\n**[comment]**", ["Approve", "Reject"],
                  False, False),
                 "example 4: the required action's subject, body and options are the form's title, content, buttons")
    params = {name: (p.get("value"), p["schema"].get("format"),
                     [v for v in p["schema"].get("enum") or [] if v is not None])  # None: the field left empty
              for name, p in detail["params"].items()}
    report.equal(params, {"headline": ("Draft", None, []), "comment": (None, "multiline", []),
                          "tone": ("plain", None, ["plain", "formal"])},
                 "example 4: its params are the form's fields (a line with its default, a multi-line "
                 "paragraph, a select of the options, never empty)")
    report.check(dify_run["form_token"] not in json.dumps(detail),
                 "example 4: the form token (a capability) is not in the required action")
    return run_id, dify_run


# --------------------------------------------------------------------------------------------
# 3. The person, in headless Chromium
# --------------------------------------------------------------------------------------------


def _js(value: Any) -> str:
    return json.dumps(value)


def _field(name: str) -> str:
    """A field of Airflow's params form (``element_<param>``: an input, a textarea, a select's hidden input)."""
    return f"document.querySelector('[name=element_{name}]')"


# The select is a react-select: the container of its hidden input holds what it shows and its combobox.
_TONE_SELECT = ("(() => { let el = document.querySelector('input[name=element_tone]');"
                " while (el && !el.querySelector('input[role=combobox]')) el = el.parentElement; return el; })()")
_TONE_BOX = f"{_TONE_SELECT}?.querySelector('input[role=combobox]')"
_TONE_OPTIONS = (f"[...document.getElementById({_TONE_BOX}?.getAttribute('aria-controls'))"
                 "?.querySelectorAll('[role=option]') ?? []]")
_STATE = "document.querySelector('[data-testid=header-card] [data-testid=state-badge]')?.innerText.trim()"
_BUTTONS = "[...document.querySelectorAll('[data-testid^=\"hitl-option-\"]')]"
_VALUES = (f"Object.fromEntries({_js(list(ANSWER))}"
           ".map(n => [n, document.querySelector(`[name=element_${n}]`)?.value]))")


async def _select_all(page: Browser) -> None:
    """Ctrl+A in the focused field (what it holds is replaced by what is typed next)."""
    key = {"modifiers": 2, "key": "a", "code": "KeyA", "windowsVirtualKeyCode": 65}
    await page.send("Input.dispatchKeyEvent", {"type": "keyDown", **key, "commands": ["selectAll"]})
    await page.send("Input.dispatchKeyEvent", {"type": "keyUp", **key})


async def _answer_in_ui(browser: Browser, stack: AirflowStack, run_id: str, token: str, report: Report) -> None:
    """The person's part; a failure is a failed check (with a screenshot), not the end of the e2e."""
    try:
        async with browser as page:
            try:
                await _person(page, stack, run_id, token, report)
            except (RuntimeError, OSError) as exc:  # e2e.BrowserError; a DevTools call that timed out
                report.check(False, "example 4: the person answered the form in the UI", exc)
                with contextlib.suppress(RuntimeError, OSError):
                    shot = await page.screenshot("failed-hitl-check.png")
                    say(f"  screenshot {shot.relative_to(ROOT)}")
                return
            report.check(not page.errors, "example 4: no uncaught JavaScript errors in the Required Actions pages",
                         page.errors[:3])
    except RuntimeError as exc:  # chromium did not start (e2e.BrowserError)
        report.check(False, "example 4: headless Chromium started", exc)
    finally:
        say(f"  {browser.stop()}")


async def _person(page: Browser, stack: AirflowStack, run_id: str, token: str, report: Report) -> None:
    # Browse > Required Actions: the row of this run, waiting for a response.
    await page.goto(f"{stack.base}/dags")
    await page.click("document.querySelector('button[aria-label=\"Browse\"]')", "the Browse menu")
    await page.click("[...document.querySelectorAll('[role=menuitem]')]"
                     ".find(e => e.innerText.trim() === 'Required Actions')", "Browse > Required Actions")
    row = f"[...document.querySelectorAll('tbody tr')].find(r => r.innerText.includes({_js(run_id)}))"
    cells = await page.wait_for(f"{row} && [...{row}.cells].map(c => c.innerText.trim())",
                                "this run's row in Required Actions")
    report.check(await page.js("location.pathname") == "/required_actions"
                 and cells[0].endswith("Required") and SUBJECT in cells and "draft" in cells,
                 f"example 4: Browse > Required Actions lists '{SUBJECT}' of task 'draft', '{cells[0]}'", cells)

    # Its subject link: the task instance's "Required Action" tab, with the form.
    await page.click(f"[...{row}.querySelectorAll('a')].find(a => a.innerText.trim() === {_js(SUBJECT)})",
                     "the subject link")
    await page.wait_for(f"{_BUTTONS}.length && !!{_field('tone')}", "the form of the required action")
    shown = await page.js(f"""({{
        path: decodeURIComponent(location.pathname),
        state: {_STATE},
        tab: [...document.querySelectorAll('button, a')].map(e => e.innerText.trim())
             .find(t => t.startsWith('Required Action')),
        text: document.querySelector('[data-testid=main-content]')?.innerText ?? '',
        buttons: {_BUTTONS}.map(e => e.innerText.trim()),
        headline: [{_field('headline')}?.tagName, {_field('headline')}?.value],
        comment: [{_field('comment')}?.tagName, {_field('comment')}?.value],
        tone: [!!{_TONE_BOX}, {_TONE_SELECT}?.innerText.trim()],
    }})""")
    report.equal((shown["path"], shown["state"], shown["tab"]),
                 (f"/dags/{DAG_HITL}/runs/{run_id}/tasks/draft/required_actions", "Awaiting Input",
                  "Required Action (1)"),
                 "example 4: the subject opens the task instance's 'Required Action (1)' tab, the task "
                 "'Awaiting Input'")
    report.check(all(part in shown["text"] for part in (SUBJECT, "Check the summary before it is published.",
                                                        "headline", "comment", "tone")),
                 "example 4: the tab shows the form's title, content and fields", shown["text"][-600:])
    report.equal((shown["buttons"], shown["headline"], shown["comment"][0], shown["tone"][0]),
                 (["Approve", "Reject"], ["INPUT", "Draft"], "TEXTAREA", True),
                 "example 4: buttons 'Approve' and 'Reject'; 'headline' a line prefilled 'Draft', 'comment' "
                 "a textarea, 'tone' a select")
    report.check(not await page.js(f"document.documentElement.outerHTML.includes({_js(token)})"),
                 "example 4: the form token is nowhere in the page")

    # The person fills the form: a line (its default replaced), two lines of text, a choice.
    await page.click(_field("headline"), "the headline field")
    await _select_all(page)
    await page.type(ANSWER["headline"])
    await page.click(_field("comment"), "the comment textarea")
    await page.type(ANSWER["comment"])
    await page.click(_TONE_BOX, "the tone select")
    options = await page.wait_for(f"{_TONE_OPTIONS}.map(e => e.innerText.trim())", "the tone options")
    report.equal(options, ["plain", "formal"], "example 4: the tone select offers the form's options only")
    await page.click(f"{_TONE_OPTIONS}.find(e => e.innerText.trim() === {_js(ANSWER['tone'])})",
                     f"the '{ANSWER['tone']}' option")
    filled = await page.wait_for(f"(v => v.tone === {_js(ANSWER['tone'])} && v)({_VALUES})", "the chosen tone")
    report.equal(filled, ANSWER, "example 4: the form holds what the person typed and chose")
    shot = await page.screenshot(SHOT_FILLED)
    say(f"  screenshot {shot.relative_to(ROOT)}")

    # "Approve"; the page follows the task to its end.
    await page.click(f"{_BUTTONS}.find(b => b.innerText.trim() === 'Approve')", "the Approve button")
    toast = await page.wait_for(
        "document.body.innerText.includes('Response received') && "
        "[...document.querySelectorAll('[data-scope=toast], [role=status]')].map(e => e.innerText.trim())"
        ".find(t => t.includes('response successful'))", "the answer to be taken")
    received = await page.js("document.querySelector('[data-testid=main-content]')?.innerText.split('\\n')"
                             ".find(t => t.startsWith('Response received')) ?? ''")
    report.check(toast == "draft response successful" and await page.js(f"{_BUTTONS}.every(b => b.disabled)"),
                 f"example 4: 'Approve' pressed: toast '{toast}', '{received}', the buttons disabled", toast)
    shot = await page.screenshot(SHOT_ANSWERED)
    say(f"  screenshot {shot.relative_to(ROOT)}")
    await page.wait_for(f"{_STATE} === 'Success'", "the task to show 'Success' in the UI", within=60)
    report.check(True, "example 4: the page follows the task from 'Awaiting Input' to 'Success' (no reload)")
    shot = await page.screenshot(SHOT_DONE)
    say(f"  screenshot {shot.relative_to(ROOT)}")


# --------------------------------------------------------------------------------------------
# 4. The answer, end to end
# --------------------------------------------------------------------------------------------


def _check_outcome(stack: AirflowStack, emulator: EmulatorProcess, report: Report, poll: Poll, run_id: str,
                   paused: dict[str, Any]) -> None:
    path = f"/dags/{DAG_HITL}/dagRuns/{stack.q(run_id)}"

    def finished() -> str | None:
        state = str(stack.get(path)["state"])
        return state if state in ("success", "failed") else None

    state = poll(f"{DAG_HITL} to finish", finished, 60, alive=stack.alive)
    states = {t["task_id"]: t["state"] for t in stack.get(stack.ti_path(DAG_HITL, run_id))["task_instances"]}
    report.equal((state, states), ("success", {"draft": "success", "publish": "success"}),
                 f"{DAG_HITL}: DAG run success, both tasks succeeded")

    detail = stack.get(_hitl_path(stack, run_id))
    who = detail.get("responded_by_user") or {}
    report.equal((detail["response_received"], detail["chosen_options"], detail["params_input"]),
                 (True, ["Approve"], ANSWER),
                 f"example 4: hitlDetails holds the UI's answer: 'Approve' and the typed fields, by "
                 f"{who.get('name')!r}")

    dify_run = emulator.admin("GET", f"/runs/{paused['id']}")
    outputs = dify_run.get("outputs") or {}
    report.equal((dify_run["status"], outputs.get("human_input"), outputs.get("branch"), dify_run["forms_answered"]),
                 ("succeeded", {"review": {"action": "approve", "action_text": "Approve", "inputs": ANSWER}},
                  "approve", 1),
                 "example 4: the Dify run succeeded with outputs.human_input.review = approve + the typed inputs")

    answers = stack.xcom(DAG_HITL, run_id, "draft", "human_input")
    entry = answers[0] if isinstance(answers, list) and len(answers) == 1 else {}
    report.equal((len(answers), entry.get("outcome"), entry.get("action"), entry.get("inputs"), entry.get("node")),
                 (1, "answered", "approve", ANSWER, SUBJECT),
                 "example 4: XCom draft/human_input is one entry: answered, approve, the typed inputs")
    report.check(bool((entry.get("responded_by") or {}).get("name")) and entry.get("responded_by") == who,
                 f"example 4: the entry's responded_by is who answered in the UI ({entry.get('responded_by')})",
                 entry)
    report.equal((stack.xcom(DAG_HITL, run_id, "draft"), stack.xcom(DAG_HITL, run_id, "publish")),
                 (outputs, "approve"),
                 "example 4: XCom draft/return_value is the run's outputs; 'publish' returned 'approve'")

    token = paused["form_token"]
    posts = [r for r in emulator.admin("GET", "/requests?method=POST") if r["path"].endswith(f"/{token}")]
    answered = [r for r in posts if r["status"] is not None and 200 <= r["status"] < 300]
    probes = sorted({f"{r['path'].removesuffix(token)}… {r['status']}" for r in posts if r not in answered})
    report.equal([(r["path"].removesuffix(token), r["body"]) for r in answered],
                 [("/api/form/human_input/", {"inputs": ANSWER, "action": "approve"})],
                 "example 4: the form was answered exactly once, on Dify 1.13's web route"
                 + (f" (after {', '.join(probes)})" if probes else ""))
