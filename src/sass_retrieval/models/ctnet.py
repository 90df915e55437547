"""CTNet for two-tower retrieval: continual transfer from a frozen source model (seed 004, arXiv 2208.05728).

A small scenario's model (the *target*, a plain two-tower) keeps its own parameters and, at every hidden
layer of each tower, reads the matching layer of the large scenario's daily-trained model (the *source*,
frozen) through a gated adapter:

    h_t,l  <-  h_t,l + (W_l h_s,l + b_l) * sigmoid(V_l h_s,l + c_l)

W_l and b_l start at zero, so on its first day the target is exactly its warm start (the source itself, or
yesterday's target) and the adapter only grows where the target's own clicks pull it. The source is never
updated by the target's loss: its forward runs without autograd and its parameters are frozen, so the
large scenario's knowledge arrives without its data and cannot be overwritten (the paper's "no forgetting").
Every day the source is the new daily source model, so the transfer is continual, not one-time.

The target's own tower weights can also be pulled toward where they started (``ctnet.anchor_l2``, the L2-SP
regulariser of Li et al. 2018, "Explicit Inductive Bias for Transfer Learning"): on its first day a target
starts as the source, and a small scenario's few clicks otherwise drag it away from what the source knew
within an epoch; on later days the anchor is yesterday's target, so a day's update cannot undo the last.

Two knobs bound what the adapters can learn from a small scenario's few clicks. ``adapter_lr`` scales their
learning rate against the towers' (Adam moves every weight at about the learning rate per step whatever its
gradient, so zero-started adapters otherwise grow as fast as the warm-started towers change).
``adapt_output=False`` leaves the last layer, the retrieval vector itself, without an adapter: the source
then reaches the target's vector only through its hidden layers, as in the paper, whose adapters sit on the
hidden layers of the CTR network and not on its output. That last adapter is then frozen at zero, so its
checkpoint serves identically by a model built with either value.

``emb_lr`` scales the learning rate of the target's own embedding tables (the hashed user, video and field
tables) against ``finetune.emb_lr``; 0 freezes them. A target warm-started from the source holds in those tables
what the large scenario's clicks taught about every user and video; trained at the full rate on a small
scenario's clicks alone, they move toward that scenario's few ids (discriminative fine-tuning, Howard & Ruder
2018: the transferred representation learns slower than what sits on top of it).

``source_view`` names the scenario the source is shown the target's rows as. A source trained on the largest
scenario alone never trained its other scenarios' embedding (the scenario is one of the towers' inputs), so
shown a small scenario's rows as they are it reads them with an untrained input and its hidden layers leave
the region they were trained in; shown them as its own scenario's, it reads them as it learned to. None: as
they are (a source trained on every scenario knows them all). For the same reason a target warm-started from
such a source starts with that scenario's embedding (train.ctnet.target_from_source).
"""

from __future__ import annotations

import torch
from torch import nn

from .retrieval import RetrievalModel


class GatedAdapter(nn.Module):
    """(W h_s + b) * sigmoid(V h_s + c), W and b zero at the start: a transfer that begins switched off."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.value = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim)
        nn.init.zeros_(self.value.weight)
        nn.init.zeros_(self.value.bias)

    def forward(self, h_source: torch.Tensor) -> torch.Tensor:
        return self.value(h_source) * torch.sigmoid(self.gate(h_source))


def mean_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over rows of ||a_i - b_i|| for unit vectors (0 identical, 2 opposite; 0.01 is about 0.6 degrees):
    linear in the angle, where 1 - cos would square a small one away. The measure of how far the adapters move
    a target (CTNet.adapter_effect) and of how far a source drifts between days (bench/ctnet.py)."""
    return float((a - b).norm(dim=-1).mean()) if len(a) else 0.0


def freeze(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


class CTNet(nn.Module):
    """A target two-tower with adapters over a frozen source two-tower; the model interface of
    :class:`RetrievalModel` (``user_vectors``/``item_vectors`` -> (serving vector, global vector)), so the one
    trainer, sampler, evaluation and index code serve it unchanged."""

    def __init__(self, source: RetrievalModel, target: RetrievalModel, adapter_lr: float = 1.0,
                 adapt_output: bool = True, source_view: str | None = None, emb_lr: float = 1.0) -> None:
        super().__init__()
        for name, m in (("source", source), ("target", target)):
            if m.cfg.arch != "dssm":
                raise ValueError(f"CTNet's {name} must be a plain two-tower (arch dssm), got {m.cfg.arch!r}")
        if (source.cfg.hidden, source.cfg.layers) != (target.cfg.hidden, target.cfg.layers):
            raise ValueError("CTNet's source and target towers must have the same hidden size and depth")
        self.cfg = target.cfg
        self.source = freeze(source)
        self.target = target
        self.user_adapters = nn.ModuleList(GatedAdapter(target.cfg.hidden) for _ in range(target.cfg.layers))
        self.item_adapters = nn.ModuleList(GatedAdapter(target.cfg.hidden) for _ in range(target.cfg.layers))
        self.adapter_lr = adapter_lr
        if emb_lr < 0:
            raise ValueError(f"CTNet's emb_lr (a multiple of finetune.emb_lr) must be >= 0, got {emb_lr}")
        self.emb_lr = emb_lr
        if emb_lr == 0:
            for p in self._tables():
                p.requires_grad_(False)   # frozen: no gradient is even computed for them
        if source_view is not None and source_view not in source.cfg.scenarios:
            raise ValueError(f"CTNet's source_view {source_view!r} is not one of the source's scenarios "
                             f"{source.cfg.scenarios}")
        self.source_view = source_view
        self._view_index = None if source_view is None else source.cfg.scenarios.index(source_view)
        self.adapted_layers = target.cfg.layers if adapt_output else target.cfg.layers - 1
        if not adapt_output:
            for adapters in (self.user_adapters, self.item_adapters):
                for p in adapters[-1].parameters():
                    p.requires_grad_(False)   # the value stays zero: this layer adds nothing, now or when served
        # the target's tower weights as it starts (its warm start): the L2-SP anchor, a plain dict so it is
        # neither trained nor saved (tomorrow's anchor is tomorrow's warm start)
        self.anchor = {n: p.detach().clone() for n, p in self._towers()}

    def _towers(self) -> list[tuple[str, nn.Parameter]]:
        """The target's dense tower parameters: what the anchor holds (the sparse embedding tables are left out:
        a penalty on a whole table would give every row a dense gradient every step)."""
        return [(n, p) for n, p in self.target.named_parameters() if n.split(".")[0] in ("user_tower", "item_tower")]

    def _tables(self) -> list[nn.Parameter]:
        """The target's sparse embedding tables (its hashed user, video and field ids)."""
        return [m.weight for m in self.target.modules() if isinstance(m, nn.Embedding) and m.sparse]

    def lr_scales(self) -> dict[int, float]:
        """id(parameter) -> its learning rate as a multiple of its optimiser's rate (train.loop.PairedOptimizer):
        the adapters' of the dense rate, the target's embedding tables' of the embedding rate."""
        scales = {id(p): self.adapter_lr for m in (self.user_adapters, self.item_adapters) for p in m.parameters()}
        return {**scales, **{id(p): self.emb_lr for p in self._tables()}}

    def train(self, mode: bool = True) -> CTNet:
        """The source stays in eval mode whatever the trainer asks: it is a fixed function of its inputs."""
        super().train(mode)
        self.source.eval()
        return self

    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False):
        """The target and the adapters: what this model learns, and what a CTNet checkpoint stores. The frozen
        source is a reference with its own checkpoint (train.checkpoint.save_ctnet). Left in, it doubled every
        copy of the state training makes (early stopping's best epochs) and every per-epoch resume checkpoint,
        which was what made a target dearer than dssm_single's model (docs/lab/ctnet.md, "Four seeds, the
        scenario-cold users, and the cost made plain")."""
        state = super().state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in [k for k in state if k.startswith(prefix + "source.")]:
            del state[key]
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load the target and the adapters (state_dict's keys); the source stays as it is, unless the state names
        its weights too."""
        full = {f"source.{k}": v for k, v in self.source.state_dict().items()}
        return super().load_state_dict({**full, **state_dict}, strict=strict, assign=assign)

    def _vectors(self, b: dict[str, torch.Tensor], side: str) -> tuple[torch.Tensor, torch.Tensor]:
        adapters = self.user_adapters if side == "user" else self.item_adapters
        src_tower = getattr(self.source, f"{side}_tower")
        tgt_tower = getattr(self.target, f"{side}_tower")
        seen = b if self._view_index is None else {**b, "scen": torch.full_like(b["scen"], self._view_index)}
        with torch.no_grad():
            # without an output adapter the source's last layer feeds nothing: it is not run
            hs = src_tower.global_layers(getattr(self.source, f"{side}_input")(seen), depth=self.adapted_layers)
        # the frozen output adapter (adapt_output=False) would add zeros: it is not run
        add = [a(h) for a, h in zip(adapters[:self.adapted_layers], hs, strict=True)]
        out = tgt_tower.global_layers(getattr(self.target, f"{side}_input")(b), add)[-1]
        e = nn.functional.normalize(out, dim=-1)
        return e, e

    @torch.no_grad()
    def adapter_effect(self, b: dict[str, torch.Tensor], side: str) -> float:
        """mean_distance between the served vectors of b's rows and the vectors with every adapter switched off:
        how far the source, through the adapters, moves what the target serves. It tells
        whether the transfer is continual in fact: if the adapters barely move the vectors, a refreshed source
        cannot change the target either, and continual transfer is one-time transfer with extra cost."""
        served = self._vectors(b, side)[0]
        tgt_tower = getattr(self.target, f"{side}_tower")
        own = nn.functional.normalize(tgt_tower.global_layers(getattr(self.target, f"{side}_input")(b))[-1], dim=-1)
        return mean_distance(served, own)

    def scenario_drift(self) -> torch.Tensor:
        """sum ||w - w_start||^2 over the target's tower weights: what the trainer's ``scenario_l2`` multiplies
        (train.finetune.with_scenario_l2); train.ctnet sets that strength from ``ctnet.anchor_l2``."""
        return torch.stack([(p - self.anchor[n]).square().sum() for n, p in self._towers()]).sum()

    def user_vectors(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self._vectors(b, "user")

    def item_vectors(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self._vectors(b, "item")
