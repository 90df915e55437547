"""The published model as an Airflow Asset: what ``publish`` announces, and what a consumer checks.

A logical URI (``sass://published-model``), so the model in service keeps its identity when the workspace
moves; where the version lies is event metadata (:data:`EXTRA_KEYS`). Only a real publish is an event, or
every consumer would reload for nothing; Airflow 3 emits one for every declared Asset outlet of a successful
task (apache/airflow#58474), so ``publish``'s outlet is an AssetAlias it adds an event to only when it
published. Airflow is imported only inside the two Asset functions.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import read_params_file
from ..gitinfo import head_commit, is_repo_root
from ..publish import current_version, macro, served_row

if TYPE_CHECKING:
    from airflow.sdk import Asset, AssetAlias

ASSET_NAME = "sass_published_model"
ASSET_URI = "sass://published-model"
ALIAS_NAME = "sass_published_model_events"
PUBLISH_STAGE = "publish"                  # the dvc.yaml stage whose task carries the outlet
PUBLISH_REPORT = "reports/publish.json"
EXTRA_KEYS = ("version", "path", "row", "ndcg@50", "window_end", "reason", "dvc_lock_sha256", "git_commit",
              "dvc_rev")
NDCG_TOLERANCE = 1e-9


def published_model_asset() -> Asset:
    """The Asset both DAGs name: the producer's alias events target it, consumers schedule on it."""
    from airflow.sdk import Asset

    return Asset(name=ASSET_NAME, uri=ASSET_URI, group="model")


def published_model_alias() -> AssetAlias:
    """The publish task's outlet: an alias emits nothing unless the task adds an event through it."""
    from airflow.sdk import AssetAlias

    return AssetAlias(name=ALIAS_NAME, group="model")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def param_path(project_dir: str | Path, dotted: str, default: str) -> Path:
    """A path-valued key of the project's params.yaml (``publish.dir``, ``data.store_dir``), absolute.

    Read without the schema: the ``params`` stage validated the file, and a consumer must be able to look at
    a workspace whose params.yaml predates a schema change."""
    root = Path(project_dir).resolve()
    node: Any = read_params_file(root / "params.yaml") if (root / "params.yaml").is_file() else {}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return root / str(node or default)   # an absolute value stays itself


def published_asset_extra(project_dir: str | Path) -> dict[str, Any] | None:
    """The metadata of the asset event for this run's publish decision; None when nothing was published.

    Read from what ``publish`` left: its report, the version folder's served.json / metrics.json (the numbers
    of what is served), dvc.lock and git HEAD. A missing version folder gives ``path`` null rather than an
    error: :func:`check_published_version` refuses the event, so the consumer shows the problem and the daily
    run still records its day.
    """
    root = Path(project_dir).resolve()
    entry = _read_json(root / PUBLISH_REPORT)
    if not entry.get("publish") or not entry.get("version"):
        return None
    version, window_end = str(entry["version"]), entry.get("window_end")
    folder = param_path(root, "publish.dir", "published") / "versions" / version
    row = served_row(folder) if folder.is_dir() else entry.get("winner")
    ndcg = macro(_read_json(folder / "metrics.json"), row)
    lock = root / "dvc.lock"
    return {"version": version, "path": str(folder) if folder.is_dir() else None, "row": row,
            "ndcg@50": (entry.get("scores") or {}).get(row) if ndcg is None else ndcg,
            "window_end": None if window_end is None else str(window_end), "reason": entry.get("reason"),
            "dvc_lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None,
            # only the workspace's own repository: not one it merely sits in (record_run git-inits it)
            "git_commit": head_commit(root) if is_repo_root(root) else None,
            "dvc_rev": None if window_end is None else f"day-{window_end}"}


def check_published_version(extra: Mapping[str, Any], project_dir: str | Path, *, load: bool = True,
                            features: str | Path | None = None, store: str | Path | None = None) -> dict[str, Any]:
    """What a consumer does with an event: make sure the announced version can be served.

    The version folder must exist, serve the announced row and carry the announced macro NDCG@50; with
    ``load`` the version is loaded exactly as ``sass serve`` loads it (the workspace's ``data/features`` and
    ``data.store_dir`` unless given), so a version the service would refuse fails here, loudly, instead of the
    fleet quietly staying on the old one. Returns a summary to log (``in_service``: ``current`` still points
    at it; a later publish may have moved on, which is fine). Raises ValueError on an event that does not
    match the folder, :class:`~sass_retrieval.serve.loader.VersionLoadError` on a version that does not load.
    """
    missing = [k for k in ("version", "row") if not extra.get(k)]
    if missing:
        raise ValueError(f"asset event metadata lacks {', '.join(missing)}: {dict(extra)}")
    root = Path(project_dir).resolve()
    published, version, row = param_path(root, "publish.dir", "published"), str(extra["version"]), extra["row"]
    folder = Path(extra["path"]) if extra.get("path") else published / "versions" / version
    if not folder.is_dir():
        raise ValueError(f"version {version}: no folder {folder}")
    if folder.name != version:
        raise ValueError(f"version {version}: the event's path {folder} names another version")
    if (served := served_row(folder)) != row:
        raise ValueError(f"version {version} serves {served!r}, the event says {row!r}")
    recorded, announced = macro(_read_json(folder / "metrics.json"), str(row)), extra.get("ndcg@50")
    if None not in (recorded, announced) and not math.isclose(recorded, float(announced), abs_tol=NDCG_TOLERANCE):
        raise ValueError(f"version {version}: metrics.json has macro NDCG@50 {recorded}, the event says {announced}")
    summary: dict[str, Any] = {"version": version, "row": row, "ndcg@50": announced if recorded is None else recorded,
                               "path": str(folder), "dvc_rev": extra.get("dvc_rev"), "loaded": False,
                               "in_service": current_version(published) == folder.resolve()}
    if load:
        from ..serve.loader import load_version

        store_dir = Path(store) if store else param_path(root, "data.store_dir", "data/store")
        loaded = load_version(folder, Path(features) if features else root / "data" / "features", store_dir)
        summary.update(loaded=True, load_seconds=round(loaded.load_seconds, 3), scenarios=loaded.scenarios)
    return summary
