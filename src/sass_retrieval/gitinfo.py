"""Every git call in the project: the commit a result names, and the runner the run records use.

Reports, benchmarks and asset events name the code they came from (:func:`head_commit`); the daily run
records (orchestration.runs) commit and tag through :func:`git`. One module, so a lookup is written once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

FALLBACK_NAME, FALLBACK_EMAIL = "sass-daily", "sass-daily@localhost"


class GitError(RuntimeError):
    """A git command failed; the message ends with git's own error."""


def _run(cwd: str | Path | None, *args: str, identity: bool = False,
         timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["git"]
    # A fresh CI box or an Airflow worker often has no git identity, and a commit or annotated tag needs one.
    if identity and not _run(cwd, "config", "user.email").stdout.strip():
        cmd += ["-c", f"user.name={FALLBACK_NAME}", "-c", f"user.email={FALLBACK_EMAIL}"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def git(cwd: str | Path | None, *args: str, identity: bool = False) -> str:
    """stdout of ``git <args>`` in ``cwd``; raises :class:`GitError`. ``identity``: commit or tag as
    ``sass-daily`` when git has no user configured."""
    out = _run(cwd, *args, identity=identity)
    if out.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return out.stdout


def git_ok(cwd: str | Path | None, *args: str) -> bool:
    """Whether ``git <args>`` exits 0 (``diff --quiet``, ``rev-parse --verify``)."""
    return _run(cwd, *args).returncode == 0


def is_repo_root(path: str | Path) -> bool:
    """Whether ``path`` is the top of a git work tree, not a folder inside someone else's repository."""
    try:
        out = _run(path, "rev-parse", "--show-toplevel", timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and Path(out.stdout.strip()).resolve() == Path(path).resolve()


def head_commit(cwd: str | Path | None = None, *, short: bool | int = False, mark_dirty: bool = False,
                paths: Sequence[str] = ()) -> str | None:
    """HEAD's hash, or None (not a repository, no commit yet, no git).

    ``short``: True for git's abbreviation, a number for that many characters. ``mark_dirty``: append
    ``+dirty`` when tracked files (under ``paths``, or anywhere) differ from HEAD, so a result made from
    uncommitted code does not claim a commit it was not made from.
    """
    abbrev = ["--short"] if short is True else [f"--short={short}"] if short else []
    try:
        out = _run(cwd, "rev-parse", "-q", "--verify", *abbrev, "HEAD", timeout=10)
        sha = out.stdout.strip() if out.returncode == 0 else ""
        if sha and mark_dirty and _run(cwd, "status", "--porcelain", "--untracked-files=no", "--", *paths,
                                       timeout=10).stdout.strip():
            sha += "+dirty"
    except (OSError, subprocess.SubprocessError):
        return None
    return sha or None
