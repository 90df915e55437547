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
    loss: str = "pointwise"   # pointwise (BCE per row) | listwise (softmax over each request's rows)

    @classmethod
    def from_params(cls, params: Any, progress: bool = False) -> RankSettings:
        r = params.rank
        return cls(epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, patience=r.patience, seed=params.train.seed,
                   progress=progress, loss=r.loss)


def request_ids(rows: pd.DataFrame) -> np.ndarray:
    """One id per request, (date, scenario, user): the rows one served list is chosen from."""
    cols = [c for c in ("date", "scenario", "user_id") if c in rows.columns]
    return pd.MultiIndex.from_frame(rows[cols].astype(str)).factorize()[0].astype(np.int64)


def listwise_loss(logits: torch.Tensor, labels: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Mean over positive rows of -log softmax within the row's request: the loss asks each request's clicked
    candidates to outrank its others, as the served order does, and says nothing about one request against
    another (which a pointwise loss spends capacity on: a user who clicks a lot vs one who clicks little)."""
    uniq, g = torch.unique(group, return_inverse=True)
    shift = logits.detach().max()
    sums = torch.zeros(len(uniq), dtype=logits.dtype).index_add_(0, g, torch.exp(logits - shift))
    lse = torch.log(sums) + shift
    pos = labels > 0
    if not pos.any():
        return logits.sum() * 0.0
    return (lse[g[pos]] - logits[pos]).mean()


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


def _request_batches(bounds: np.ndarray, rows_per_batch: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Row indexes of shuffled requests, about ``rows_per_batch`` rows a batch, never splitting a request."""
    order = torch.randperm(len(bounds) - 1, generator=gen).numpy()
    batches, current, size = [], [], 0
    for r in order:
        current.append(np.arange(bounds[r], bounds[r + 1]))
        size += bounds[r + 1] - bounds[r]
        if size >= rows_per_batch:
            batches.append(torch.from_numpy(np.concatenate(current)))
            current, size = [], 0
    if current:
        batches.append(torch.from_numpy(np.concatenate(current)))
    return batches


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
    listwise = settings.loss == "listwise"
    if listwise:   # batches of whole requests: rows sorted by request, a batch = consecutive requests
        group = request_ids(train_rows)
        order = np.argsort(group, kind="stable")
        x = {k: v[torch.from_numpy(order)] for k, v in x.items()}
        scen, y, group = scen[torch.from_numpy(order)], y[torch.from_numpy(order)], group[order]
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        bounds = np.r_[starts, n]
        group_t = torch.from_numpy(group)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    gen = torch.Generator().manual_seed(settings.seed)
    history: list[dict[str, float]] = []
    best_key, best_state, best_epoch, since = -math.inf, None, 0, 0
    for epoch in range(settings.epochs):
        model.train()
        batches = _request_batches(bounds, settings.batch_size, gen) if listwise else \
            list(torch.randperm(n, generator=gen).split(settings.batch_size))
        steps = len(batches)
        loss_sum = 0.0
        with tqdm(total=steps, desc=f"rank epoch {epoch + 1}/{settings.epochs}", disable=not settings.progress,
                  leave=False) as bar:
            for idx in batches:
                logits = model({k: v[idx] for k, v in x.items()}, scen[idx])
                loss = listwise_loss(logits, y[idx], group_t[idx]) if listwise else \
                    F.binary_cross_entropy_with_logits(logits, y[idx])
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
