"""Argument checks that run before any request, and at DAG parse time.

Kept apart from the HTTP machinery, with nothing heavier than the standard library imported, because
operators call them when a DAG file is parsed (see ``bench/``, DAG-parse overhead).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from dify_provider.client import errors as e
from dify_provider.client.status import LOG_FILTER_STATUSES


def check_uuid(name: str, value: Any) -> str:
    text = str(value).strip() if value is not None else ""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise e.DifyConfigError(name, f"{text!r} is not a Dify id (a UUID such as "
                                      "'b8e2c8a0-3c5e-4d6f-9a1b-2c3d4e5f6a7b')") from None


def check_response_mode(response_mode: Any) -> str:
    if response_mode not in ("blocking", "streaming"):
        raise e.DifyConfigError("response_mode", "must be 'blocking' or 'streaming'")
    return str(response_mode)


def check_user(user: str | None, default: str) -> str:
    value = default if user is None else user
    if not isinstance(value, str) or not value.strip():
        raise e.DifyConfigError("user", "must be a non-empty string identifying the end user to Dify")
    return value


def check_inputs(inputs: Any) -> dict[str, Any]:
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise e.DifyConfigError("inputs", f"must be a dict of workflow variables, got {type(inputs).__name__}")
    bad_keys = [k for k in inputs if not isinstance(k, str)]
    if bad_keys:
        raise e.DifyConfigError("inputs", f"variable names must be strings, got {bad_keys[:3]!r}")
    try:
        json.dumps(inputs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise e.DifyConfigError("inputs", f"must be JSON-serialisable ({exc})") from None
    return dict(inputs)


def check_files(files: Any) -> list[dict[str, Any]] | None:
    if files is None:
        return None
    if not isinstance(files, list) or not all(isinstance(f, Mapping) for f in files):
        raise e.DifyConfigError("files", "must be a list of file objects like "
                                         "{'type': 'image', 'transfer_method': 'remote_url', 'url': '...'}")
    for index, item in enumerate(files):
        method = item.get("transfer_method")
        if method not in ("remote_url", "local_file"):
            raise e.DifyConfigError(f"files[{index}].transfer_method", "must be 'remote_url' or 'local_file'")
        needed = "url" if method == "remote_url" else "upload_file_id"
        if not item.get(needed):
            raise e.DifyConfigError(f"files[{index}].{needed}", f"is required when transfer_method={method!r}")
    return [dict(f) for f in files]


def check_log_query(status: str | None, page: int, limit: int) -> None:
    if status is not None and status not in LOG_FILTER_STATUSES:
        allowed = ", ".join(sorted(LOG_FILTER_STATUSES))
        raise e.DifyConfigError("status", f"{status!r} cannot be filtered on; Dify accepts {allowed}")
    if not 1 <= page <= 99999:
        raise e.DifyConfigError("page", "must be between 1 and 99999")
    if not 1 <= limit <= 100:
        raise e.DifyConfigError("limit", "must be between 1 and 100")
