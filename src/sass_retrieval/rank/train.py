"""Training the pre-ranker: click cross-entropy on exposures, early stopping on validation GAUC.

GAUC (per-user AUC, impression-weighted, each (scenario, user) pair one request) is the selection
criterion rather than the loss, because the pre-ranker only ever orders one request's candidates: a model
that calibrates users against each other better but orders each user's items worse must lose. Everything
random (the initial weights, the batch order) follows ``seed``, so the same seed gives the same weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import BadInputError
from ..evaluate.gauc import gauc_by, gauc_within
from .features import LABEL, SPECS, validate_names
from .model import PreRanker, RankModelConfig

SCORE_CHUNK = 65536   # rows scored at once (bounded memory on a large validation day)


@dataclass(frozen=True)
class RankSettings:
    epochs: int = 4
    batch_size: int = 1024
    lr: float = 0.002
    patience: int = 1
    seed: int = 0
    progress: bool = False

    @classmethod
    def from_params(cls, params: Any, progress: bool = False) -> RankSettings:
        r = params.rank
        return cls(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, patience=r.patience, seed=params.train.seed,
                   progress=progress)


def row_features(rows: pd.DataFrame, names: Sequence[str], source: str = "rank rows") -> dict[str, np.ndarray]:
    """The named feature columns of training rows, as the arrays ``feature_matrix`` gives."""
    missing = [n for n in names if n not in rows.columns]
    if missing:
        raise BadInputError(f"{source}: missing feature column(s) {', '.join(missing)}")
    return {n: np.array(rows[n].to_numpy(np.float32 if SPECS[n].kind == "numeric" else np.int64)) for n in names}


def _check_rows(rows: pd.DataFrame, source: str) -> None:
    missing = [c for c in ("scenario", "user_id", LABEL) if c not in rows.columns]
    if missing:
        raise BadInputError(f"{source}: missing column(s) {', '.join(missing)}")
    if len(rows) == 0:
        raise BadInputError(f"{source}: no rows (the pre-ranker needs exposures with an earlier day to train)")


@torch.no_grad()
def score_rows(model: PreRanker, rows: pd.DataFrame) -> np.ndarray:
    """The model's logit of each row (rows of any scenarios), in chunks."""
    was = model.training
    model.eval()
    feats = row_features(rows, model.names)
    scen = model.scenario_index(rows["scenario"].astype(str).to_numpy())
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), SCORE_CHUNK):
        sl = slice(start, start + SCORE_CHUNK)
        x = {n: torch.from_numpy(np.require(v[sl], requirements=["C", "W"])) for n, v in feats.items()}
        out[sl] = model(x, scen[sl]).numpy()
    model.train(was)
    return out


@torch.no_grad()
def mean_field_weights(model: PreRanker, rows: pd.DataFrame) -> dict[str, float]:
    """The SE block's weight of each field, averaged over ``rows`` (each row with its own scenario)."""
    feats = row_features(rows, model.names)
    scen = model.scenario_index(rows["scenario"].astype(str).to_numpy())
    total = torch.zeros(model.fields, dtype=torch.float64)
    for start in range(0, len(rows), SCORE_CHUNK):
        sl = slice(start, start + SCORE_CHUNK)
        x = {n: torch.from_numpy(np.require(v[sl], requirements=["C", "W"])) for n, v in feats.items()}
        total += model.se(model.field_vectors(x, scen[sl])).sum(dim=0).double()
    return dict(zip(model.field_names, (total / max(len(rows), 1)).tolist(), strict=True))


def validation_gauc(model: PreRanker, rows: pd.DataFrame) -> tuple[float, dict[str, float]]:
    """(overall GAUC over (scenario, user) requests, GAUC per scenario)."""
    scores = score_rows(model, rows)
    scen = rows["scenario"].astype(str).to_numpy()
    users = rows["user_id"].to_numpy()
    labels = rows[LABEL].to_numpy()
    return gauc_within(scen, users, labels, scores), gauc_by(scen, users, labels, scores)


def fit_ranker(train_rows: pd.DataFrame, valid_rows: pd.DataFrame, names: Sequence[str], scenarios: Sequence[str],
               settings: RankSettings, cfg: RankModelConfig) -> tuple[PreRanker, dict]:
    """Train on ``train_rows``, keep the epoch with the best validation GAUC (stop after ``patience`` epochs
    without a gain). The report: per-epoch train loss and validation GAUC, the best epoch, validation GAUC
    overall and per scenario, and the SE block's mean field weights on the validation rows."""
    names = validate_names(names)
    _check_rows(train_rows, "rank training rows")
    _check_rows(valid_rows, "rank validation rows")
    torch.manual_seed(settings.seed)
    model = PreRanker(names, scenarios, cfg)
    feats = row_features(train_rows, names, "rank training rows")
    model.fit_normalisation(feats)
    x = {n: torch.from_numpy(np.ascontiguousarray(v)) for n, v in feats.items()}
    scen = model.scenario_index(train_rows["scenario"].astype(str).to_numpy())
    y = torch.from_numpy(np.array(train_rows[LABEL].to_numpy(np.float32)))
    n = len(train_rows)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    gen = torch.Generator().manual_seed(settings.seed)
    history: list[dict[str, float]] = []
    best_key, best_state, best_epoch, since = -math.inf, None, 0, 0
    for epoch in range(settings.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        steps = math.ceil(n / settings.batch_size)
        loss_sum = 0.0
        with tqdm(total=steps, desc=f"rank epoch {epoch + 1}/{settings.epochs}", disable=not settings.progress,
                  leave=False) as bar:
            for start in range(0, n, settings.batch_size):
                idx = perm[start:start + settings.batch_size]
                logits = model({k: v[idx] for k, v in x.items()}, scen[idx])
                loss = F.binary_cross_entropy_with_logits(logits, y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(idx)
                bar.update(1)
        g, _ = validation_gauc(model, valid_rows)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / n, "valid_gauc": g})
        key = g if g == g else -math.inf
        if best_state is None or key > best_key:
            best_key, best_state, best_epoch, since = key, copy.deepcopy(model.state_dict()), epoch + 1, 0
        else:
            since += 1
            if since >= settings.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    overall, per_scenario = validation_gauc(model, valid_rows)
    report = {"epochs": history, "best_epoch": best_epoch, "valid_gauc": overall,
              "valid_gauc_by_scenario": per_scenario, "field_weights": mean_field_weights(model, valid_rows),
              "names": list(names), "train_rows": n, "valid_rows": len(valid_rows)}
    return model, report
