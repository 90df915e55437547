"""A trained model as a Recommender: per-scenario FAISS indexes over the item tower's scenario vectors.

Evaluation goes through the same index that serving would publish, so the numbers in a report are
the numbers of the artefact, not of a separate scoring path.
"""

from __future__ import annotations

import numpy as np
import torch

from ..index.faiss_index import build_index, search
from ..models.bank import FeatureBank, click_prior
from ..models.retrieval import RetrievalModel
from ..params_schema import Index


def vector_dim(model: RetrievalModel) -> int:
    """The length of a model's serving vectors (a multi-task model concatenates its objectives' heads)."""
    return int(getattr(model, "serving_dim", model.cfg.hidden))


@torch.no_grad()
def embed_items(model: RetrievalModel, bank: FeatureBank, scenario: str, rows: np.ndarray,
                batch: int = 8192) -> np.ndarray:
    model.eval()
    out = [model.item_vectors(bank.serving_item_batch(rows[i:i + batch], scenario))[0]
           for i in range(0, len(rows), batch)]
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, vector_dim(model)), np.float32)


@torch.no_grad()
def embed_users(model: RetrievalModel, bank: FeatureBank, scenario: str, rows: np.ndarray,
                batch: int = 8192) -> np.ndarray:
    model.eval()
    out = [model.user_vectors(bank.serving_user_batch(rows[i:i + batch], scenario))[0]
           for i in range(0, len(rows), batch)]
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, vector_dim(model)), np.float32)


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


class EmbeddingRecommender:
    """``models`` maps scenario -> model (one shared model, or one per scenario for dssm_single).

    ``indexes``: the row's own FAISS files per scenario; a scenario without one gets an index built here with
    ``index_cfg`` (params.yaml's index section; None: its defaults, an exact flat index)."""

    def __init__(self, models: dict[str, RetrievalModel], bank: FeatureBank, index_cfg: Index | None = None,
                 indexes: dict[str, object] | None = None):
        self.models, self.bank = models, bank
        self.cfg = index_cfg or Index()
        self.indexes: dict[str, object] = dict(indexes or {})

    def index_for(self, scenario: str):
        if scenario not in self.indexes:
            a = self.bank.per[scenario]
            model = self.models[scenario]
            vecs = embed_items(model, self.bank, scenario, a.pool)
            self.indexes[scenario] = build_index(vecs, self.bank.item_ids[a.pool], self.cfg,
                                                 serving_prior(model, self.bank, scenario, a.pool))
        return self.indexes[scenario]

    def top_items(self, scenario: str, user_ids: np.ndarray, k: int) -> np.ndarray:
        index = self.index_for(scenario)
        uv = embed_users(self.models[scenario], self.bank, scenario, self.bank.user_rows(user_ids))
        _, ids = search(index, uv, k)
        return ids.astype(np.int64)
