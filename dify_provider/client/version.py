"""Which Dify a client is talking to, how it learned that, and what the version changes.

A real Dify API (1.13.2 measured) sends ``X-Version: <version>`` on every answer, errors and 404s
included, while ``GET /v1/`` (the documented version endpoint) is a 404 page there. So the
version is read off answers the caller gets anyway, ``GET /`` is only a fallback for servers
that still answer it, and a person can state it where a proxy strips the header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

#: The response header Dify's ``ext_app_metrics`` adds to every answer.
VERSION_HEADER = "X-Version"

#: From 1.13 streaming runs execute in Celery workers: a client hanging up no longer stops
#: (older: orphans) the run, so a task may close the stream and wait elsewhere.
DETACH_SAFE = (1, 13)
#: ``GET /workflow/{id}/events`` and the human-input form API (absent from a real 1.13.2).
EVENTS_API = (1, 14)

_NUMBERS = re.compile(r"^\s*[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """``"1.13.2"`` -> ``(1, 13, 2)``; ``"v1.13"``, ``"1.13.0-rc1"`` too; ``None`` if no number leads."""
    match = _NUMBERS.match(text or "")
    if match is None:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


class VersionSource(StrEnum):
    HEADER = "X-Version header"
    ROOT = "GET /"
    STATED = "the connection's server_version extra"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ServerVersion:
    """A server version and where it came from (so log lines can say why a path was taken)."""

    text: str | None
    source: VersionSource

    @classmethod
    def unknown(cls) -> ServerVersion:
        return cls(None, VersionSource.UNKNOWN)

    @property
    def numbers(self) -> tuple[int, ...] | None:
        return parse_version(self.text)

    @property
    def known(self) -> bool:
        return self.numbers is not None

    def at_least(self, *version: int) -> bool | None:
        """``None`` when the version is unknown: the caller decides what to assume, and says so."""
        numbers = self.numbers
        return None if numbers is None else numbers >= version

    def __str__(self) -> str:
        return f"Dify {self.text} ({self.source})" if self.known else "Dify (version unknown)"
