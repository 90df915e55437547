"""One tower (user or item) of the retrieval model.

``arch="sass"``: a global network shared by all scenarios, one network per scenario, a scenario bias
network, and the adaptive transfer at every layer. ``arch="dssm"``: the global network alone, the
plain two-tower baseline; both return (scenario vector, global vector) so one trainer serves both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .transfer import AdaptiveGates


class ScenarioLinear(nn.Module):
    """One linear layer per scenario, applied row-wise by each row's scenario index."""

    def __init__(self, n_scenarios: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out) for _ in range(n_scenarios))

    def forward(self, x: torch.Tensor, scen: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(x.shape[0], self.layers[0].out_features)
        for s in torch.unique(scen).tolist():
            rows = (scen == s).nonzero(as_tuple=True)[0]
            out[rows] = self.layers[s](x[rows])
        return out


class Tower(nn.Module):
    def __init__(self, d_in: int, n_scenarios: int, bias_in: int, hidden: int = 128, layers: int = 3,
                 arch: str = "sass", gate: str = "adaptive", bias_net: bool = True, bias_dim: int = 16,
                 dropout: float = 0.0, gate_bias: float | None = None) -> None:
        super().__init__()
        if arch not in ("sass", "dssm"):
            raise ValueError(f"arch must be 'sass' or 'dssm', got {arch!r}")
        if layers < 1:
            raise ValueError("a tower needs at least one layer")
        self.arch, self.layers_n, self.use_bias = arch, layers, bias_net and arch == "sass"
        dims = [d_in] + [hidden] * layers
        self.global_net = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.bias_dim = bias_dim
        if arch == "sass":
            self.scenario_net = nn.ModuleList(ScenarioLinear(n_scenarios, dims[i], dims[i + 1]) for i in range(layers))
            self.gates = nn.ModuleList(AdaptiveGates(hidden, bias_dim, gate, gate_bias) for _ in range(layers))
            if self.use_bias:
                self.scenario_emb = nn.Embedding(n_scenarios, bias_dim)
                self.bias_net = nn.Sequential(nn.Linear(bias_dim + bias_in, bias_dim), nn.ReLU(),
                                              nn.Linear(bias_dim, bias_dim))
                self.bias_proj = nn.Linear(bias_dim, hidden, bias=False)

    def _act(self, i: int, x: torch.Tensor) -> torch.Tensor:
        # The last layer stays linear so the output vectors are not confined to the positive orthant.
        return x if i == self.layers_n - 1 else self.dropout(F.relu(x))

    def forward(self, x: torch.Tensor, scen: torch.Tensor, bias_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = x
        if self.arch == "dssm":
            for i, layer in enumerate(self.global_net):
                g = self._act(i, layer(g))
            e = F.normalize(g, dim=-1)
            return e, e
        if self.use_bias:
            b = self.bias_net(torch.cat([self.scenario_emb(scen), bias_x], dim=-1))
        else:
            b = x.new_zeros(x.shape[0], self.bias_dim)
        h = x
        for i in range(self.layers_n):
            g = self._act(i, self.global_net[i](g))
            h_own = self._act(i, self.scenario_net[i](h, scen))
            h = self.gates[i](g, h_own, b)
        if self.use_bias:
            h = h + self.bias_proj(b)
        return F.normalize(h, dim=-1), F.normalize(g, dim=-1)
