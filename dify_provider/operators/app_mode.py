"""Which operator serves which Dify app mode, and the error for a key of the wrong kind of app.

Dify answers a wrong endpoint with ``not_workflow_app`` / ``not_chat_app`` ("Please check if your
app mode matches the right API route."), which names neither the app's mode nor what to do; a
DAG author needs both, so the operators ask ``GET /info`` and say them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.compat.sdk import AirflowFailException

from dify_provider.client import errors as e
from dify_provider.outcome import airflow_error

if TYPE_CHECKING:
    from dify_provider.client.models import AppInfo
    from dify_provider.client.sync import DifyClient

#: Dify's ``GET /info`` modes, as a person would name them.
MODE_NAMES = {
    "workflow": "a workflow app",
    "advanced-chat": "a chatflow app",
    "chat": "a chat app",
    "agent-chat": "an agent app",
    "agent": "an agent app",
    "completion": "a completion (text generator) app",
}
WORKFLOW_MODES = frozenset({"workflow"})
CHAT_MODES = frozenset({"advanced-chat", "chat", "agent-chat", "agent", "completion"})


def operator_for(mode: str) -> str:
    return "DifyRunWorkflowOperator" if mode in WORKFLOW_MODES else "DifyChatOperator"


def wrong_app_error(conn_id: str, mode: str | None, operator: str) -> AirflowFailException:
    """Not retried: the key belongs to another kind of app, and will until the connection changes."""
    if mode is None:
        what = "an app of another mode (GET /info did not say which)"
        instead = "check the connection's API key"
    else:
        what = f"{MODE_NAMES.get(mode, 'an app')} (mode {mode!r})"
        instead = f"use {operator_for(mode)} for it, or give this task a connection with the key of another app"
    return AirflowFailException(f"connection {conn_id!r}: the API key is for {what}, which {operator} cannot run: "
                                f"{instead}")


def read_mode(client: DifyClient, conn_id: str, *, required: bool = True) -> str | None:
    """The app's mode from ``GET /info``. ``required``: an error fails the task as any request
    error would; otherwise (only naming a mode in an error message) it gives ``None``."""
    info = read_info(client, conn_id, required=required)
    return info.mode if info is not None else None


def read_info(client: DifyClient, conn_id: str, *, required: bool = True) -> AppInfo | None:
    """``GET /info`` (name, mode), its errors handled as :func:`read_mode` says."""
    try:
        return client.get_info()
    except e.DifyError as exc:
        if required:
            raise airflow_error(exc) from exc
        return None
