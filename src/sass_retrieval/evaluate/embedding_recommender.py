"""A trained model as a Recommender: per-scenario FAISS indexes over the item tower's scenario vectors.

Evaluation goes through the same index that serving would publish, so the numbers in a report are
the numbers of the artefact, not of a separate scoring path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..index.faiss_index import build_index, load_index, search
from ..models.bank import FeatureBank
from ..models.checkpoint import load_row_models
from ..models.embed import embed_items, embed_users, serving_prior
from ..models.retrieval import RetrievalModel
from ..params_schema import Index


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

    @classmethod
    def for_row(cls, row: str, bank: FeatureBank, models_dir: Path, indexes_dir: Path | None, index_cfg: Index,
                scenarios: list[str]) -> EmbeddingRecommender:
        """A trained row from its checkpoints (models_dir/<row>), through its own FAISS files for ``scenarios``
        (indexes_dir/<row>/<scenario>/index.faiss, the index stage's) when ``indexes_dir`` is given; any other
        scenario gets an index built here."""
        models = load_row_models(models_dir, row, bank.scenarios)
        indexes = None if indexes_dir is None else {
            s: load_index(indexes_dir / row / s / "index.faiss") for s in scenarios}
        return cls(models, bank, index_cfg, indexes)

    def top_scored(self, scenario: str, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, k), best first: what the index returns, its prior included; the cascade's
        pre-ranker reads the scores as a feature (rank.cascade)."""
        index = self.index_for(scenario)
        uv = embed_users(self.models[scenario], self.bank, scenario, self.bank.user_rows(user_ids))
        scores, ids = search(index, uv, k)
        return scores, ids.astype(np.int64)

    def top_items(self, scenario: str, user_ids: np.ndarray, k: int) -> np.ndarray:
        return self.top_scored(scenario, user_ids, k)[1]
