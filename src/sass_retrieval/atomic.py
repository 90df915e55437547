"""Writing files and folders so a reader never sees half of one: the one implementation of temp + rename.

A file is written under a hidden name beside its destination (``.<name>.<hex>.tmp``) and renamed over
it when complete; a folder is filled beside its destination and swapped in by renames. A rename within
one folder is atomic on POSIX, so a crash at any point leaves either the old content or the new one,
plus at most a hidden temporary that the next write does not read. A SIGKILL skips every cleanup, so those
temporaries stay until :func:`sweep_temps` removes them: each writer sweeps its own folders when it starts.

Kept free of heavy imports (no pandas, no torch) so the orchestration code that runs inside Airflow's
scheduler can use it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"
_HEX = r"[0-9a-f]{32}"    # uuid4().hex, the unique part of every temporary name
log = logging.getLogger(__name__)


def temp_path(dest: Path, suffix: str = TMP_SUFFIX) -> Path:
    """A fresh hidden name beside ``dest``: ``.<name>.<hex><suffix>``. Beside it, so the final rename
    stays within one filesystem; unique, so two writers never share a temporary."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex}{suffix}")


def temp_name_pattern(dest_name: str | None = None, suffix: str = TMP_SUFFIX) -> re.Pattern[str]:
    """The names :func:`temp_path` gives beside a destination called ``dest_name`` (any destination when
    None) with ending ``suffix``; match with ``fullmatch``. Built here, beside temp_path, so a sweep can
    only ever remove what this module names."""
    name = re.escape(dest_name) if dest_name is not None else r"[^/]+"
    return re.compile(rf"\.{name}\.{_HEX}{re.escape(suffix)}")


def sweep_temps(folder: Path, dest_name: str | None = None, suffix: str = TMP_SUFFIX) -> int:
    """Remove the temporaries a killed writer left in ``folder`` (not below it); returns how many.

    Only names of :func:`temp_name_pattern` go: files, symlinks and whole folders (a staged folder). A
    writer calls this on start for the folders it alone writes, or under the lock its writers share: a
    temporary of a writer still running would otherwise be pulled from under it. ``.old`` names are not
    swept by default: after a crash inside :func:`swap_dir` such a folder may be the only copy left."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    pattern = temp_name_pattern(dest_name, suffix)
    removed = 0
    for entry in sorted(folder.iterdir()):
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:   # housekeeping: a temporary that can not go must not stop the writer
            log.warning("could not remove the stale temporary %s: %s", entry, exc)
            continue
        removed += 1
    if removed:
        log.info("removed %d stale temporar%s in %s, left by an interrupted write", removed,
                 "y" if removed == 1 else "ies", folder)
    return removed


def fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder`` (best effort: not every filesystem lets a folder be fsynced)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path, *, durable: bool = False, suffix: str = TMP_SUFFIX) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; when the block ends normally it replaces ``path``.

    If the block raises, the temporary is deleted and ``path`` is untouched. ``durable``: fsync the file
    before the rename and the folder after it, so a power loss does not leave an empty file behind a
    rename that was acknowledged (checkpoints and indexes, which take minutes to recreate). ``suffix``:
    the temporary's ending, for writers that insist on one (numpy adds ``.npz`` unless the name has it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
    if durable:
        fsync_dir(path.parent)


def write_text(path: Path, text: str, *, durable: bool = False) -> None:
    """``path`` holds ``text`` (UTF-8) in full, or keeps what it held."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON with sorted keys (stable diffs for DVC metrics), written atomically;
    values JSON does not know (dates, paths) are written as their ``str``."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def swap_dir(new: Path, dest: Path) -> None:
    """Put ``new`` (a folder or file in ``dest``'s parent) at ``dest`` by renames, then delete what was there.

    The old content is renamed aside before the new one is renamed in, so ``dest`` never holds a mix of both;
    a crash between the two renames leaves the old content beside it under a ``.<name>.<hex>.old`` name."""
    new, dest = Path(new), Path(dest)
    if dest.exists() or dest.is_symlink():
        old = temp_path(dest, ".old")
        dest.rename(old)
        new.rename(dest)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        new.rename(dest)


@contextlib.contextmanager
def staged_dir(dest: Path, suffix: str = TMP_SUFFIX) -> Iterator[Path]:
    """Yield a new, empty folder beside ``dest`` to fill; when the block ends normally it replaces ``dest``
    (:func:`swap_dir`); when it raises, the folder is deleted and ``dest`` is untouched."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    new = temp_path(dest, suffix)
    new.mkdir()
    try:
        yield new
        swap_dir(new, dest)
    finally:
        if new.exists():
            shutil.rmtree(new, ignore_errors=True)
