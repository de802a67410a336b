"""What the running Airflow can do, by feature, for the few places where that changes behaviour.

Version numbers come from ``apache-airflow-providers-common-compat`` (as in the official
providers); names of Airflow classes are imported through its lazy ``sdk`` module everywhere
else. Here each flag is named after what it enables, so a reader of ``if TRIGGER_ON_KILL:``
knows why the branch exists.
"""

from __future__ import annotations

import warnings

from airflow.providers.common.compat.version_compat import (
    AIRFLOW_V_3_0_PLUS,
    AIRFLOW_V_3_1_PLUS,
    AIRFLOW_V_3_2_PLUS,
    AIRFLOW_V_3_3_PLUS,
)

__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "CONN_FIELDS_IN_PROVIDER_INFO",
    "REQUIRED_ACTIONS",
    "TASK_STATE_STORE",
    "TRIGGER_ON_KILL",
    "DifyFeatureUnavailableWarning",
    "warn_unavailable",
]

#: The triggerer calls ``BaseTrigger.on_kill`` when a user kills a deferred task (3.3, #65590).
TRIGGER_ON_KILL = AIRFLOW_V_3_3_PLUS
#: ``context["task_state_store"]``: key/value state shared by every try of a task instance (3.3).
TASK_STATE_STORE = AIRFLOW_V_3_3_PLUS
#: Human-in-the-loop: a task's required action, answered in the UI or the REST API (3.1); from
#: 3.3 the task waits for it in ``awaiting_input``, without a worker or the triggerer.
REQUIRED_ACTIONS = AIRFLOW_V_3_1_PLUS
#: The connection form is built from provider info ``conn-fields`` (3.2); before, from the
#: hook's ``get_connection_form_widgets`` / ``get_ui_field_behaviour``.
CONN_FIELDS_IN_PROVIDER_INFO = AIRFLOW_V_3_2_PLUS


class DifyFeatureUnavailableWarning(UserWarning):
    """An option a task was given cannot be honoured on this Airflow; the task still runs."""


def warn_unavailable(task_id: str, what: str, needs: str, instead: str) -> None:
    """Say at DAG parse, once per place in the DAG file, what this Airflow cannot do.

    The warning points at the first frame outside this package (the DAG file's line), however
    deep the operator's constructors call this (Airflow's metaclass wraps each ``__init__`` too).
    """
    import sys

    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and (frame.f_globals.get("__name__", "").startswith("dify_provider")
                                        or frame.f_globals.get("__name__", "").startswith("airflow")):
        frame, level = frame.f_back, level + 1
    warnings.warn(DifyFeatureUnavailableWarning(f"{task_id}: {what} needs {needs}; on this Airflow {instead}"),
                  stacklevel=level)
