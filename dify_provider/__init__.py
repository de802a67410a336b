"""Apache Airflow provider for Dify.

Importing this package must stay cheap: Airflow calls :func:`get_provider_info` in every process
that lists providers, and DAG files import our operators at every parse.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    from dify_provider.provider_info import provider_info

    return provider_info()
