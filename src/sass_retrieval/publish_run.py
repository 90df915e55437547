"""Publishing one run: the gate decides on the evaluate stage's outputs, and a win is installed and made current.

A published version holds what serving and the next day's warm start read: the pretraining model, the
candidate's and the challenger's models, the winning row's indexes, the metrics and the validation summary,
plus served.json (which row it serves, and which index serves each scenario skipped that day). When the
rank stage trained a pre-ranker for the winning row (models/rank/<row>) and the evaluation found it measurably
better than retrieval order (metrics.json ``cascade[row].served``), the version also holds it with the window's
statistics (rank/<row>, rank/stats) and served.json records rank.top_k: the gate measured retrieval + rank, so
that is what the version serves. When the rerank stage trained a list re-ranker for the winning row
(models/rerank/<row>; not when it wrote off.json), the version holds it with its statistics (rerank/<row>,
rerank/stats) and served.json records rerank.candidates and rerank.length. It is
installed and ``current`` moves to it; either way the decision is recorded in
``<publish.dir>/decisions.jsonl``. The whole publish holds the publish lock, and starts by removing what an
earlier, killed publish left half-installed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import MissingPrerequisiteError
from .params_schema import Params
from .publish import (
    PUBLISHED,
    RANK_DIR,
    RERANK_DIR,
    SERVED_FILE,
    Decision,
    current_version,
    decide,
    install_version,
    point_current,
    published_metric,
    record,
    rerank_shape,
    run_id,
    served_record,
    served_row,
    sweep_stale,
)
from .rows import CANDIDATE
from .run import Run, published_dir, safe_path

log = logging.getLogger("publish")
PUBLISH_LOCK = ".publish.lock"   # in the publish folder: held by a publish from its decision to its record
RANK_MODELS = "models/rank"      # the rank stage's output: stats/ and one folder per publishable row
RANK_STATS = "stats"             # rank.stage.STATS (not imported: publishing does not load torch)
RERANK_MODELS = "models/rerank"  # the rerank stage's output: stats/ and one folder per row, or off.json


def version_day(vid: str) -> int:
    """The day a version id names (``run_id``: ``<window_end>-<hash>``); 0 for a name of another form."""
    head = vid.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def validation_passed(summary: Path) -> bool:
    """The data validation's summary.json says success (a missing summary is a failed validation)."""
    return summary.exists() and bool(json.loads(summary.read_text()).get("success"))


def version_sources(row: str, challenger: str, metrics: Path, validation: Path) -> dict[str, Path]:
    """What a version serving ``row`` holds (name in the version -> file or folder in the workspace). The
    served row's models and indexes must exist; the others go in when they do."""
    sources = {"models/pretrain": safe_path("models/pretrain"), f"models/{CANDIDATE}": safe_path(f"models/{CANDIDATE}"),
               f"models/{challenger}": safe_path(f"models/{challenger}"), "indexes": safe_path(f"indexes/{row}"),
               "metrics.json": metrics, "validation.json": validation}
    return {k: v for k, v in sources.items() if v.exists() or k in ("indexes", f"models/{row}")}


def _model_sources(row: str, stage_dir: Path, version_dir: str, model: str, stage: str) -> dict[str, Path]:
    """A per-row model of ``stage`` and the statistics it reads (name in the version -> folder), when the stage
    trained one for ``row``; empty when it did not (only ``off.json``)."""
    folder = stage_dir / row
    if not folder.is_dir():
        return {}
    stats = stage_dir / RANK_STATS
    if not stats.is_dir():
        raise MissingPrerequisiteError(f"{stats}: missing; the {model} {folder} reads the window's statistics "
                                       f"from it (run the {stage} stage)")
    return {f"{version_dir}/{row}": folder, f"{version_dir}/{RANK_STATS}": stats}


def rank_sources(row: str, rank_dir: Path) -> dict[str, Path]:
    """The served row's pre-ranker and its statistics, when the rank stage trained one (rank.enabled false:
    only ``off.json``)."""
    return _model_sources(row, rank_dir, RANK_DIR, "pre-ranker", "rank")


def rerank_sources(row: str, rerank_dir: Path) -> dict[str, Path]:
    """The served row's list re-ranker and the statistics its evaluator reads, when the rerank stage trained one
    (rerank.enabled false or too short a window: only ``off.json``)."""
    return _model_sources(row, rerank_dir, RERANK_DIR, "re-ranker", "rerank")


def gate_preview(metrics: dict, validation: dict | None, per_pair: Path, params: Params) -> dict | None:
    """What the publish stage will decide on these outputs, for the run report: the same ``decide``."""
    from dataclasses import asdict

    if not metrics:
        return None
    ok = bool((validation or {}).get("success"))
    section = params.publish
    decision = decide(metrics, per_pair, ok, section.challenger, published_metric(published_dir(params), metrics),
                      section.tolerance)
    return {**asdict(decision), "challenger": section.challenger}


def decision_entry(run: Run, decision: Decision, challenger: str, published: float | None, level: float,
                   in_service: Path | None) -> dict[str, Any]:
    """The decision as reports/publish.json and decisions.jsonl hold it (fields in pipelines/publish.py)."""
    return {"window_end": run.window.test_end, "publish": decision.publish, "reason": decision.reason,
            "candidate_ndcg@50": decision.candidate, "published_ndcg@50": decision.published,
            "candidate": CANDIDATE, "challenger": challenger, "best": decision.best, "winner": decision.winner,
            "served": decision.winner or (served_row(in_service) if in_service else None),
            "scores": {**decision.scores, PUBLISHED: published}, "margins": decision.margins, "level": level}


def install(root: Path, run: Run, row: str, sources: dict[str, Path]) -> tuple[str, dict[str, str]]:
    """Install the version serving ``row`` and point ``current`` at it; the caller holds the publish lock.

    Returns its id (the same day and the same files give the same id, so re-publishing a rerun is a no-op)
    and the scenarios skipped today with the scenario whose index serves each."""
    ranked = f"{RANK_DIR}/{row}" in sources
    listed = sources.get(f"{RERANK_DIR}/{row}")
    served = served_record(row, sources["indexes"], int(run.params.rank.top_k) if ranked else None,
                           rerank_shape(listed) if listed is not None else None)
    files = [f for src in sources.values() for f in ([src] if src.is_file() else sorted(src.rglob("*")))
             if f.is_file()]
    vid = run_id(run.window.test_end, files)  # the served row's indexes are among the files
    target = install_version(root, vid, sources, {SERVED_FILE: json.dumps(served, sort_keys=True) + "\n"})
    point_current(root, target)
    return vid, {s: m["served_by"] for s, m in served["fallback"].items()}


def publish_run(run: Run, metrics_path: Path, per_pair: Path, validation: Path) -> dict[str, Any]:
    """Decide, install when the gate says so, record the decision; returns the recorded entry.

    All of it under the publish lock (refused, not waited for, when another publish holds it): two publishers
    never decide against the same model in service, and the temporaries a killed install left are swept
    first, when no installer can be running (publish.sweep_stale)."""
    from .runlock import run_lock

    root = published_dir(run.params)
    with run_lock(root / PUBLISH_LOCK, "publish"):
        sweep_stale(root)
        return _decide_and_install(run, root, metrics_path, per_pair, validation)


def _decide_and_install(run: Run, root: Path, metrics_path: Path, per_pair: Path, validation: Path) -> dict[str, Any]:
    challenger = str(run.params.publish.challenger)
    metrics = json.loads(metrics_path.read_text())
    level = float((metrics.get("significance_config") or {}).get("level", 0.95))
    published = published_metric(root, metrics)
    decision = decide(metrics, per_pair, validation_passed(validation), challenger, published,
                      float(run.params.publish.tolerance))
    in_service = current_version(root)
    if decision.publish and in_service is not None and version_day(in_service.name) > run.window.test_end:
        # days run at once (several workers) may finish out of order: an older day never replaces a newer one
        decision = replace(decision, publish=False, winner=None,
                           reason=f"kept {in_service.name}, a later day's model (the gate said: {decision.reason})")
    entry = decision_entry(run, decision, challenger, published, level, in_service)
    if decision.publish:
        row = str(decision.winner)
        rescored = bool(((metrics.get("cascade") or {}).get(row) or {}).get("served"))
        sources = {**version_sources(row, challenger, metrics_path, validation),
                   **(rank_sources(row, safe_path(RANK_MODELS)) if rescored else {}),
                   **rerank_sources(row, safe_path(RERANK_MODELS))}
        vid, fallback = install(root, run, row, sources)
        entry["stages"] = (["retrieval"] + (["rank"] if f"{RANK_DIR}/{row}" in sources else [])
                           + (["rerank"] if f"{RERANK_DIR}/{row}" in sources else []))
        if fallback:  # scenarios skipped today: no index of their own, served by another one
            entry["fallback"] = fallback
            log.info("skipped scenarios and the index serving them: %s", fallback)
        entry["version"] = vid
        log.info("published %s (%s): %s", vid, row, decision.reason)
    record(root, entry)
    return entry
