"""The scenario-adaptive transfer layer (docs/design.md, "Adaptive transfer at every layer").

    h'_s = act(W_s h_s,prev + b)                      the scenario's own layer
    a    = sigmoid(W_a [g ; h'_s ; b_s])              how much global information to transfer
    t    = a * g
    u    = sigmoid(W_u [t ; h'_s ; b_s])              how to fuse transferred and own signal
    h_s  = u * t + (1 - u) * h'_s

Gate kinds for ablations: "adaptive" (both gates), "sigmoid" (one sigmoid gate, additive fusion:
h_s = h'_s + a * g, the MoE-style transfer the SASS paper compares against) and "none" (no transfer:
h_s = h'_s, scenarios share only embeddings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GATE_KINDS = ("adaptive", "sigmoid", "none")


def fuse(g: torch.Tensor, h_own: torch.Tensor, a: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
    """The gate algebra alone, so the extremes can be tested without any weights."""
    t = a * g
    if u is None:
        return h_own + t
    return u * t + (1.0 - u) * h_own


class AdaptiveGates(nn.Module):
    def __init__(self, dim: int, bias_dim: int, kind: str = "adaptive", init_bias: float | None = None) -> None:
        """``init_bias`` > 0 opens both gates at the start (sigmoid(2) = 0.88): a scenario begins as
        the global network and keeps its own layers only where its data pull it there, the carry-gate
        initialisation of highway networks. None keeps PyTorch's default (gates about half open)."""
        super().__init__()
        if kind not in GATE_KINDS:
            raise ValueError(f"gate kind must be one of {GATE_KINDS}, got {kind!r}")
        self.kind = kind
        if kind != "none":
            self.adaptive = nn.Linear(2 * dim + bias_dim, dim)
            if init_bias is not None:
                nn.init.constant_(self.adaptive.bias, init_bias)
        if kind == "adaptive":
            self.update = nn.Linear(2 * dim + bias_dim, dim)
            if init_bias is not None:
                nn.init.constant_(self.update.bias, init_bias)

    def forward(self, g: torch.Tensor, h_own: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return h_own
        if self.kind == "sigmoid":
            a = torch.sigmoid(self.adaptive(torch.cat([g, h_own, b], dim=-1)))
            return fuse(g, h_own, a, None)
        # The same two gates as W_a [g ; h' ; b] and W_u [t ; h' ; b], with the [h' ; b] part of both
        # computed in one matmul: fewer, larger kernels for the layer the whole model runs six times.
        d = g.shape[-1]
        w_a, w_u = self.adaptive.weight, self.update.weight
        own = F.linear(torch.cat([h_own, b], dim=-1), torch.cat([w_a[:, d:], w_u[:, d:]], dim=0))
        a = torch.sigmoid(F.linear(g, w_a[:, :d], self.adaptive.bias) + own[:, :d])
        t = a * g
        u = torch.sigmoid(F.linear(t, w_u[:, :d], self.update.bias) + own[:, d:])
        return h_own + u * (t - h_own)       # = u * t + (1 - u) * h_own
