"""What a run's stream lets a task do, and what a stream that names no run means.

Kept apart from the operator because every operator that starts a run by streaming (workflow
today, chat apps next) faces the same two questions, and their answers are long to say well.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from dify_provider.client import errors as e
from dify_provider.client.version import DETACH_SAFE, ServerVersion


def may_hang_up(log: Any, server: ServerVersion, run_id: str, conn_id: str, *, waiting: bool) -> bool:
    """Whether closing the run's stream leaves the run going (Dify >= 1.13), logging the version
    this relies on, or why the task stays on the stream instead.

    ``waiting``: the task would defer (True) or return without waiting (False).
    """
    safe = server.at_least(*DETACH_SAFE)
    if safe:
        log.info("%s keeps a run going when its stream is closed: %s", server,
                 "deferring" if waiting else "returning without waiting")
        return True
    instead = (f"Not deferring; the worker stays on the stream until run {run_id} ends" if waiting else
               f"wait_for_termination=False, but this task follows run {run_id} to its end instead")
    if safe is None:
        log.warning(
            "%s: the Dify server's version is unknown (its answers carry no X-Version header and GET / did not "
            "say), so this task assumes Dify older than 1.13, where closing a run's stream stops the run. If the "
            "server is 1.13 or newer, set the extra server_version (e.g. \"1.13.2\") on connection %r.",
            instead, conn_id)
    else:
        log.warning("%s: %s is older than 1.13 and stops a streaming run when its stream is closed.",
                    instead, server)
    return False


def silent_start_error(server: ServerVersion, problems: list[str], exc: e.DifyError, user: str) -> AirflowException:
    """HTTP 200 and then no run (silence, or the stream ended): say why, and whether a retry helps.

    ``problems``: what the app's input form says about the inputs sent (re-read to tell why).
    """
    if problems:
        return AirflowFailException(
            f"inputs: {'; '.join(problems)}. {server} accepted the start request (HTTP 200) but announced no "
            "run: in streaming mode Dify 1.13 answers refused inputs with silence (one ping, then nothing) "
            "instead of an error. Not retried: Dify would refuse the same inputs again."
        )
    return AirflowException(
        f"{server} accepted the start request (HTTP 200) but announced no run ({exc}). The inputs match the "
        "app's input form, so the likely cause is the server: no worker consuming Dify's "
        "'workflow_based_app_execution' Celery queue, or one too busy to start the run in time; a retry can "
        f"help then (it first looks for the run in Dify's logs, end user {user!r}). Less likely: an input Dify "
        "refuses for a reason the input form does not show (a file it cannot fetch, say)."
    )
