"""Where the servers' programs are: on PATH, or in Debian's versioned PostgreSQL folder.

Debian's ``postgresql`` package puts ``initdb`` and ``postgres`` in ``/usr/lib/postgresql/<version>/bin``,
not on PATH (only the client wrappers are); ``redis-server`` is on PATH. :func:`missing` lists what is not
installed, so a caller (a test) can say so before starting anything.
"""

from __future__ import annotations

import glob
import re
import shutil
from pathlib import Path

POSTGRES_GLOB = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = "apt-get install -y redis-server postgresql"


def _version(folder: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", Path(folder).parent.name)) or (0,)


def postgres_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres`` (the same installation for both): the one ``initdb`` on
    PATH resolves to, else the newest ``/usr/lib/postgresql/<version>/bin``."""
    on_path = shutil.which("initdb")
    if on_path:
        folder = Path(on_path).resolve().parent
        if (folder / "postgres").is_file():
            return folder
    for folder in sorted(glob.glob(POSTGRES_GLOB), key=_version, reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "postgres").is_file():
            return Path(folder)
    return None


def redis_server() -> Path | None:
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).is_file()), None)
    return Path(found) if found else None


def missing() -> list[str]:
    """What the local cluster needs and this machine lacks, one phrase each (empty: all there)."""
    out = []
    if postgres_bin_dir() is None:
        out.append(f"PostgreSQL server (initdb, postgres) not on PATH nor in {POSTGRES_GLOB}")
    if redis_server() is None:
        out.append("redis-server not on PATH")
    return out
