"""What both Airflow drivers of the test harness (``harness_af2``, ``harness_af3``) share."""

from __future__ import annotations

import dataclasses
from typing import Any


def keys_where(model: Any, where: list[Any]) -> list[str]:
    """The XCom keys of the rows ``where`` selects (each driver knows its XCom table)."""
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return sorted(session.scalars(select(model.key).where(*where)))


# What the inline trigger runner hands back instead of an event.
@dataclasses.dataclass(frozen=True)
class TriggerFailed:
    error: BaseException | None  # None: run() ended without yielding an event


class TriggerTimedOut:
    pass
