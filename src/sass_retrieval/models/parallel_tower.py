"""The parallel two-tower (QQ Browser; seed 003): MLP, DCN and FM towers side by side on each side, fused linearly.

Each kind of tower crosses the input fields differently: the MLP implicitly, the cross network (DCN) by explicit
bounded-degree products of the input with itself, the FM tower by the inner product of summed field projections.
Run in parallel they make up for one another's losses before the final inner product. The pairs are fused by a
linear layer over their inner products, score = sum_k w_k <u_k, i_k>, and the weights fold into the query:
score = <concat_k(w_k u_k), concat_k(i_k)>, so one inner-product index of the concatenated item vectors serves
the fused model (RetrievalModel.user_vectors applies the weights on the user side only). The index wants unit item
vectors (index.faiss_index), so the item side is concat_k(i_k) / sqrt(K) and the query sqrt(K) concat_k(w_k u_k):
the same inner product.

The fusion weights are a softmax over learned logits: with every sub-vector of unit length the fused score stays
in [-1, 1] like the plain two-tower's cosine, so ``finetune.temperature`` means what it means for dssm (free
weights would learn the temperature instead of the ranking).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("mlp", "dcn", "fm")


class CrossNetwork(nn.Module):
    """DCN-v2's cross layers, x_{l+1} = x_0 * (W_l x_l + b_l) + x_l: layer l holds every product of the input
    columns up to degree l + 1, at full-rank weights."""

    def __init__(self, d_in: int, depth: int) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"a cross network needs at least one layer, got depth {depth}")
        self.layers = nn.ModuleList(nn.Linear(d_in, d_in) for _ in range(depth))
        for layer in self.layers:   # start close to the identity: the products grow in as they help
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class ParallelTower(nn.Module):
    """One side's three towers; returns their (rows, 3, hidden) unit vectors in ``KINDS`` order.

    - ``mlp``: the plain two-tower's network (``global_net``, the same layers as models.tower.Tower's dssm);
    - ``dcn``: a cross network of ``dcn_depth`` layers, then a linear map to ``hidden``;
    - ``fm``: sum_f P_f e_f, every field's embedding projected to ``hidden`` and summed, so that
      <u_fm, i_fm> = sum over user field f and item field g of <P_f e_f, Q_g e_g>: FM's user x item cross terms
      (with field-pair projections). The sum of per-field projections of the concatenated fields is one linear map
      of the input, which is how it is computed. FM's within-side terms are constant for a user (they do not
      change its ranking) and are a per-item bias on the item side, which an inner-product index has no place
      for: they are left out.
    """

    def __init__(self, d_in: int, hidden: int, layers: int, dcn_depth: int, dropout: float = 0.0) -> None:
        super().__init__()
        dims = [d_in] + [hidden] * layers
        self.layers_n = layers
        self.global_net = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.cross = CrossNetwork(d_in, dcn_depth)
        self.cross_out = nn.Linear(d_in, hidden)
        self.fm = nn.Linear(d_in, hidden, bias=False)

    def scenario_drift(self) -> torch.Tensor:
        return self.fm.weight.new_zeros(())

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.global_net):
            x = layer(x)
            if i < self.layers_n - 1:   # the last layer stays linear, as in models.tower.Tower
                x = self.dropout(F.relu(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = (self.mlp(x), self.cross_out(self.cross(x)), self.fm(x))
        return F.normalize(torch.stack(parts, dim=1), dim=-1)


def fold_user(parts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(rows, K, d) user sub-vectors -> (rows, K*d) sqrt(K) concat_k(w_k u_k): the query scoring the fused model."""
    return (parts * weights[None, :, None]).flatten(1) * math.sqrt(parts.shape[1])


def fold_item(parts: torch.Tensor) -> torch.Tensor:
    """(rows, K, d) unit item sub-vectors -> the (rows, K*d) unit-length index vector concat_k(i_k) / sqrt(K)."""
    return parts.flatten(1) / math.sqrt(parts.shape[1])


def fused_score(user_parts: torch.Tensor, item_parts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(users, items) sum_k w_k <u_k, i_k>: the fused model's score computed pair by pair, as the fusion layer
    defines it (what the folded inner product must equal)."""
    return torch.einsum("k,ukd,ikd->ui", weights, user_parts, item_parts)
