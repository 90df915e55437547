"""The host name Airflow records for a task instance (``[core] hostname_callable``).

Every worker of the local cluster runs on the same machine, so the real host name would not tell which
worker ran a task. Each worker process is started with ``SASS_WORKER_NAME`` (``w0``, ``w1``...), and this is
what its task runners report; every other component reports the machine's name. The module imports nothing
but the standard library: every Airflow process imports it to name itself.
"""

from __future__ import annotations

import os
import socket

WORKER_NAME_VARIABLE = "SASS_WORKER_NAME"
CALLABLE_PATH = f"{__name__}.worker_hostname"


def worker_hostname() -> str:
    """``$SASS_WORKER_NAME`` when set (a worker of the local cluster), else the machine's FQDN."""
    return os.environ.get(WORKER_NAME_VARIABLE) or socket.getfqdn()
