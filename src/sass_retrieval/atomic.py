"""Replacing a folder by renames: the one implementation shared by ingest (the store) and run restores.

Kept free of heavy imports (no pandas, no torch) so the orchestration code that runs inside Airflow's
scheduler can use it.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path


def swap_dir(new: Path, dest: Path) -> None:
    """Put ``new`` (a folder or file in ``dest``'s parent) at ``dest`` by renames, then delete what was there.

    The old content is renamed aside before the new one is renamed in, so ``dest`` never holds a mix of both;
    a crash between the two renames leaves the old content beside it under a ``.<name>.<hex>.old`` name."""
    new, dest = Path(new), Path(dest)
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.old")
        dest.rename(old)
        new.rename(dest)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        new.rename(dest)
