"""The OpenLineage facet classes of :mod:`dify_provider.lineage`.

This module imports OpenLineage's client at import time: only :func:`dify_provider.lineage.operator_lineage`
imports it, when the OpenLineage listener asks a task for its facets, never at DAG parse.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import attr

# The OpenLineage provider 2.x requires a client with the generated facet classes.
from airflow.providers.common.compat.openlineage.facet import ExternalQueryRunFacet
from openlineage.client.generated.base import RunFacet

from dify_provider.client.usage import decimal_text

T = TypeVar("T")


@attr.define
class DifyRunFacet(RunFacet):
    """The Dify run a task drove or waited for (run facet key ``difyRun``). Field names are
    camelCase, as in OpenLineage's own facets; unknown ones are left out of the event."""

    #: ``dify://host[:port]`` of the Dify server.
    namespace: str | None = attr.field(default=None)
    #: The app's name, else its id.
    app: str | None = attr.field(default=None)
    appId: str | None = attr.field(default=None)
    #: ``workflow``, ``advanced-chat``, ``chat``, ``agent-chat``, ``completion``.
    appMode: str | None = attr.field(default=None)
    #: The workflow run id, or the message id of a chat app.
    runId: str | None = attr.field(default=None)
    #: ``workflow_run`` or ``message``.
    kind: str | None = attr.field(default=None)
    #: Dify's status: ``succeeded``, ``failed``, ``stopped``, ``partial-succeeded``, ...
    status: str | None = attr.field(default=None)
    totalTokens: int | None = attr.field(default=None)
    promptTokens: int | None = attr.field(default=None)
    completionTokens: int | None = attr.field(default=None)
    #: A decimal string, as Dify reports it (``"0.0123"``): never a float.
    totalPrice: str | None = attr.field(default=None)
    currency: str | None = attr.field(default=None)
    #: Seconds.
    elapsedTime: float | None = attr.field(default=None)
    traceId: str | None = attr.field(default=None)

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> DifyRunFacet:
        """From a task's ``_lineage_facts`` (see :class:`dify_provider.lineage.DifyLineageMixin`)."""
        return cls(
            namespace=_text(facts.get("namespace")),
            app=_text(facts.get("app")),
            appId=_text(facts.get("app_id")),
            appMode=_text(facts.get("app_mode")),
            runId=_text(facts.get("run_id")),
            kind=_text(facts.get("kind")),
            status=_text(facts.get("status")),
            totalTokens=_int(facts.get("total_tokens")),
            promptTokens=_int(facts.get("prompt_tokens")),
            completionTokens=_int(facts.get("completion_tokens")),
            totalPrice=_price(facts.get("total_price")),
            currency=_text(facts.get("currency")),
            elapsedTime=_float(facts.get("elapsed_time")),
            traceId=_text(facts.get("trace_id")),
        )


def external_query_facet(facts: dict[str, Any]) -> Any:
    """The run id on its Dify server, as the SQL, BigQuery and Databricks providers report a remote
    job; None unless both are known."""
    run_id, namespace = _text(facts.get("run_id")), _text(facts.get("namespace"))
    if run_id is None or namespace is None:
        return None
    return ExternalQueryRunFacet(externalQueryId=run_id, source=namespace)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text or None


def _int(value: Any) -> int | None:
    return _number(int, value)


def _float(value: Any) -> float | None:
    return _number(float, value)


def _number(kind: Callable[[Any], T], value: Any) -> T | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError, ArithmeticError):  # decimal.InvalidOperation is an ArithmeticError
        return None


def _price(value: Any) -> str | None:
    """A decimal string whatever it came as (``1e-05`` would be a float's)."""
    price = _number(lambda v: Decimal(str(v)), value)
    return decimal_text(price) if price is not None and price.is_finite() else None
