"""Stage 1: cross-scenario contrastive pretraining (no labels).

A user active in scenarios a and b is one object seen through two views, its per-scenario features;
both views go through the same tower, each through its own scenario network, and NT-Xent pulls them
together against the other 2n-2 views of the batch. Items likewise. The id embedding is shared by
the two views, so it is randomly masked per view (``id_dropout``): otherwise the task is solved by
the id alone and the scenario networks learn nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.bank import FeatureBank, recent_days
from ..models.retrieval import RetrievalModel
from ..params_schema import Pretrain
from .loop import LoopSettings, run_epochs, step_rng
from .losses import nt_xent


def _views_user(bank: FeatureBank, pairs: np.ndarray, rng: np.random.Generator, id_dropout: float):
    rows = pairs[:, 0]
    out = []
    for col in (1, 2):
        seq, stats = bank.serving_user_views(rows, pairs[:, col])
        out.append(bank.user_batch(rows, pairs[:, col], seq, stats, mask_id=rng.random(len(rows)) < id_dropout))
    return out


def _views_item(bank: FeatureBank, pairs: np.ndarray, rng: np.random.Generator, id_dropout: float):
    rows = pairs[:, 0]
    return [bank.item_batch(rows, pairs[:, c], bank.serving_item_stats(rows, pairs[:, c]),
                            mask_id=rng.random(len(rows)) < id_dropout) for c in (1, 2)]


def _recent(pairs: np.ndarray | None, day: np.ndarray | None, days: set[int]) -> np.ndarray:
    """The pairs an incremental day trains on: those its newest days saw in both scenarios."""
    if pairs is None:
        return np.zeros((0, 3), np.int64)
    return pairs[np.isin(day, sorted(days))]


def pretrain(model: RetrievalModel, bank: FeatureBank, s: Pretrain, loop: LoopSettings, out_dir: Path) -> dict[str, Any]:
    """Train ``model`` in place with the ``pretrain`` section's knobs and ``loop`` (train.recipes.loop_settings);
    writes the loss log and a resume checkpoint under ``out_dir``."""
    bank.require_training_samples("pretraining")
    days = recent_days(len(bank.train_dates), s.recent_days)
    users = _recent(bank.user_pairs, bank.user_pair_day, days)
    items = _recent(bank.item_pairs, bank.item_pair_day, days)
    if len(users) < 2 and len(items) < 2:
        raise ValueError("pretraining needs users or items seen in two or more scenarios; the window has none")
    bs = s.batch_size
    n_steps = max(int(np.ceil(len(users) / bs)), int(np.ceil(len(items) / bs)), 1)

    def batches(epoch: int) -> Iterator[tuple[int, Any]]:
        order_rng = step_rng(loop.seed, epoch, -1)
        u_perm, i_perm = order_rng.permutation(len(users)), order_rng.permutation(len(items))
        for step in range(n_steps):
            def closure(step: int = step) -> torch.Tensor:
                rng = step_rng(loop.seed, epoch, step)
                loss = torch.zeros(())
                for pairs, perm, views, tower in ((users, u_perm, _views_user, model.user_vectors),
                                                  (items, i_perm, _views_item, model.item_vectors)):
                    if len(pairs) < 2:
                        continue
                    idx = perm[np.arange(step * bs, (step + 1) * bs) % len(pairs)]  # cycle the shorter side
                    idx = np.unique(idx)
                    if len(idx) < 2:
                        continue
                    va, vb = views(bank, pairs[idx], rng, s.id_dropout)
                    loss = loss + nt_xent(tower(va)[0], tower(vb)[0], s.temperature)
                return loss
            yield step, closure

    return run_epochs(model, loop, lambda e: n_steps, batches, Path(out_dir) / "resume.pt",
                      Path(out_dir) / "loss", "pretrain")
