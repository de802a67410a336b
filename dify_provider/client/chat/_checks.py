"""Argument checks of the chat endpoints, run before any request (and by operators at DAG parse
time: standard library only, like :mod:`dify_provider.client._checks`, which they build on)."""

from __future__ import annotations

from typing import Any

from dify_provider.client import errors as e
from dify_provider.client._checks import check_uuid

#: ``GET /conversations``'s ``sort_by`` values (Dify 1.13 ``ConversationListQuery``).
CONVERSATION_SORTS = frozenset({"created_at", "-created_at", "updated_at", "-updated_at"})


def check_query(query: Any, name: str = "query") -> str:
    # Dify answers an empty query with 400 "query is required" only for chat apps; a blank one
    # it accepts, and the model then answers nothing in particular: refuse both here.
    if not isinstance(query, str):
        raise e.DifyConfigError(name, f"must be a string, got {type(query).__name__}")
    if not query.strip():
        raise e.DifyConfigError(name, "is empty: a chat message needs the user's text")
    return query


def check_optional_uuid(name: str, value: Any) -> str | None:
    """``None``, ``""`` and blanks mean "none" (a new conversation, the first page), as they do
    to Dify (its ``UUIDStrOrEmpty`` fields); anything else must be a UUID."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return check_uuid(name, value)


def check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise e.DifyConfigError("limit", f"must be an integer between 1 and 100, got {limit!r}")
    return limit


def check_sort_by(sort_by: Any) -> str:
    if sort_by not in CONVERSATION_SORTS:
        raise e.DifyConfigError("sort_by", f"{sort_by!r} is not one of {', '.join(sorted(CONVERSATION_SORTS))}")
    return str(sort_by)


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise e.DifyConfigError(name, f"must be True or False, got {value!r}")
    return value
