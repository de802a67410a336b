"""The trace id a task's Dify requests carry, so Dify's tracing shows which Airflow task ran what.

Dify (1.7+) reads ``X-Trace-Id`` (1.8+ also W3C ``traceparent``, and the current OpenTelemetry
span) and hands it to the app's tracing integration (Langfuse, LangSmith, Opik, ...) as the
run's external trace id; ``X-Trace-Id`` wins when both are sent. Older servers ignore both.

Inside an OpenTelemetry span (Airflow's task spans, or a DAG author's own), the span's trace id
is used, so Dify's trace and Airflow's share one id; otherwise 32 hex digits derived from the
task instance and try, stable and valid for every backend (W3C trace-id form).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: XCom key of the trace id the try sent.
TRACE_XCOM_KEY = "trace_id"


def trace_headers(context: Context) -> dict[str, str]:
    """``X-Trace-Id`` (always) and ``traceparent`` (inside a recording OpenTelemetry span)."""
    span = _current_span()
    if span is not None:
        trace_id, span_id, flags = span
        return {"X-Trace-Id": trace_id, "traceparent": f"00-{trace_id}-{span_id}-{flags}"}
    return {"X-Trace-Id": task_trace_id(context)}


def task_trace_id(context: Context) -> str:
    ti = context["ti"]
    key = "|".join(str(getattr(ti, name, "")) for name in ("dag_id", "task_id", "run_id", "map_index", "try_number"))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _current_span() -> tuple[str, str, str] | None:
    try:
        from opentelemetry import trace
    except ImportError:  # opentelemetry-api comes with Airflow; a trimmed install may lack it
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}", f"{int(context.trace_flags):02x}"
