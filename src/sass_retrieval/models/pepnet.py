"""PEPNet's gates (Chang et al., KDD 2023, "PEPNet: Parameter and Embedding Personalized Network"), for one tower.

PEPNet adapts ONE network to a domain (here a scenario) and a user by scaling, not by copying weights:

    Gate NU:  delta = gamma * sigmoid(W2 relu(W1 c + b1) + b2),  gamma = 2
    EPNet:    x'    = delta_0 ⊗ x                      the tower input, scaled per row
    PPNet:    H_l   = delta_l ⊗ H_l                    every later layer's input, scaled per row

with the condition c = [scenario bias vector b_s ; stop_gradient(x)]: the scenario's own embedding and its
statistics of the user or item (the scenario bias network's output) beside the row's features, whose
gradient is stopped so the gates read the features without pulling the embeddings toward what suits the
gates (the paper's ∅(E)).

Why this tower: a scenario and a user's standing in it (a user with two clicks in a small tab, a heavy user
of the main tab) change how much each input feature and hidden unit should count, which is what the gates
learn, while every scenario trains the one network's weights: the small scenarios borrow all of the large
one's layers. Its cost is one network plus the gates, not sass's two networks and six gates nor STAR's one
GEMM per scenario and layer.

One simplification of the paper, for speed: its Gate NUs have one hidden layer each; here the EPNet and PPNet
gates share theirs (W1: one matmul for every gate), and their output layers are one matmul whose columns are
split per gate. W2 and b2 start at zero, so every delta starts at exactly 1 and the tower starts as the plain
network (as STAR's masks start at 1).
"""

from __future__ import annotations

import torch
from torch import nn

GAMMA = 2.0   # the paper's scale: a gate can double a unit or switch it off


class GateNU(nn.Module):
    """Every gate of one tower: ``widths[l]`` scales for the input of layer l, from one shared hidden layer."""

    def __init__(self, cond_dim: int, widths: list[int], hidden: int) -> None:
        super().__init__()
        self.widths = list(widths)
        self.hidden = nn.Linear(cond_dim, hidden)
        self.out = nn.Linear(hidden, sum(widths))
        nn.init.zeros_(self.out.weight)    # delta = 2 sigmoid(0) = 1: the tower starts as the plain network
        nn.init.zeros_(self.out.bias)

    def forward(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """One (rows, widths[l]) scale per gated layer, each in (0, GAMMA)."""
        delta = GAMMA * torch.sigmoid(self.out(torch.relu(self.hidden(cond))))
        return list(delta.split(self.widths, dim=-1))
