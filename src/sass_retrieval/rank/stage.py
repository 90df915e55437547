"""The `rank` stage's work, one implementation for the pipeline (pipelines/rank.py), the benchmarks and the tests.

Training rows are the logged exposures of the training window, labelled by the click (COLD trains its
pre-ranker on what was shown). Each day's features come from the days before it only
(rank.features.training_rows), so the first day only feeds the counts. The newest training day is held out:
it decides the early stopping and, with ``rank.feature_sets: auto``, the feature set (rank.select), and is
never trained on. The statistics the served pre-ranker reads are those of the whole window, as the retrieval
model's serving features are.

With ``rank.train_on: candidates`` (the default) the rows are retrieval's candidates of each training day's
requests instead, labelled by that day's clicks (rank.candidates): the rows the cascade meets when it serves.

The retrieval score is a feature: the row's own score of the pair (rank.cascade.PairScorer), so a pre-ranker
belongs to the retrieval row whose candidates it rescores, and each publishable row gets its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import write_json
from ..evaluate.gauc import gauc
from ..params_schema import Params
from .candidates import Retrieve, candidate_rows
from .cascade import Reranker
from .days import training_days
from .features import RankStats, feature_matrix, training_rows
from .model import PreRanker, RankModelConfig, load_ranker, save_ranker
from .select import select_features
from .train import RankSettings, fit_ranker

log = logging.getLogger(__name__)

ScoreFn = Callable[[str, np.ndarray, np.ndarray], np.ndarray]
STATS = "stats"          # models/rank/stats: the window's statistics, shared by every row's pre-ranker
REPORT = "report.json"   # models/rank/<row>/report.json: training, selection and importance


@dataclass
class RankRows:
    """The held-out split of the window's exposures, features computed once for every row."""

    train: pd.DataFrame
    valid: pd.DataFrame

    def with_scores(self, score: ScoreFn) -> RankRows:
        """The same rows with ``retrieval_score`` of one retrieval row."""
        return RankRows(_scored(self.train, score), _scored(self.valid, score))


def _scored(rows: pd.DataFrame, score: ScoreFn) -> pd.DataFrame:
    out = rows.copy()
    out["retrieval_score"] = np.zeros(len(out), np.float32)
    for s, idx in out.groupby("scenario", sort=False).indices.items():
        out.iloc[idx, out.columns.get_loc("retrieval_score")] = score(
            str(s), out["user_id"].to_numpy()[idx], out["video_id"].to_numpy()[idx])
    return out


def _no_score(scenario: str, users: np.ndarray, videos: np.ndarray) -> np.ndarray:
    return np.zeros(len(users), np.float32)


def rank_rows(frame: pd.DataFrame, items: pd.DataFrame, train_dates: Sequence[int]) -> RankRows:
    """The pre-ranker's rows: every training day but the first (features need an earlier day) and the newest
    (held out for validation); ``frame`` holds the window's exposures with their run scenario names."""
    dates = training_days(train_dates, "rank")
    rows = training_rows(frame, items, dates[1:], _no_score)
    return RankRows(rows[rows["date"] != dates[-1]].reset_index(drop=True),
                    rows[rows["date"] == dates[-1]].reset_index(drop=True))


def candidate_split(frame: pd.DataFrame, items: pd.DataFrame, train_dates: Sequence[int], retrieve: Retrieve,
                    params: Params) -> RankRows:
    """rank.train_on: candidates: each training day's requests through the row's retrieval (``retrieve``: its
    ``top_scored``), the newest day held out; the first day only feeds the counts."""
    dates = training_days(train_dates, "rank")
    r = params.rank
    rows = candidate_rows(frame, items, dates[1:], retrieve, r.top_k, r.negatives, params.train.seed)
    return RankRows(rows[rows["date"] != dates[-1]].reset_index(drop=True),
                    rows[rows["date"] == dates[-1]].reset_index(drop=True))


def row_split(params: Params, exposures: RankRows | None, frame: pd.DataFrame, items: pd.DataFrame,
              train_dates: Sequence[int], retrieve: Retrieve, score: ScoreFn) -> RankRows:
    """One retrieval row's training rows as rank.train_on says: its candidates, or the window's exposures
    (``exposures``, featured once for every row: :func:`rank_rows`) scored by the row."""
    if params.rank.train_on == "candidates":
        return candidate_split(frame, items, train_dates, retrieve, params)
    if exposures is None:
        exposures = rank_rows(frame, items, train_dates)
    return exposures.with_scores(score)


def fit_row(rows: RankRows, scenarios: Sequence[str], stats: RankStats, params: Params, progress: bool = False
            ) -> tuple[Reranker, dict[str, Any]]:
    """One retrieval row's pre-ranker on its scored rows: the feature set (given, or COLD's selection under
    rank.latency_budget_ms), then the model on that set."""
    r = params.rank
    settings = RankSettings.from_params(params, progress=progress)
    cfg = RankModelConfig.from_params(params)
    report: dict[str, Any] = {"train_rows": len(rows.train), "valid_rows": len(rows.valid)}
    sets = None if r.feature_sets == "auto" else [list(x) for x in r.feature_sets]
    trained: dict = {}
    if sets is not None and len(sets) == 1:   # one set named: nothing to choose
        names, report["selection"] = sets[0], []
        model, fit = fit_ranker(rows.train, rows.valid, names, scenarios, settings, cfg)
    else:   # COLD: nested sets by importance (auto) or the named sets, the best held-out GAUC within the budget
        names, report["selection"] = select_features(rows.train, rows.valid, scenarios, settings, cfg, stats,
                                                     r.latency_budget_ms, r.importance, sets=sets, models=trained)
        model, fit = trained[tuple(names)]
    report.update(fit=fit, names=list(names))
    return Reranker(model, stats, list(names)), report


def exposure_gauc(reranker: Reranker, score: ScoreFn, test: pd.DataFrame) -> dict[str, dict[str, float]]:
    """GAUC (per-user AUC weighted by impressions) of the pre-ranker and of the retrieval score alone on the
    exposed rows of ``test``, per scenario: how well each orders what was actually shown."""
    out: dict[str, dict[str, float]] = {}
    for s, part in test.groupby("scenario", sort=True):
        users, videos = part["user_id"].to_numpy(np.int64), part["video_id"].to_numpy(np.int64)
        labels = part["is_click"].to_numpy()
        retrieval = score(str(s), users, videos)
        feats = feature_matrix(reranker.stats, str(s), users, videos, retrieval, reranker.names)
        ranked = reranker.model.score(feats, str(s))
        out[str(s)] = {"rows": int(len(part)), "rank": gauc(users, labels, ranked),
                       "retrieval": gauc(users, labels, retrieval)}
    return out


def teacher_scores(reranker: Reranker, score: ScoreFn, rows: RankRows) -> pd.DataFrame:
    """The distillation teacher's table (train.distill): every exposure of ``rows`` (held-out day included) with
    the pre-ranker's logit; columns date, scenario, user_id, video_id, is_click, teacher_logit."""
    frames = []
    for part in (rows.train, rows.valid):
        scored = _scored(part, score)
        logits = np.zeros(len(scored), np.float32)
        for s, idx in scored.groupby("scenario", sort=False).indices.items():
            sub = scored.iloc[idx]
            feats = {n: sub[n].to_numpy() for n in reranker.names}
            logits[idx] = reranker.model.score(feats, str(s))
        frames.append(pd.DataFrame({
            "date": scored["date"].to_numpy(np.int32), "scenario": scored["scenario"].astype(str).to_numpy(),
            "user_id": scored["user_id"].to_numpy(np.int64), "video_id": scored["video_id"].to_numpy(np.int64),
            "is_click": scored["is_click"].to_numpy(np.int8), "teacher_logit": logits}))
    return pd.concat(frames, ignore_index=True)


def save_reranker(reranker: Reranker, report: dict[str, Any], folder: Path) -> None:
    """models/rank/<row>/: the model (state dict + JSON config, rank.model) and its report; the statistics are
    saved once for every row (:func:`save_stats`)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_ranker(reranker.model, folder)
    write_json(folder / REPORT, _plain(report))


def save_stats(stats: RankStats, folder: Path) -> None:
    stats.save(folder / STATS)


def load_reranker(rank_dir: Path, row: str) -> Reranker:
    """The pre-ranker of ``row`` under ``rank_dir`` (models/rank) with the window's statistics."""
    model: PreRanker = load_ranker(rank_dir / row)
    stats = RankStats.load(rank_dir / STATS)
    return Reranker(model, stats, list(model.names))


def _plain(obj: Any) -> Any:
    """JSON-ready: numpy scalars and arrays to Python numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


__all__ = ["RankRows", "exposure_gauc", "fit_row", "load_reranker", "rank_rows", "save_reranker",
           "save_stats", "teacher_scores"]
