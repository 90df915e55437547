"""A per-workspace run lock: two runs of the pipeline in one project folder would interleave writes.

`dvc repro` has its own repo lock and the Airflow DAG runs one day at a time; this lock covers the
paths that have neither (`sass run`, `sass publish`) and makes the refusal readable: the message
says who holds the lock and since when.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BusyError


class RunLocked(BusyError, RuntimeError):
    """Another process holds the run lock."""


@contextmanager
def run_lock(path: Path, what: str) -> Iterator[None]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown holder"
            raise RunLocked(f"{what}: another run is in progress in this workspace ({holder}; lock {path}). "
                            "Refusing to start a second one; wait for it or stop it first.") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "what": what,
                             "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}))
        fh.flush()
        yield
    finally:
        fh.close()
