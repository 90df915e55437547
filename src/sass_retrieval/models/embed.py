"""A trained model's serving vectors and its serving prior, per scenario: what an index holds and adds.

The index stage builds from these and evaluation scores through the same functions, so a report's numbers
are those of the artefact that serving loads.
"""

from __future__ import annotations

import numpy as np
import torch

from .bank import FeatureBank, click_prior
from .retrieval import RetrievalModel


def vector_dim(model: RetrievalModel) -> int:
    """The length of a model's serving vectors (a multi-task model concatenates its objectives' heads)."""
    return int(getattr(model, "serving_dim", model.cfg.hidden))


@torch.no_grad()
def _embed(model: RetrievalModel, tower, batch_of, scenario: str, rows: np.ndarray, batch: int) -> np.ndarray:
    """One tower's serving vectors for ``rows``, in batches (eval mode: no dropout, frozen statistics)."""
    model.eval()
    out = [tower(batch_of(rows[i:i + batch], scenario))[0] for i in range(0, len(rows), batch)]
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, vector_dim(model)), np.float32)


def embed_items(model: RetrievalModel, bank: FeatureBank, scenario: str, rows: np.ndarray,
                batch: int = 8192) -> np.ndarray:
    return _embed(model, model.item_vectors, bank.serving_item_batch, scenario, rows, batch)


def embed_users(model: RetrievalModel, bank: FeatureBank, scenario: str, rows: np.ndarray,
                batch: int = 8192) -> np.ndarray:
    return _embed(model, model.user_vectors, bank.serving_user_batch, scenario, rows, batch)


def prior_weight(model: RetrievalModel, scenario: str) -> float:
    """w_s, the weight of the scenario's popularity prior as fine-tuning chose it on the held-out day
    (``ModelConfig.prior_weights``, train.finetune); 0 when the model has none."""
    weights = getattr(getattr(model, "cfg", None), "prior_weights", None) or {}
    return float(weights.get(scenario, 0.0))


def serving_prior(model: RetrievalModel, bank: FeatureBank, scenario: str, rows: np.ndarray) -> np.ndarray | None:
    """The popularity prior the scenario's index adds to every item's inner product: w_s * log1p(the item's
    clicks in the scenario over the window) (:func:`prior_weight`); None when w_s is 0."""
    w = prior_weight(model, scenario)
    if w <= 0:
        return None
    return (w * click_prior(bank.per[scenario].item_stats[rows])).astype(np.float32)
