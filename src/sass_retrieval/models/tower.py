"""One tower (user or item) of the retrieval model.

``arch="sass"``: a global network shared by all scenarios, one network per scenario, a scenario bias
network, and the adaptive transfer at every layer. ``arch="dssm"``: the global network alone, the
plain two-tower baseline. ``arch="star"``: STAR alone (Sheng et al. 2021), ONE network whose every layer is
the shared layer adapted per scenario (W ⊙ M_s, b + c_s), plus the scenario bias network: one network's
arithmetic instead of sass's two networks and gates, but one GEMM per scenario and layer. ``arch="pepnet"``:
ONE network whose input and hidden units are scaled per row by gates read from the scenario bias vector and the
row's features (PEPNet, models.pepnet): no per-scenario weights at all. Every arch returns (scenario vector,
global vector) so one trainer serves all; dssm, star and pepnet return the same vector twice.

The plain two-tower's variants (seed 003; docs/design.md, "Gates and tower variants") are dssm's global network
too: ``arch="senet"`` puts a squeeze-excitation block over the input fields before it (models.senet; the tower
needs ``field_widths``), ``arch="dat"`` is dssm here and differs by its input (the augment vectors
models.retrieval appends, models.dat). ``arch="parallel"`` is not this class: models.parallel_tower.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .pepnet import GateNU
from .senet import FieldSE
from .transfer import AdaptiveGates

ARCHS = ("sass", "dssm", "star", "pepnet", "senet", "dat")
PLAIN = ("dssm", "senet", "dat")   # the global network alone: no scenario layers, no scenario bias network


def scenario_blocks(scen: torch.Tensor, n_scenarios: int) -> tuple[torch.Tensor | None, list[int]]:
    """The permutation that sorts rows by scenario (None when they already are) and the rows per scenario:
    what :func:`segmented_linear` needs. Computed once per tower call, not per layer."""
    order = torch.argsort(scen, stable=True)
    already = bool((order[1:] > order[:-1]).all()) if len(order) > 1 else True
    counts = torch.bincount(scen, minlength=n_scenarios).tolist()
    return (None if already else order), counts


def unsort(order: torch.Tensor | None, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Rows computed in ``scenario_blocks`` order, back in the caller's order."""
    if order is None:
        return tensors
    inverse = torch.empty_like(order).index_copy_(0, order, torch.arange(len(order), device=order.device))
    return tuple(t[inverse] for t in tensors)


def segmented_linear(x: torch.Tensor, counts: list[int], w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row i gets ``w[s] @ x[i] + b[s]`` for its scenario s, rows sorted by scenario (``counts[s]`` of scenario s).

    Each scenario's rows are a contiguous view, so a scenario costs one ``addmm`` on exactly its rows. This
    replaced a zero-padded ``(S, max rows, d_in)`` ``baddbmm``: padding to the largest scenario roughly doubled
    the item tower's work (its batch is ~1/3 one scenario), and the scatter into the padded buffer and the
    gather back were paid at every layer. The tower sorts its rows once per forward (scenario_blocks) and
    restores their order once (unsort).
    """
    parts = [torch.addmm(b[s], chunk, w[s].T) for s, chunk in enumerate(x.split(counts)) if counts[s]]
    if not parts:
        return x.new_zeros(0, w.shape[1])
    return torch.cat(parts) if len(parts) > 1 else parts[0]


class ScenarioLinear(nn.Module):
    """One linear layer per scenario, every scenario's rows in one contiguous block (segmented_linear).

    ``mode`` chooses how a scenario's weight is formed (docs/design.md, "Gates and tower variants"; these are
    the scenario layer's parameterisations bench/ablations.py compares):

    - ``full``: W_s free, independently initialised (one full copy per scenario).
    - ``star``: W_s = W ⊙ M_s, b_s = b + c_s (STAR, Sheng et al. 2021) with M_s = 1 and c_s = 0 at the start:
      every scenario starts as the shared layer ``shared`` (the matching global layer) and moves away
      from it only where its own data pull it.
    - ``lowrank``: W_s = W + U_s V_s with rank ``rank`` and U_s = 0 at the start: again every scenario starts as
      the shared layer; a scenario can only move in ``rank`` directions (a regulariser for sparse scenarios),
      and the layer costs one shared GEMM plus two thin ones instead of S full ones.
    """

    MODES = ("full", "star", "lowrank")

    def __init__(self, n_scenarios: int, d_in: int, d_out: int, mode: str = "full",
                 shared: nn.Linear | None = None, rank: int = 8) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"scenario layer mode must be one of {self.MODES}, got {mode!r}")
        if mode in ("star", "lowrank") and (shared is None or shared.weight.shape != (d_out, d_in)):
            raise ValueError(f"mode {mode!r} needs the shared layer of the same shape")
        self.mode, self.n_scenarios, self.d_in, self.out_features = mode, n_scenarios, d_in, d_out
        self.shared = [shared]  # a plain list: the shared layer is owned (and saved) by the global network
        if mode == "full":
            w = torch.empty(n_scenarios, d_out, d_in)
            b = torch.empty(n_scenarios, d_out)
            for s in range(n_scenarios):  # nn.Linear's own initialisation, per scenario
                nn.init.kaiming_uniform_(w[s], a=math.sqrt(5))
                nn.init.uniform_(b[s], -1 / math.sqrt(d_in), 1 / math.sqrt(d_in))
        elif mode == "star":
            w = torch.ones(n_scenarios, d_out, d_in)
            b = torch.zeros(n_scenarios, d_out)
        else:
            w = torch.zeros(n_scenarios, d_out, rank)                    # U_s: zero, the layer starts shared
            b = torch.zeros(n_scenarios, d_out)
            self.down = nn.Parameter(torch.randn(n_scenarios, rank, d_in) / math.sqrt(d_in))   # V_s
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(b)
        self.rank = rank

    def scenario_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, d_out, d_in) weights and (S, d_out) biases as they act on the rows."""
        if self.mode == "full":
            return self.weight, self.bias
        base = self.shared[0]
        if self.mode == "star":
            return base.weight.unsqueeze(0) * self.weight, base.bias.unsqueeze(0) + self.bias
        return base.weight.unsqueeze(0) + self.weight @ self.down, base.bias.unsqueeze(0) + self.bias

    def drift(self) -> torch.Tensor:
        """Squared distance of every scenario's effective layer from the shared one, summed over scenarios:
        sum_s ||W_s - W||^2 + ||b_s - b||^2 (``finetune.scenario_l2`` penalises it, train.finetune.batch_loss).

        The shared layer enters detached: the penalty pulls a scenario's own parameters toward the global
        network (the prior a sparse scenario should fall back to), not the global network toward zero. It is
        taken on the effective weights, not on the raw M_s or U_s, so one strength means the same in every mode."""
        base_w, base_b = self.shared[0].weight.detach(), self.shared[0].bias.detach()
        if self.mode == "full":
            dw, db = self.weight - base_w, self.bias - base_b
        elif self.mode == "star":
            dw, db = base_w * (self.weight - 1.0), self.bias
        else:
            dw, db = self.weight @ self.down, self.bias
        return dw.square().sum() + db.square().sum()

    def forward(self, x: torch.Tensor, scen: torch.Tensor, counts: list[int] | None = None) -> torch.Tensor:
        """``counts``: the rows are already sorted by scenario, ``counts[s]`` of scenario s (the tower sorts once
        for all its layers); without it the layer sorts and restores the rows itself."""
        if self.mode == "lowrank":
            base = self.shared[0]
            r, s = self.rank, self.n_scenarios
            z = (x @ self.down.reshape(s * r, self.d_in).T).view(-1, s, r)          # every V_s x: one thin GEMM
            own = torch.nn.functional.one_hot(scen, s).to(x.dtype).unsqueeze(-1)     # keep the row's scenario
            up = (z * own).reshape(-1, s * r) @ self.weight.transpose(1, 2).reshape(s * r, -1)   # U_s (V_s x)
            return base(x) + up + self.bias[scen]
        w, b = self.scenario_weights()
        if counts is not None:
            return segmented_linear(x, counts, w, b)
        order, counts = scenario_blocks(scen, self.n_scenarios)
        return unsort(order, segmented_linear(x if order is None else x[order], counts, w, b))[0]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # checkpoints written before the batched layer hold one nn.Linear per scenario (layers.<s>.*)
        old = [k for k in state_dict if k.startswith(prefix + "layers.")]
        if old and prefix + "weight" not in state_dict:
            n = 1 + max(int(k[len(prefix) + 7:].split(".")[0]) for k in old)
            state_dict[prefix + "weight"] = torch.stack([state_dict.pop(f"{prefix}layers.{i}.weight") for i in range(n)])
            state_dict[prefix + "bias"] = torch.stack([state_dict.pop(f"{prefix}layers.{i}.bias") for i in range(n)])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class PartitionedNorm(nn.Module):
    """STAR's partitioned normalisation (Sheng et al. 2021): every input feature normalised with batch statistics
    (running statistics at serving, as batch norm), then scaled and shifted by (gamma * gamma_s, beta + beta_s),
    shared parameters combined with the row's scenario's, gamma_s = 1 and beta_s = 0 at the start.

    Why: the tower input mixes embeddings (std ~0.05) with per-scenario count statistics whose scale differs by
    orders of magnitude between a large and a small scenario; one shared normalisation with a scenario's own
    scale and shift lets each scenario read the features on its own scale."""

    def __init__(self, n_scenarios: int, dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.gamma_s = nn.Parameter(torch.ones(n_scenarios, dim))
        self.beta_s = nn.Parameter(torch.zeros(n_scenarios, dim))

    def forward(self, x: torch.Tensor, scen: torch.Tensor) -> torch.Tensor:
        z = self.norm(x) if x.shape[0] > 1 or not self.training else x   # one training row has no batch statistics
        return z * (self.gamma * self.gamma_s[scen]) + (self.beta + self.beta_s[scen])


class Tower(nn.Module):
    def __init__(self, d_in: int, n_scenarios: int, bias_in: int, hidden: int = 128, layers: int = 3,
                 arch: str = "sass", gate: str = "adaptive", bias_net: bool = True, bias_dim: int = 16,
                 dropout: float = 0.0, gate_bias: float | None = None, scenario_layer: str = "full",
                 residual: bool = False, scenario_norm: bool = False,
                 field_widths: list[int] | None = None) -> None:
        """``scenario_layer``: how each scenario's layers are parameterised (see ScenarioLinear).
        ``residual``: the serving vector is normalize(g_L + h_s,L + P b_s) instead of
        normalize(h_s,L + P b_s), so the global vector reaches the scenario vector unchanged even where
        the gates have learnt little (small scenarios) and the scenario path only has to learn a correction.
        ``scenario_norm``: the input passes a PartitionedNorm first (sass and star: it is scenario-specific).
        ``arch="star"`` reads neither ``gate`` nor ``residual`` (it has no global vector) and always uses STAR
        layers whatever ``scenario_layer`` says; ``arch="pepnet"`` reads none of ``gate``, ``residual``,
        ``scenario_layer`` and ``scenario_norm`` (its gates are PEPNet's, its weights all shared).
        ``field_widths``: the widths of the input's consecutive fields, which ``arch="senet"`` reweights."""
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        if layers < 1:
            raise ValueError("a tower needs at least one layer")
        self.arch, self.layers_n, self.use_bias = arch, layers, bias_net and arch not in PLAIN
        self.residual = residual
        dims = [d_in] + [hidden] * layers
        self.global_net = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.bias_dim = bias_dim
        if arch == "pepnet":   # the gates read [b_s ; stop_grad(x)] and scale the input of every layer
            self.gate_net = GateNU(bias_dim + d_in, dims[:-1], hidden)
        if arch == "senet":
            if field_widths is None or sum(field_widths) != d_in:
                raise ValueError(f"arch senet needs field_widths summing to the input width {d_in}, got {field_widths}")
            self.field_se = FieldSE(field_widths)
        if arch not in (*PLAIN, "pepnet"):
            # star: the scenario layers ARE the network (always STAR's W ⊙ M_s: a "full" copy would share nothing)
            mode = "star" if arch == "star" else scenario_layer
            self.scenario_net = nn.ModuleList(ScenarioLinear(n_scenarios, dims[i], dims[i + 1], mode, self.global_net[i]) for i in range(layers))
            if arch == "sass":
                self.gates = nn.ModuleList(AdaptiveGates(hidden, bias_dim, gate, gate_bias) for _ in range(layers))
            self.input_norm = PartitionedNorm(n_scenarios, d_in) if scenario_norm else None
        if self.use_bias:
            self.scenario_emb = nn.Embedding(n_scenarios, bias_dim)
            self.bias_net = nn.Sequential(nn.Linear(bias_dim + bias_in, bias_dim), nn.ReLU(),
                                          nn.Linear(bias_dim, bias_dim))
            self.bias_proj = nn.Linear(bias_dim, hidden, bias=False)

    def scenario_drift(self) -> torch.Tensor:
        """How far the scenario layers have moved from the global ones (ScenarioLinear.drift); 0 for dssm and
        pepnet, which have no scenario layers (nor have dssm's variants)."""
        if self.arch in (*PLAIN, "pepnet"):
            return self.global_net[0].weight.new_zeros(())
        return torch.stack([layer.drift() for layer in self.scenario_net]).sum()

    def _act(self, i: int, x: torch.Tensor) -> torch.Tensor:
        # The last layer stays linear so the output vectors are not confined to the positive orthant.
        return x if i == self.layers_n - 1 else self.dropout(F.relu(x))

    def global_layers(self, x: torch.Tensor, add: list[torch.Tensor] | None = None,
                      depth: int | None = None) -> list[torch.Tensor]:
        """Every layer's output of the global network (the last one before normalisation).

        ``add[i]`` is added to layer i's output before the next layer reads it: the hook through which a
        CTNet target tower receives its frozen source tower's signal (models.ctnet). Layers past the end of
        ``add`` receive nothing (a CTNet without an adapter on its output layer). ``depth``: only the first
        ``depth`` layers are run (a CTNet source whose last layer no adapter reads)."""
        outs, g = [], x
        for i, layer in enumerate(self.global_net[:depth]):
            g = self._act(i, layer(g))
            if add is not None and i < len(add):
                g = g + add[i]
            outs.append(g)
        return outs

    def scenario_bias(self, scen: torch.Tensor, bias_x: torch.Tensor) -> torch.Tensor:
        """b_s: the scenario bias network's vector for each row (zeros without a bias network)."""
        if self.use_bias:
            return self.bias_net(torch.cat([self.scenario_emb(scen), bias_x], dim=-1))
        return bias_x.new_zeros(bias_x.shape[0], self.bias_dim)

    def _pepnet(self, x: torch.Tensor, scen: torch.Tensor, bias_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The global network with every layer's input scaled by its PEPNet gate; row-wise, so no sorting."""
        b = self.scenario_bias(scen, bias_x)
        deltas = self.gate_net(torch.cat([b, x.detach()], dim=-1))
        h = x
        for i, layer in enumerate(self.global_net):
            h = self._act(i, layer(h * deltas[i]))
        if self.use_bias:
            h = h + self.bias_proj(b)
        h = F.normalize(h, dim=-1)
        return h, h

    def forward(self, x: torch.Tensor, scen: torch.Tensor, bias_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.arch in PLAIN:
            if self.arch == "senet":
                x = self.field_se(x)
            e = F.normalize(self.global_layers(x)[-1], dim=-1)
            return e, e
        if self.arch == "pepnet":
            return self._pepnet(x, scen, bias_x)
        # Sort the rows by scenario once, so every scenario layer works on contiguous row blocks, and
        # restore the caller's order once at the end (the whole tower is row-wise, so the order is free).
        order, counts = scenario_blocks(scen, self.scenario_net[0].n_scenarios)
        if order is not None:
            x, scen, bias_x = x[order], scen[order], bias_x[order]
        b = self.scenario_bias(scen, bias_x)
        if self.input_norm is not None:
            x = self.input_norm(x, scen)
        if self.arch == "star":   # one network: each layer the shared one adapted to the row's scenario
            h = x
            for i in range(self.layers_n):
                h = self._act(i, self.scenario_net[i](h, scen, counts))
            if self.use_bias:
                h = h + self.bias_proj(b)
            (h,) = unsort(order, F.normalize(h, dim=-1))
            return h, h
        g = h = x
        for i in range(self.layers_n):
            g = self._act(i, self.global_net[i](g))
            h_own = self._act(i, self.scenario_net[i](h, scen, counts))
            h = self.gates[i](g, h_own, b)
        if self.use_bias:
            h = h + self.bias_proj(b)
        if self.residual:
            h = h + g
        h, g = unsort(order, F.normalize(h, dim=-1), F.normalize(g, dim=-1))
        return h, g
