"""What Airflow learns about this provider (entry point ``apache_airflow_provider``).

Airflow 3.2+ builds the connection form only from ``conn-fields`` and ``ui-field-behaviour``
here; the hook methods older providers used are ignored. Every extra field has a default,
because the UI's edit mode does not render a field whose key is missing from the stored extra.
"""

from __future__ import annotations

from typing import Any

from dify_provider import __version__

CONNECTION_EXTRAS: dict[str, dict[str, Any]] = {
    "timeout": {
        "label": "Request timeout (seconds)",
        "description": "Per-request timeout for API calls; long runs are streamed or polled, never held open.",
        "schema": {"type": ["number", "null"], "default": 30},
    },
    "verify_ssl": {
        "label": "Verify TLS certificates",
        "description": "Turn off only for a self-hosted Dify with a self-signed certificate; prefer a CA bundle.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "description": "Path to a PEM bundle on the workers and triggerer, for a private certificate authority.",
        "schema": {"type": ["string", "null"], "default": ""},
    },
    "proxy": {
        "label": "Proxy URL",
        "description": "HTTP(S) proxy for reaching Dify, e.g. http://proxy.internal:3128.",
        "schema": {"type": ["string", "null"], "default": ""},
    },
    "default_user": {
        "label": "Default end-user id",
        "description": "The 'user' Dify records for runs when a task does not set one.",
        "schema": {"type": ["string", "null"], "default": "airflow"},
    },
    "console_url": {
        "label": "Console URL",
        "description": "Dify console address for the 'Dify run' link (Cloud: https://cloud.dify.ai).",
        "schema": {"type": ["string", "null"], "default": "https://cloud.dify.ai"},
    },
    "app_id": {
        "label": "App id",
        "description": "The app's id from its console URL; optional, learned from runs when empty.",
        "schema": {"type": ["string", "null"], "default": ""},
    },
}


def provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-dify",
        "name": "Dify",
        "description": "Run Dify workflows from Airflow: hook, operator, sensor, deferrable trigger, emulator.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Dify",
                "external-doc-url": "https://docs.dify.ai/",
                "tags": ["ai", "service"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "dify_provider.hooks.dify.DifyHook",
                "hook-name": "Dify",
                "connection-type": "dify",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "API base URL", "password": "App API key"},
                    "placeholders": {"host": "https://api.dify.ai/v1", "password": "app-..."},
                },
                "conn-fields": CONNECTION_EXTRAS,
            }
        ],
        "hooks": [{"integration-name": "Dify", "python-modules": ["dify_provider.hooks.dify"]}],
        "operators": [{"integration-name": "Dify", "python-modules": ["dify_provider.operators.workflow"]}],
        "sensors": [{"integration-name": "Dify", "python-modules": ["dify_provider.sensors.workflow_run"]}],
        "triggers": [{"integration-name": "Dify", "python-modules": ["dify_provider.triggers.workflow_run"]}],
        "extra-links": ["dify_provider.links.DifyRunLink"],
    }
