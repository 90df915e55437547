"""The evaluator: trained on the logs, then frozen; it scores whole lists.

KuaiRand-Pure has almost no multi-item pages (a session in one tab has a median of one impression), so no
list-level model can be learnt from it. The evaluator therefore scores a list from per-item predictions with a
position discount plus the computed utilities (rerank.goals.utilities). Its interface takes lists
(:meth:`ItemEvaluator.utilities`), so a list-level model trained on richer logs can replace it without touching
the generator or its training.

The per-item predictions are pre-rankers (rank.model) on the rank stage's cross features (``rerank.features``),
one per event (click, long view, like), each trained on retrieval's candidates of the training days labelled by
the event on that day (rank.candidates): how likely a candidate offered to the user is clicked, watched long or
liked, the question the list is built to answer. Each is trained with the listwise loss, because a list only
ever orders one request's candidates and a pointwise loss spends the model on telling heavy clickers from light
ones; its logit, centred on the request's mean logit (a listwise logit says nothing across requests, only
within one), is then mapped to a probability by Platt scaling on the held-out day (:func:`platt`), because the
utilities add expected events across goals. A candidate is cold-start when the training window holds at
most ``cold_max`` exposures of it, in any scenario.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data.schema import OBJECTIVES as OBJECTIVE_LABELS
from ..rank.features import FEATURE_NAMES, LABEL, RankStats, _find, feature_matrix
from ..rank.model import PreRanker, RankModelConfig, load_ranker, save_ranker
from ..rank.train import RankSettings, fit_ranker, request_ids, score_rows
from .goals import PREDICTED, Slate, utilities

STATS = "stats"


def item_exposures(stats: RankStats) -> np.ndarray:
    """Exposures of each video of ``stats.videos`` in the window, over every scenario."""
    n_s = max(len(stats.scenarios), 1)
    t = stats.item_scenario
    return np.bincount(t.keys // n_s, weights=t.exposures, minlength=len(stats.videos))


def centred(logits: np.ndarray, requests: np.ndarray) -> np.ndarray:
    """Each logit minus the mean logit of its request (``requests``: an integer id per candidate)."""
    x = np.asarray(logits, np.float64)
    _, g = np.unique(np.asarray(requests), return_inverse=True)
    return x - (np.bincount(g, weights=x) / np.bincount(g))[g]


def platt(logits: np.ndarray, labels: np.ndarray, steps: int = 50) -> tuple[float, float]:
    """(a, b) minimising the mean log loss of sigmoid(a * logit + b) on held-out rows: Newton's method on two
    parameters, each step halved until the loss does not rise; (1, 0) when the rows hold one label only."""
    y = np.asarray(labels, np.float64)
    x = np.asarray(logits, np.float64)
    if len(y) == 0 or y.min() == y.max():
        return 1.0, 0.0
    design = np.stack([x, np.ones_like(x)], axis=1)

    def loss(t: np.ndarray) -> float:
        z = design @ t
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    theta = np.array([1.0, 0.0])
    current = loss(theta)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        grad = design.T @ (p - y) / len(y)
        hess = (design * (p * (1 - p))[:, None]).T @ design / len(y) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6 and loss(theta - scale * step) > current:
            scale /= 2
        theta = theta - scale * step
        new = loss(theta)
        if current - new < 1e-12:
            break
        current = new
    return float(theta[0]), float(theta[1])


@dataclass
class ItemEvaluator:
    models: dict[str, PreRanker]      # one per PREDICTED event
    stats: RankStats
    cold_max: int
    calibration: dict[str, tuple[float, float]] = field(default_factory=dict)   # event -> Platt (a, b)
    _exposures: np.ndarray = field(default=None, repr=False)   # type: ignore[assignment]
    _names: list[str] = field(default_factory=list, repr=False)   # every feature some event's model reads

    def probability(self, goal: str, logits: np.ndarray, requests: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of candidates' logits; ``requests`` numbers each candidate's request."""
        a, b = self.calibration.get(goal, (1.0, 0.0))
        return (1.0 / (1.0 + np.exp(-(a * centred(logits, requests) + b)))).astype(np.float32)

    def __post_init__(self) -> None:
        self._exposures = item_exposures(self.stats)
        self._names = sorted({n for m in self.models.values() for n in m.names})

    def cold(self, ids: np.ndarray) -> np.ndarray:
        i = _find(self.stats.videos, ids.reshape(-1))
        seen = np.where(i >= 0, self._exposures[np.maximum(i, 0)], 0.0)
        return (seen <= self.cold_max).reshape(ids.shape) & (ids >= 0)

    def tags(self, ids: np.ndarray) -> np.ndarray:
        return self.stats.items.attributes(ids.reshape(-1))["tag"].reshape(ids.shape)

    @torch.no_grad()
    def slate(self, scenario: str, users: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> Slate:
        """The candidates (n, C) of n requests of one scenario (-1 = no candidate) with every prediction."""
        n, c = ids.shape
        rows, cols = np.nonzero(ids >= 0)
        pred = np.zeros((n, c, len(PREDICTED)), np.float32)
        if len(rows):
            feats = feature_matrix(self.stats, scenario, np.asarray(users, np.int64)[rows], ids[rows, cols],
                                   scores[rows, cols].astype(np.float32), self._names)
            for j, goal in enumerate(PREDICTED):
                pred[rows, cols, j] = self.probability(goal, self.models[goal].score(feats, scenario), rows)
        return Slate(torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(pred),
                     torch.from_numpy(self.tags(ids).astype(np.int64)), torch.from_numpy(self.cold(ids)))

    def utilities(self, slate: Slate, lists: torch.Tensor) -> dict[str, torch.Tensor]:
        """The list-level interface: every goal's utility of each list."""
        return utilities(slate, lists)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for goal, model in self.models.items():
            save_ranker(model, folder / goal)
        (folder / "evaluator.json").write_text(json.dumps({"cold_max": self.cold_max, "events": list(self.models),
                                                           "calibration": self.calibration}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, stats: RankStats) -> ItemEvaluator:
        meta_path = folder / "evaluator.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: missing (the rerank stage writes it)")
        meta = json.loads(meta_path.read_text())
        missing = [g for g in PREDICTED if g not in meta["events"]]
        if missing:
            raise ValueError(f"{meta_path}: no model for event(s) {', '.join(missing)}")
        calibration = {g: (float(a), float(b)) for g, (a, b) in (meta.get("calibration") or {}).items()}
        return cls({g: load_ranker(folder / g) for g in PREDICTED}, stats, int(meta["cold_max"]), calibration)


def _labelled(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows with the event's column as the pre-ranker's label."""
    return rows.assign(**{LABEL: rows[column].to_numpy(np.int8)})


def fit_evaluator(train: pd.DataFrame, valid: pd.DataFrame, scenarios: Sequence[str], stats: RankStats,
                  settings: RankSettings, cfg: RankModelConfig, cold_max: int, names: Sequence[str] = FEATURE_NAMES
                  ) -> tuple[ItemEvaluator, dict[str, Any]]:
    """One pre-ranker per event on candidate rows carrying every event's label column, on the features
    ``names``, Platt-calibrated on ``valid``."""
    models, report, calibration = {}, {}, {}
    for goal in PREDICTED:
        col = OBJECTIVE_LABELS[goal]
        model, fit = fit_ranker(_labelled(train, col), _labelled(valid, col), names, scenarios, settings, cfg)
        calibration[goal] = platt(centred(score_rows(model, valid), request_ids(valid)), valid[col].to_numpy())
        models[goal], report[goal] = model, {"valid_gauc": fit["valid_gauc"], "best_epoch": fit["best_epoch"],
                                             "positives": int(train[col].sum()), "platt": calibration[goal]}
    return ItemEvaluator(models, stats, cold_max, calibration), report


def slates_from_rows(rows: pd.DataFrame, evaluator: ItemEvaluator, width: int) -> Slate:
    """Requests (date, scenario, user) of candidate rows, each a slate of its rows in their given order (the
    retrieval order: rank.candidates keeps it), scored by the evaluator from the rows' own features."""
    keys = pd.MultiIndex.from_frame(rows[["date", "scenario", "user_id"]].astype(str)).factorize()[0]
    n = int(keys.max()) + 1 if len(keys) else 0
    place = rows.groupby(keys, sort=False).cumcount().to_numpy()
    keep = place < width
    ids = np.full((n, width), -1, np.int64)
    pred = np.zeros((n, width, len(PREDICTED)), np.float32)
    ids[keys[keep], place[keep]] = rows["video_id"].to_numpy(np.int64)[keep]
    for j, goal in enumerate(PREDICTED):
        p = evaluator.probability(goal, score_rows(evaluator.models[goal], rows), keys)
        pred[keys[keep], place[keep], j] = p[keep]
    return Slate(torch.from_numpy(ids), torch.from_numpy(pred), torch.from_numpy(evaluator.tags(ids)),
                 torch.from_numpy(evaluator.cold(ids)))
