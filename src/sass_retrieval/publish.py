"""Publishing: the gate that decides, and the atomic swap that makes a run "current".

Layout under the publish folder:

    versions/<run_id>/   models, indexes, metrics and validation summary of one run (never modified)
    current              symlink to the version in service
    decisions.jsonl      one line per publish attempt: what was decided and why

A version is copied aside under a temporary name and renamed into ``versions/`` when complete; then
a new symlink is created aside and renamed over ``current``. Both renames are atomic on POSIX, so a
crash at any point leaves ``current`` pointing at a complete version, old or new.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Decision:
    publish: bool
    reason: str
    candidate: float | None
    published: float | None


def gate(validation_ok: bool, candidate: float | None, published: float | None, tolerance: float) -> Decision:
    """Publish only a validated run whose macro NDCG@50 is not worse than the current one by > tolerance."""
    if not validation_ok:
        return Decision(False, "data validation did not pass", candidate, published)
    if candidate is None or candidate != candidate:
        return Decision(False, "the candidate has no macro NDCG@50", candidate, published)
    if published is None:
        return Decision(True, "nothing published yet", candidate, published)
    if candidate < published - tolerance:
        return Decision(False, f"macro NDCG@50 {candidate:.4f} is more than {tolerance} below the published "
                               f"{published:.4f}", candidate, published)
    return Decision(True, f"macro NDCG@50 {candidate:.4f} vs published {published:.4f} (tolerance {tolerance})",
                    candidate, published)


def current_version(root: Path) -> Path | None:
    link = Path(root) / "current"
    return link.resolve() if link.is_symlink() and link.resolve().exists() else None


def published_metric(root: Path, metrics: dict | None = None) -> float | None:
    """Macro NDCG@50 of the model in service: re-scored on this run's window when the evaluate stage
    did so (row "published"), else the number recorded when it was published."""
    if metrics and "published" in metrics.get("rows", {}):
        return float(metrics["rows"]["published"]["macro"]["ndcg@50"])
    cur = current_version(root)
    if cur is None or not (cur / "metrics.json").exists():
        return None
    return float(json.loads((cur / "metrics.json").read_text())["sass"]["macro"]["ndcg@50"])


def run_id(window_end: int, files: list[Path]) -> str:
    """Same day and same artefacts -> same id, so re-publishing a rerun is a no-op."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return f"{window_end}-{h.hexdigest()[:10]}"


def install_version(root: Path, vid: str, sources: dict[str, Path]) -> Path:
    """Copy ``sources`` (name -> file or folder) into versions/<vid>, atomically; reuse it if present."""
    versions = Path(root) / "versions"
    target = versions / vid
    if target.exists():
        return target
    tmp = versions / f".{vid}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir(parents=True)
    try:
        for name, src in sources.items():
            dst = tmp / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if Path(src).is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def point_current(root: Path, target: Path) -> None:
    root = Path(root)
    tmp_link = root / f".current.{uuid.uuid4().hex}"
    os.symlink(os.path.relpath(target, root), tmp_link)
    os.replace(tmp_link, root / "current")


def record(root: Path, entry: dict[str, Any]) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entry = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **entry}
    with open(root / "decisions.jsonl", "a") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
