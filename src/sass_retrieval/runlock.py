"""The workspace's two file locks, both ``filelock`` (flock on POSIX): one refuses, one waits.

- :func:`run_lock` refuses a second run at once. ``dvc repro`` has its own repo lock and the Airflow DAG
  runs one day at a time; this covers the paths that have neither (``sass run``, ``sass publish``), and
  the refusal says who holds the lock and since when (the holder writes that into the lock file; filelock
  4 leaves an existing lock file's contents to its holder, where 3 truncated them on every attempt).
- :func:`dvc_lock` waits. The DAG's parallel mapped tasks compute at the same time but enter DVC
  (``dvc commit``, ``dvc push``) one at a time through it, so DVC's repo lock, which fails a second
  ``dvc`` process instead of queueing it, is never contended.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import BusyError

DVC_LOCK_FILE = ".dvc/tmp/sass-orchestration.lock"
log = logging.getLogger("sass.orchestration")


class RunLocked(BusyError, RuntimeError):
    """Another process holds the run lock."""


def _file_lock(path: Path) -> FileLock:
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path)


@contextmanager
def run_lock(path: str | Path, what: str) -> Iterator[None]:
    """Hold the run lock at ``path`` for ``what`` (e.g. "sass run"); raise :class:`RunLocked` if taken."""
    path = Path(path)
    lock = _file_lock(path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        holder = path.read_text().strip() if path.exists() else ""
        raise RunLocked(f"{what}: another run is in progress in this workspace ({holder or 'unknown holder'}; "
                        f"lock {path}). Refusing to start a second one; wait for it or stop it first.") from None
    try:
        path.write_text(json.dumps({"pid": os.getpid(), "what": what,
                                    "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}))
        yield
    finally:
        lock.release()


@contextmanager
def dvc_lock(root: str | Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the workspace's DVC lock, waiting for it (at most ``timeout`` seconds: TimeoutError)."""
    t0 = time.monotonic()
    with _file_lock(Path(root) / DVC_LOCK_FILE).acquire(timeout=-1 if timeout is None else timeout):
        if (waited := time.monotonic() - t0) > 1:
            log.info("waited %.1fs for the DVC lock", waited)
        yield
