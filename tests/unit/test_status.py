"""``judge()``: every status under every wait policy, as one table."""

from __future__ import annotations

import pytest

from dify_provider.client import TERMINAL_STATUSES, Decision, Reason, Verdict, WaitPolicy, WorkflowRunStatus, judge
from dify_provider.client.status import LOG_FILTER_STATUSES, is_terminal, parse_status

S, F, W = Verdict.SUCCESS, Verdict.FAILURE, Verdict.WAIT
POLICIES = {
    "lenient": WaitPolicy(),
    "fail_on_partial": WaitPolicy(fail_on_partial=True),
    "fail_on_paused": WaitPolicy(fail_on_paused=True),
    "strict": WaitPolicy(fail_on_partial=True, fail_on_paused=True),
}
# status -> (reason, verdict under lenient, fail_on_partial, fail_on_paused, strict)
TABLE: dict[str, tuple[Reason, Verdict, Verdict, Verdict, Verdict]] = {
    "succeeded": (Reason.SUCCEEDED, S, S, S, S),
    "partial-succeeded": (Reason.PARTIAL_SUCCEEDED, S, F, S, F),
    "failed": (Reason.FAILED, F, F, F, F),
    "stopped": (Reason.STOPPED, F, F, F, F),
    "running": (Reason.RUNNING, W, W, W, W),
    "scheduled": (Reason.RUNNING, W, W, W, W),
    "paused": (Reason.PAUSED, W, W, F, F),
    "suspended": (Reason.UNKNOWN_STATUS, W, W, W, W),
    "": (Reason.UNKNOWN_STATUS, W, W, W, W),
    "SUCCEEDED": (Reason.UNKNOWN_STATUS, W, W, W, W),
}
CASES = [
    pytest.param(status, policy_name, Decision(verdict, reason), id=f"{status or 'empty'}-{policy_name}")
    for status, (reason, *verdicts) in TABLE.items()
    for policy_name, verdict in zip(POLICIES, verdicts, strict=True)
]


def test_table_covers_every_known_status() -> None:
    assert {s.value for s in WorkflowRunStatus} <= set(TABLE)


@pytest.mark.parametrize(("status", "policy_name", "expected"), CASES)
def test_judge(status: str, policy_name: str, expected: Decision) -> None:
    policy = POLICIES[policy_name]
    assert judge(parse_status(status), policy) == expected
    assert judge(status, policy) == expected  # raw strings judged the same as the enum


def test_default_policy_is_lenient() -> None:
    assert judge(WorkflowRunStatus.PARTIAL_SUCCEEDED) == Decision(S, Reason.PARTIAL_SUCCEEDED)
    assert judge(WorkflowRunStatus.PAUSED) == Decision(W, Reason.PAUSED)


@pytest.mark.parametrize("status", list(WorkflowRunStatus))
def test_terminal_statuses_are_difys_end_state(status: WorkflowRunStatus) -> None:
    expected = status.value in {"succeeded", "failed", "stopped", "partial-succeeded"}
    assert (status in TERMINAL_STATUSES) is expected
    assert status.is_terminal is expected
    assert is_terminal(status) is expected
    assert is_terminal(status.value) is expected
    # A terminal status never waits; a waiting verdict is never terminal, under any policy.
    for policy in POLICIES.values():
        assert (judge(status, policy).verdict is W) is (not expected and not (
            status is WorkflowRunStatus.PAUSED and policy.fail_on_paused))


def test_unknown_status_is_kept_and_never_terminal() -> None:
    assert parse_status("suspended") == "suspended"
    assert not isinstance(parse_status("suspended"), WorkflowRunStatus)
    assert not is_terminal("suspended")
    assert parse_status("partial-succeeded") is WorkflowRunStatus.PARTIAL_SUCCEEDED


def test_log_filter_statuses() -> None:
    assert {s.value for s in LOG_FILTER_STATUSES} == {"succeeded", "failed", "stopped"}


def test_reason_values_are_a_wire_format() -> None:
    assert {r.value for r in Reason} >= {
        "succeeded", "partial_succeeded", "failed", "stopped", "paused", "running", "unknown_status", "not_found",
        "auth", "timeout", "execution_timeout", "error"}
