"""human_input= is checked when the DAG is parsed, on every Airflow version."""

from __future__ import annotations

import pytest

from dify_provider.operators.chat import DifyChatOperator
from dify_provider.operators.workflow import DifyRunWorkflowOperator
from dify_provider.version_compat import REQUIRED_ACTIONS


@pytest.mark.parametrize("cls", [DifyRunWorkflowOperator, DifyChatOperator])
def test_an_unknown_mode_names_the_choices(cls: type) -> None:
    with pytest.raises(ValueError, match=r"t: human_input='maybe': use 'wait' .* 'fail' .* 'airflow'"):
        cls(task_id="t", human_input="maybe")


def test_fail_is_fail_on_paused() -> None:
    assert DifyRunWorkflowOperator(task_id="t", human_input="fail").policy.fail_on_paused


@pytest.mark.skipif(REQUIRED_ACTIONS, reason="Airflow 3.1+ has required actions")
def test_airflow_mode_needs_airflow_31() -> None:
    with pytest.raises(ValueError, match=r"needs Airflow 3\.1\+ .* this is Airflow \d"):
        DifyRunWorkflowOperator(task_id="t", human_input="airflow")


@pytest.mark.skipif(not REQUIRED_ACTIONS, reason="needs Airflow 3.1+")
def test_airflow_mode_is_accepted_on_31_and_later() -> None:
    assert DifyRunWorkflowOperator(task_id="t", human_input="airflow").human_input == "airflow"
