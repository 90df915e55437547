"""The version in service, and its atomic replacement when ``publish`` moves ``current``.

One reference (``Service.current``) points at a complete, frozen :class:`LoadedVersion`. A request reads
that reference once, at its start, and uses that object to the end, so it never sees half of a version.
A reload loads the new version completely aside (seconds: torch, bank, indexes) while requests keep
reading the old one, then rebinds the reference: a single assignment, atomic under the GIL. The old
version is freed when its last request finishes.

A background thread polls the resolved target of ``current`` every ``interval`` seconds: the publish
stage replaces the link with one ``os.replace``, so a changed target is a complete new version. A load
that fails keeps the old version in service and logs one line; the same broken target is not retried
until ``current`` moves again (or ``reload(force=True)``), so a bad version does not flood the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from .loader import LoadedVersion, resolve_source

log = logging.getLogger(__name__)

Loader = Callable[[Path], LoadedVersion]


class Service:
    """Holds the version in service for one process (each uvicorn worker has its own)."""

    def __init__(self, published: Path, load: Loader, interval: float = 5.0) -> None:
        self.published = Path(published)
        self._load = load
        self.interval = float(interval)
        self.current: LoadedVersion | None = None   # the one reference requests read
        self.error: str | None = None               # why the last load failed (None: it did not)
        self._failed: Path | None = None            # a target that failed to load, not retried
        self._lock = threading.Lock()               # one reload at a time (poller and manual calls)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reload(self, force: bool = False) -> bool:
        """Load the target of ``current`` if it is not the version in service; True when it was swapped in."""
        with self._lock:
            target = resolve_source(self.published)
            if target is None:
                if self.current is None:
                    self.error = f"nothing published under {self.published} (no 'current' link)"
                return False
            if self.current is not None and target == self.current.path:
                return False
            if target == self._failed and not force:
                return False
            try:
                loaded = self._load(target)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old version; the reason is logged
                self._failed = target
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                self.error = f"could not load {target}: {type(exc).__name__}: {first}"
                old = self.current.run_id if self.current is not None else "nothing"
                log.error("reload failed, still serving %s: %s", old, self.error)
                return False
            self.current = loaded                   # the swap: one reference rebinding
            self._failed, self.error = None, None
            log.info("now serving %s (row %s)", loaded.run_id, loaded.row)
            return True

    def start(self) -> None:
        """Load what is published now, then poll for new versions (``interval`` <= 0: never poll)."""
        self.reload()
        if self.interval > 0 and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, name="sass-serve-reload", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.interval, 1.0) + 5.0)
            self._thread = None

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reload()
            except Exception:  # noqa: BLE001 - the poller must outlive any surprise; reload logs its own
                log.exception("reload poll failed")
