"""``[core] hostname_callable`` for the distributed e2e: two workers or triggerers on one host
would share a hostname, so the ``job`` and ``task_instance`` rows could not tell them apart. Each
process the e2e starts names itself in ``DIFY_E2E_PROCESS``; a task process inherits its worker's."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("DIFY_E2E_PROCESS") or socket.getfqdn()
