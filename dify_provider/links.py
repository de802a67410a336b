"""The "Dify run" button on a task instance, pointing at the app's logs in the Dify console.

Dify has no stable per-run page; its logs page accepts ``?workflow_run_id=`` in newer consoles
and ignores it in older ones, so the link is useful on every version (dify-api.md section 7).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, TaskInstanceKey

#: XCom key under which operators store the ready-made console URL while the run is going.
LINK_XCOM_KEY = "dify_run_url"


def console_logs_url(console_url: str | None, app_id: str | None, run_id: str | None) -> str | None:
    if not console_url or not app_id:
        return None
    url = f"{console_url.rstrip('/')}/app/{quote(app_id, safe='')}/logs"
    return f"{url}?workflow_run_id={quote(run_id, safe='')}" if run_id else url


class DifyRunLink(BaseOperatorLink):
    """Points at the URL the operator pushed as soon as the run started.

    Airflow 3's API server does not call ``get_link``: it reads the XCom named by ``xcom_key``,
    which by default is only written when the task ends. Naming the operator's own key makes
    the button work while the task is still running or deferred.
    """

    name = "Dify run"

    @property
    def xcom_key(self) -> str:
        return LINK_XCOM_KEY

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        if getattr(operator, "_dify_run_id", True) is None:
            return ""  # no run was started (bad input, for example): nothing to link to
        url = XCom.get_value(key=LINK_XCOM_KEY, ti_key=ti_key)
        return url if isinstance(url, str) else ""
