"""The published model as an Airflow Asset: what ``publish`` announces, and what a consumer checks.

Name and URI
    ``Asset(name="sass_published_model", uri="sass://published-model", group="model")``. A logical URI,
    not ``file://<project>/published/current``: the identity of "the model in service" must not change when
    the project folder moves or a second deployment runs elsewhere, and a consumer DAG must be able to name it
    without knowing where the producer's workspace is. Where the version lies is event metadata (``path``).

Only a real publish is an event
    An Airflow Asset event means "the asset was updated", and every DAG scheduled on the asset runs for it.
    When the gate keeps the model in service, nothing changed, so no event is emitted (rather than an event
    saying "not published", which every consumer would have to remember to filter, and which a naive
    consumer would act on). Airflow 3 has no way to suppress the event of a declared ``Asset`` outlet once
    its task succeeded (every successful task emits one per outlet Asset; apache/airflow#58474), so the
    ``publish`` task's outlet is the ``AssetAlias`` :data:`ALIAS_NAME`, and the task adds an event for the
    Asset through it only when a version was published (``outlet_events[alias].add(asset, extra=...)``,
    Airflow's documented way to emit an event conditionally). Consumers schedule on the Asset itself.

Metadata (the event's ``extra``: :func:`published_asset_extra`)
    ``version`` the run id of the version now in service (``<publish.dir>/versions/<version>``), ``path`` that
    folder, ``row`` the reference row it serves, ``ndcg@50`` its macro NDCG@50 (the version's metrics.json),
    ``window_end`` the run's last day, ``reason`` the gate's reason, ``dvc_lock_sha256`` the sha256 of
    dvc.lock once ``publish`` was committed to it (every model and index of the run by content hash),
    ``git_commit`` the workspace's HEAD at publish time (code, and the previous recorded day) or null, and
    ``dvc_rev`` the git tag ``record_run`` writes for this run (``day-YYYYMMDD``: ``dvc get . models/sass
    --rev <dvc_rev>``; it exists once the producing run's ``record_run`` finished).

Airflow is only imported inside :func:`published_model_asset` / :func:`published_model_alias`, so the
metadata functions are usable (and tested) without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Asset, AssetAlias

log = logging.getLogger("sass.orchestration")

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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def param_path(project_dir: str | Path, dotted: str, default: str) -> Path:
    """A path-valued key of the project's params.yaml (``publish.dir``, ``data.store_dir``), absolute.

    Read leniently (no schema check): the ``params`` stage validated the file, and a consumer must be able
    to look at a workspace whose params.yaml predates a schema change."""
    import yaml

    root = Path(project_dir).resolve()
    try:
        node: Any = yaml.safe_load((root / "params.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        node = {}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    rel = Path(str(node or default))
    return rel if rel.is_absolute() else root / rel


def publish_dir(project_dir: str | Path) -> Path:
    """``publish.dir`` of the project's params.yaml (default ``published``), absolute."""
    return param_path(project_dir, "publish.dir", "published")


def _version_ndcg(version_dir: Path, row: str) -> float | None:
    metrics = _read_json(version_dir / "metrics.json")
    if not isinstance(metrics, dict):
        return None
    entry = (metrics.get("rows") or {}).get(row) or metrics.get(row)
    try:
        return float(entry["macro"]["ndcg@50"])
    except (KeyError, TypeError, ValueError):
        return None


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _git_head(root: Path) -> str | None:
    """HEAD of the workspace, or None when it is not a git repository (yet: record_run git-inits it)."""
    from .runs import is_git_root

    try:
        if not is_git_root(root):   # not the HEAD of a repository the workspace merely sits in
            return None
        out = subprocess.run(["git", "rev-parse", "-q", "--verify", "HEAD"], cwd=root, capture_output=True,
                             text=True)
    except OSError:
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def published_asset_extra(project_dir: str | Path, report: str = PUBLISH_REPORT) -> dict[str, Any] | None:
    """The metadata of the asset event for this run's publish decision, or None when nothing was published.

    Reads what the ``publish`` stage left in ``project_dir``: its report (``reports/publish.json``: publish,
    version, winner, scores), the version folder's ``served.json`` / ``metrics.json`` (the numbers of what is
    actually served), dvc.lock and git HEAD. None when there is no report, the gate kept the model in service
    (``publish`` false) or no version was recorded: no event then (module docstring). Never raises on a
    missing version folder: ``path`` is null and :func:`check_published_version` refuses the event, so the
    problem shows in the consumer and the daily run still records its day.
    """
    root = Path(project_dir).resolve()
    entry = _read_json(root / report)
    if not isinstance(entry, dict) or not entry.get("publish") or not entry.get("version"):
        return None
    version = str(entry["version"])
    folder = publish_dir(root) / "versions" / version
    served = _read_json(folder / "served.json")
    row = str((served or {}).get("row") or entry.get("winner") or entry.get("served") or "sass")
    ndcg = _version_ndcg(folder, row)
    if ndcg is None:
        score = (entry.get("scores") or {}).get(row)
        ndcg = float(score) if isinstance(score, int | float) else None
    window_end = entry.get("window_end")
    return {
        "version": version,
        "path": str(folder) if folder.is_dir() else None,
        "row": row,
        "ndcg@50": ndcg,
        "window_end": None if window_end is None else str(window_end),
        "reason": entry.get("reason"),
        "dvc_lock_sha256": _sha256(root / "dvc.lock"),
        "git_commit": _git_head(root),
        "dvc_rev": None if window_end is None else f"day-{window_end}",
    }


def check_published_version(extra: Mapping[str, Any], project_dir: str | Path, *, load: bool = True,
                            features: str | Path | None = None, store: str | Path | None = None) -> dict[str, Any]:
    """What a consumer of the asset does with an event: make sure the announced version can be served.

    Checks that the version folder exists, serves the announced row, and carries the announced macro
    NDCG@50; with ``load`` it loads the version exactly as ``sass serve`` does
    (:func:`sass_retrieval.serve.loader.load_version`, with the workspace's ``data/features`` and
    ``data.store_dir`` unless given), so a version the service would refuse fails here, loudly, instead of
    leaving the fleet on the old version without anyone noticing. Returns a summary to log (``in_service``:
    whether ``current`` still points at it; a later publish may already have moved it on, which is fine:
    the service serves ``current``). Raises ValueError on an event that does not match the folder and
    :class:`~sass_retrieval.serve.loader.VersionLoadError` on a version that does not load.
    """
    missing = [k for k in ("version", "row") if not extra.get(k)]
    if missing:
        raise ValueError(f"asset event metadata lacks {', '.join(missing)}: {dict(extra)}")
    root = Path(project_dir).resolve()
    published = publish_dir(root)
    version = str(extra["version"])
    folder = Path(extra["path"]) if extra.get("path") else published / "versions" / version
    if not folder.is_dir():
        raise ValueError(f"version {version}: no folder {folder}")
    if folder.name != version:
        raise ValueError(f"version {version}: the event's path {folder} names another version")
    served = _read_json(folder / "served.json") or {}
    if served.get("row", extra["row"]) != extra["row"]:
        raise ValueError(f"version {version} serves {served.get('row')!r}, the event says {extra['row']!r}")
    recorded, announced = _version_ndcg(folder, str(extra["row"])), extra.get("ndcg@50")
    if recorded is not None and announced is not None and not math.isclose(recorded, float(announced),
                                                                            abs_tol=NDCG_TOLERANCE):
        raise ValueError(f"version {version}: metrics.json has macro NDCG@50 {recorded}, the event says {announced}")
    current = (published / "current").resolve() if (published / "current").exists() else None
    summary: dict[str, Any] = {"version": version, "row": extra["row"], "ndcg@50": recorded if recorded is not None
                               else announced, "path": str(folder), "in_service": current == folder.resolve(),
                               "dvc_rev": extra.get("dvc_rev"), "loaded": False}
    if load:
        from ..serve.loader import load_version

        store_dir = Path(store) if store else param_path(root, "data.store_dir", "data/store")
        loaded = load_version(folder, Path(features) if features else root / "data" / "features", store_dir)
        summary.update(loaded=True, load_seconds=round(loaded.load_seconds, 3), scenarios=loaded.scenarios)
    return summary

