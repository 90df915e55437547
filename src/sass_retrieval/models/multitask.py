"""Multi-objective retrieval with per-request weights (seeds 001 and 002): one head per objective on top of
any row's towers, served from ONE index per scenario.

For objectives k = 1..K (click, long view, like: ``data.schema.OBJECTIVES``) each side gets a small projection of
the tower's scenario vector, normalised: ``u_k = normalize(P_k u)``, ``v_k = normalize(Q_k v)``. Training scores
objective k by ``<u_k, v_k>``. Serving a weight vector w (a request's trade-off, no retraining):

    user vector  = concat(w_1 u_1, ..., w_K u_K)
    item vector  = concat(v_1, ..., v_K) / sqrt(K)

so one inner product is ``sum_k w_k <u_k, v_k> / sqrt(K)``: the weighted sum of the objectives' scores, scaled by
a constant that no ranking sees. The item vector has unit length (each v_k has), so it goes into the same
normalised-inner-product FAISS index as every other row's vectors; the user vector does not need unit length
(a query's norm scales all of its scores alike). One index per scenario serves every w.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .retrieval import RetrievalModel


def parse_weights(text: str | Mapping[str, float] | None, objectives: Sequence[str]) -> dict[str, float]:
    """``"click=1,long_view=0.5"`` (or a mapping) -> a weight for every objective, 0 for the unnamed ones.

    An unknown objective, a non-number or a negative weight is refused with one line naming it: a negative
    weight would rank what the user is least likely to do first, and a typo would silently weigh 0."""
    if text is None or text == "":
        raise ValueError(f"weights: at least one of {list(objectives)} needs a weight, e.g. click=1,long_view=0.5")
    items = text.items() if isinstance(text, Mapping) else [part.partition("=")[::2] for part in text.split(",")]
    out = dict.fromkeys(objectives, 0.0)
    for name, value in items:
        name = str(name).strip()
        if name not in out:
            raise ValueError(f"weights: unknown objective {name!r}; known: {list(objectives)}")
        try:
            w = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"weights: {name}={value!r} is not a number") from None
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"weights: {name}={w} must be a finite number >= 0")
        out[name] = w
    if not any(out.values()):
        raise ValueError(f"weights: every weight is 0; give at least one of {list(objectives)} a positive weight")
    return out


def weighted_user_vector(per_objective: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(n, K, d) per-objective user vectors and (K,) or (n, K) weights -> the (n, K*d) serving query."""
    w = weights if weights.dim() == 2 else weights.unsqueeze(0)
    return (per_objective * w.unsqueeze(-1)).flatten(1)


def item_serving_vector(per_objective: torch.Tensor) -> torch.Tensor:
    """(n, K, d) per-objective unit item vectors -> the (n, K*d) unit-length index vector."""
    return per_objective.flatten(1) / math.sqrt(per_objective.shape[1])


class MultiTaskModel(nn.Module):
    """A row's model (``base``) with one projection per objective on each side.

    ``user_vectors``/``item_vectors`` return the serving vectors at the model's current ``weights`` (a buffer, so
    the evaluation, index and serving paths that call them work unchanged): the item side never depends on the
    weights, so an index built once serves every weighting. ``objective_vectors`` gives training the (n, K, d)
    per-objective vectors of the scenario path and of the global path (the base's auxiliary loss).
    """

    def __init__(self, base: RetrievalModel, objectives: Sequence[str], head_dim: int,
                 weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if not objectives:
            raise ValueError("a multi-task model needs at least one objective")
        self.base, self.objectives, self.head_dim = base, list(objectives), int(head_dim)
        d, k = base.serving_dim, len(self.objectives)   # parallel towers: one hidden per kind
        # one (K*h, d) matrix per side: every objective's projection in one matmul
        self.user_heads = nn.Linear(d, k * self.head_dim, bias=False)
        self.item_heads = nn.Linear(d, k * self.head_dim, bias=False)
        w = parse_weights(dict(weights) if weights else {self.objectives[0]: 1.0}, self.objectives)
        self.register_buffer("weights", torch.tensor([w[o] for o in self.objectives], dtype=torch.float32))

    @property
    def cfg(self):  # the base's shape: what the index, evaluation and checkpoint code read
        return self.base.cfg

    @property
    def serving_dim(self) -> int:
        return len(self.objectives) * self.head_dim

    def spec(self) -> dict:
        """What a checkpoint's manifest records to rebuild this model around its towers (train.checkpoint)."""
        return {"objectives": self.objectives, "head_dim": self.head_dim,
                "weights": dict(zip(self.objectives, self.weights.tolist(), strict=True))}

    def set_weights(self, weights: str | Mapping[str, float]) -> dict[str, float]:
        w = parse_weights(weights, self.objectives)
        self.weights.copy_(torch.tensor([w[o] for o in self.objectives], dtype=torch.float32))
        return w

    def _heads(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(layer(x).view(x.shape[0], len(self.objectives), self.head_dim), dim=-1)

    def objective_vectors(self, b: dict[str, torch.Tensor], side: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, K, h) per-objective vectors of the scenario path and of the global path of one side."""
        if side == "user":
            s, g = self.base.user_vectors(b)
            layer = self.user_heads
        else:
            s, g = self.base.item_vectors(b)
            layer = self.item_heads
        hs = self._heads(layer, s)
        return hs, (hs if g is s else self._heads(layer, g))

    def scenario_drift(self) -> torch.Tensor:
        return self.base.scenario_drift()

    def user_vectors(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        hs, hg = self.objective_vectors(b, "user")
        return weighted_user_vector(hs, self.weights), weighted_user_vector(hg, self.weights)

    def item_vectors(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        hs, hg = self.objective_vectors(b, "item")
        return item_serving_vector(hs), item_serving_vector(hg)


@contextmanager
def weighted(models: Iterable[MultiTaskModel], weights: str | Mapping[str, float]) -> Iterator[None]:
    """Every distinct model of a row at these serving weights, restored afterwards.

    A row's models are per scenario, and a scenario that keeps its own epoch (finetune.own_epoch_min_clicks)
    has a model of its own beside the shared one: setting the weights on one of them left the others at
    their defaults, so an evaluation "at long_view weight alone" scored most tabs at the default mix."""
    distinct = list({id(m): m for m in models}.values())
    saved = [m.weights.clone() for m in distinct]
    try:
        for m in distinct:
            m.set_weights(weights)
        yield
    finally:
        for m, w in zip(distinct, saved, strict=True):
            m.weights.copy_(w)
