"""OpenLineage: what a task's COMPLETE or FAIL event says about the Dify run it drove or waited for.

A task mixes in :class:`DifyLineageMixin` and, during a try, keeps what it learnt about the run in
``self._lineage_facts`` (a plain dict: see :class:`DifyLineageMixin`). When the try ends, the
OpenLineage listener calls ``get_openlineage_facets_on_complete`` (or ``..._on_failure``) and the
facts become two run facets of the task's event:

* ``difyRun`` (:class:`dify_provider.lineage_facets.DifyRunFacet`): the app, the run id and kind,
  the final status, tokens, price, elapsed time and trace id;
* ``externalQuery`` (OpenLineage's ``ExternalQueryRunFacet``): the run id on the Dify server, the
  way the SQL, BigQuery and Databricks providers name a remote job.

No datasets: a Dify app is the code a task runs, not data it reads or writes. The OpenLineage job
stays the Airflow task (the listener names it ``dag_id.task_id``); the app it calls is in the facet.

Nothing here imports OpenLineage or its provider when this module is imported (DAG files import the
operators and sensors at every parse, and most deployments have no OpenLineage): the imports happen
when the listener asks, and without the provider the methods return None. The facts never hold the
API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

#: Run facet key of :class:`~dify_provider.lineage_facets.DifyRunFacet`.
DIFY_RUN_FACET = "difyRun"
#: Run facet key of the run id as an ``ExternalQueryRunFacet``.
EXTERNAL_QUERY_FACET = "externalQuery"

_DEFAULT_PORTS = {"http": 80, "https": 443}


def lineage_namespace(base_url: str) -> str:
    """``dify://host[:port]`` of a connection's API base URL: one namespace per Dify server.

    OpenLineage names a service by scheme and authority; the path (``/v1``), user info and query
    are left out, and so is the scheme's default port. Never raises: a URL without a host gives
    ``dify://unknown``.
    """
    raw = base_url.strip()
    parts = urlsplit(raw if "://" in raw else f"https://{raw}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        host, port = parts.hostname, None
    if not host:
        return "dify://unknown"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    keep_port = port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower())
    return f"dify://{host}:{port}" if keep_port else f"dify://{host}"


class DifyLineageMixin:
    """OpenLineage facets from ``self._lineage_facts``, set by the task during its try.

    The facts (every key optional, None meaning unknown):

    * ``namespace``: :func:`lineage_namespace` of the connection's base URL;
    * ``app`` (the app's name, else its id), ``app_id``, ``app_mode`` (``workflow``,
      ``advanced-chat``, ``chat``, ...);
    * ``run_id`` (a workflow run id or a message id) and ``kind`` (``workflow_run``, ``message``);
    * ``status`` (Dify's: ``succeeded``, ``failed``, ``stopped``, ``partial-succeeded``, ...);
    * ``total_tokens``, ``prompt_tokens``, ``completion_tokens`` (int); ``total_price`` (a decimal
      string, ``"0.0123"``) and ``currency``; ``elapsed_time`` (float seconds); ``trace_id``.

    No facts (None or never set): no facets, as without this mixin.
    """

    _lineage_facts: dict[str, Any] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any] | None:
        return operator_lineage(getattr(self, "_lineage_facts", None))

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage[Any, Any] | None:
        # A failed, stopped or over-budget run is what lineage users most want to see.
        return operator_lineage(getattr(self, "_lineage_facts", None))


def operator_lineage(facts: dict[str, Any] | None) -> OperatorLineage[Any, Any] | None:
    """The ``OperatorLineage`` of a task's facts; None without facts or without OpenLineage."""
    if not facts:
        return None
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage

        from dify_provider.lineage_facets import DifyRunFacet, external_query_facet
    except ImportError:  # the OpenLineage provider (or its client) is not installed
        return None
    run_facets: dict[str, Any] = {DIFY_RUN_FACET: DifyRunFacet.from_facts(facts)}
    external = external_query_facet(facts)
    if external is not None:
        run_facets[EXTERNAL_QUERY_FACET] = external
    return OperatorLineage(run_facets=run_facets)
