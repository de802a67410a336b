"""Chenyu's errors, placed in the library's one hierarchy by meaning.

Each class also derives from the generic class of the same meaning (``DifyNotFoundError``,
``DifyServerError``, ...), so the shared retry policy and the shared waiting rules treat a
Chenyu 503 or a missing run order exactly as they treat Dify's, with no Chenyu-specific branch.
"""

from __future__ import annotations

from dify_provider.client import errors as e
from dify_provider.client.chenyu.models import ChenyuErrorDetail

#: ``data.error.engine_code`` of an unknown run order.
TASK_NOT_FOUND = "TASK_NOT_FOUND"


class ChenyuAPIError(e.DifyAPIError):
    """Chenyu answered ``code != 0`` (whatever the HTTP status) or an HTTP error.

    ``code`` is the engine code when Chenyu sent one (``TASK_NOT_FOUND``), else ``code <n>``;
    ``envelope_code`` is the envelope's numeric ``code``; ``error`` is ``data.error`` when sent.
    """

    service = "Chenyu"

    def __init__(self, status: int, code: str, message: str, *, path: str = "", hint: str = "",
                 retry_after: float | None = None, envelope_code: int | None = None,
                 error: ChenyuErrorDetail | None = None) -> None:
        self.envelope_code = envelope_code
        self.error = error
        super().__init__(status, code, message, path=path, hint=hint, retry_after=retry_after)


class ChenyuAuthError(ChenyuAPIError, e.DifyAuthError):
    """401/403: the API key is wrong or not allowed."""


class ChenyuNotFoundError(ChenyuAPIError, e.DifyNotFoundError):
    """``TASK_NOT_FOUND`` (or a 404): no such run order for this key."""


class ChenyuInvalidInputError(ChenyuAPIError, e.DifyInvalidInputError):
    """Another 4xx: the request is wrong and retrying it unchanged cannot help."""


class ChenyuRateLimitError(ChenyuAPIError, e.DifyRateLimitError):
    """429: too many requests; retried with backoff, honouring ``Retry-After``."""


class ChenyuServerError(ChenyuAPIError, e.DifyServerError):
    """5xx, or an engine error carrying a 5xx ``status_code``: Chenyu or its engine failed."""
