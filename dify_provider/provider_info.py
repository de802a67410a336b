"""What Airflow learns about this provider (entry point ``apache_airflow_provider``).

Airflow 3.2+ builds the connection form from ``conn-fields`` and ``ui-field-behaviour`` here;
older Airflows ask the hook (``get_connection_form_widgets``, ``get_ui_field_behaviour``), which
builds its answer from the same declarations (``hooks/base.py``), so there is one of each. Every
extra field has a default, because the UI's edit mode does not render a field whose key is
missing from the stored extra.
"""

from __future__ import annotations

from typing import Any

from dify_provider import __version__

#: Connection ids the hooks, operators and sensors use when none is given.
DIFY_DEFAULT_CONN_ID = "dify_default"
CHENYU_DEFAULT_CONN_ID = "chenyu_default"

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
        "description": "Dify console address for the 'Dify run' link. Empty: https://cloud.dify.ai for "
        "api.dify.ai, else the API base URL without /v1 (a self-hosted Dify serves both on one address).",
        "schema": {"type": ["string", "null"], "default": ""},
    },
    "app_id": {
        "label": "App id",
        "description": "The app's id from its console URL; optional, learned from runs when empty.",
        "schema": {"type": ["string", "null"], "default": ""},
    },
    "server_version": {
        "label": "Dify server version",
        "description": "Leave empty: Dify names its version on every answer (X-Version header). Set it, e.g. "
        "1.13.2, only if a proxy strips that header; 1.13+ lets deferrable tasks hang up and wait in the triggerer.",
        "schema": {"type": ["string", "null"], "default": ""},
    },
}

#: The ``chenyu`` connection's extras: the transport settings of the ``dify`` form (same labels,
#: schemas and defaults, read by the same hook code), described for Chenyu.
CHENYU_CONNECTION_EXTRAS: dict[str, dict[str, Any]] = {
    "timeout": {**CONNECTION_EXTRAS["timeout"],
                "description": "Per-request timeout for progress reads; runs are polled, never held open."},
    "verify_ssl": {**CONNECTION_EXTRAS["verify_ssl"],
                   "description": "Leave on for chenyu.cn; turn off only for a test endpoint with a self-signed "
                                  "certificate."},
    "ca_bundle": CONNECTION_EXTRAS["ca_bundle"],
    "proxy": {**CONNECTION_EXTRAS["proxy"], "description": "HTTP(S) proxy for reaching Chenyu."},
}


#: How the standard fields look in each connection type's form.
FIELD_BEHAVIOUR: dict[str, dict[str, Any]] = {
    "dify": {
        "hidden-fields": ["schema", "port", "login"],
        "relabeling": {"host": "API base URL", "password": "App API key"},
        "placeholders": {"host": "https://api.dify.ai/v1", "password": "app-..."},
    },
    "chenyu": {
        "hidden-fields": ["schema", "port", "login"],
        "relabeling": {"host": "API base URL", "password": "API key"},
        "placeholders": {"host": "https://www.chenyu.cn", "password": "Chenyu open-API key"},
    },
}


def provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-dify",
        "name": "Dify",
        "description": "Run Dify workflows from Airflow: hook, operator, sensor, deferrable trigger, emulator; "
        "wait for Chenyu workflow runs.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Dify",
                "external-doc-url": "https://docs.dify.ai/",
                "tags": ["ai", "service"],
            },
            {
                "integration-name": "Chenyu",
                "external-doc-url": "https://www.chenyu.cn/",
                "tags": ["ai", "service"],
            },
        ],
        "connection-types": [
            {
                "hook-class-name": "dify_provider.hooks.dify.DifyHook",
                "hook-name": "Dify",
                "connection-type": "dify",
                "ui-field-behaviour": FIELD_BEHAVIOUR["dify"],
                "conn-fields": CONNECTION_EXTRAS,
            },
            {
                "hook-class-name": "dify_provider.hooks.chenyu.ChenyuHook",
                "hook-name": "Chenyu",
                "connection-type": "chenyu",
                "ui-field-behaviour": FIELD_BEHAVIOUR["chenyu"],
                "conn-fields": CHENYU_CONNECTION_EXTRAS,
            },
        ],
        "hooks": [
            {"integration-name": "Dify", "python-modules": ["dify_provider.hooks.dify"]},
            {"integration-name": "Chenyu", "python-modules": ["dify_provider.hooks.chenyu"]},
        ],
        "operators": [{"integration-name": "Dify", "python-modules": ["dify_provider.operators.workflow"]}],
        "sensors": [
            {"integration-name": "Dify", "python-modules": ["dify_provider.sensors.workflow_run"]},
            {"integration-name": "Chenyu", "python-modules": ["dify_provider.sensors.chenyu"]},
        ],
        "triggers": [
            {"integration-name": "Dify", "python-modules": ["dify_provider.triggers.workflow_run"]},
            {"integration-name": "Chenyu", "python-modules": ["dify_provider.triggers.chenyu"]},
        ],
        "extra-links": ["dify_provider.links.DifyRunLink"],
    }
