"""Retrieval + pre-ranker as one recommender: the cascade of seed 002, what the product serves with `rank` on.

Retrieval returns a scenario's top ``top_k`` by inner product; the pre-ranker (rank.model) rescores those
candidates with cross features (rank.features), the retrieval score among them, and the first ``k`` of the
new order are served. The evaluation protocol, the publish gate and `sass serve` all go through
:class:`CascadeRecommender`, so the served order is scored once, by the same code.

:class:`PairScorer` gives the retrieval score of any (user, video) pair, from the same serving vectors and
popularity prior the row's index holds: the pre-ranker's training rows (logged exposures, mostly outside a
user's retrieved top-K) need it for pairs the index never returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..models.bank import FeatureBank
from ..models.embed import embed_items, embed_users, serving_prior
from ..models.retrieval import RetrievalModel
from .features import RankStats, _find, feature_matrix
from .model import PreRanker


class ScoredRecommender(Protocol):
    def top_scored(self, scenario: str, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (n, k), best first; missing slots id -1, score -inf."""
        ...


class PairScorer:
    """score(user, video) in a scenario = <user vector, item vector> + the item's serving prior, as the
    scenario's index scores it. Vectors are computed once per scenario for every user and item of the bank;
    a user or video outside the bank scores 0 (the pre-ranker sees that as "no retrieval evidence")."""

    def __init__(self, models: dict[str, RetrievalModel], bank: FeatureBank) -> None:
        self.models, self.bank = models, bank
        self._users: dict[str, np.ndarray] = {}
        self._items: dict[str, np.ndarray] = {}

    def _vectors(self, scenario: str) -> tuple[np.ndarray, np.ndarray]:
        if scenario not in self._users:
            model, bank = self.models[scenario], self.bank
            all_items = np.arange(len(bank.item_ids))
            items = embed_items(model, bank, scenario, all_items)
            users = embed_users(model, bank, scenario, np.arange(len(bank.user_ids)))
            prior = serving_prior(model, bank, scenario, all_items)
            if prior is not None:   # the index's prior column, and the query's 1 that adds it
                items = np.hstack([items, prior[:, None]])
                users = np.hstack([users, np.ones((len(users), 1), np.float32)])
            self._users[scenario], self._items[scenario] = users, items
        return self._users[scenario], self._items[scenario]

    def __call__(self, scenario: str, users: np.ndarray, videos: np.ndarray) -> np.ndarray:
        uvec, ivec = self._vectors(scenario)
        urow = _find(self.bank.user_ids, np.asarray(users, np.int64))
        irow = _find(self.bank.item_ids, np.asarray(videos, np.int64))
        out = np.zeros(len(urow), np.float32)
        ok = (urow >= 0) & (irow >= 0)
        for start in range(0, int(ok.sum()), 1 << 16):   # bounded memory on million-row frames
            sel = np.flatnonzero(ok)[start:start + (1 << 16)]
            out[sel] = np.einsum("ij,ij->i", uvec[urow[sel]], ivec[irow[sel]])
        return out


@dataclass
class Reranker:
    """A trained pre-ranker with the window's statistics and the feature set it was trained on."""

    model: PreRanker
    stats: RankStats
    names: Sequence[str]

    def order(self, scenario: str, users: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(n, m) column order putting each row's candidate ids (-1 = none) in the pre-ranker's order, best
        first, -1 slots last."""
        n, m = ids.shape
        valid = ids >= 0
        if not valid.any():
            return np.broadcast_to(np.arange(m), (n, m)).copy()
        rows, cols = np.nonzero(valid)
        feats = feature_matrix(self.stats, scenario, np.asarray(users, np.int64)[rows], ids[rows, cols],
                               scores[rows, cols].astype(np.float32), self.names)
        logits = np.full((n, m), -np.inf, dtype=np.float64)
        logits[rows, cols] = self.model.score(feats, scenario)
        return np.argsort(-logits, axis=1, kind="stable")   # ties keep retrieval order; -inf (no id) last


class CascadeRecommender:
    """Retrieval's top ``top_k`` rescored by the pre-ranker; the Recommender protocol (evaluate.protocol).

    Asked for k items, it rescores max(top_k, k) candidates: the protocol asks for more than it keeps (it drops
    the user's training clicks afterwards), and every returned item must have been a candidate."""

    def __init__(self, base: ScoredRecommender, reranker: Reranker, top_k: int) -> None:
        self.base, self.reranker, self.top_k = base, reranker, int(top_k)

    def top_items(self, scenario: str, user_ids: np.ndarray, k: int) -> np.ndarray:
        return self.top_scored(scenario, user_ids, k)[1]

    def top_scored(self, scenario: str, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The served order with the retrieval scores it came with (a later stage, re-ranking, reads them)."""
        scores, ids = self.base.top_scored(scenario, user_ids, max(self.top_k, k))
        order = self.reranker.order(scenario, user_ids, ids, scores)
        return (np.take_along_axis(scores, order, axis=1)[:, :k], np.take_along_axis(ids, order, axis=1)[:, :k])
