"""The pre-ranker network (COLD): one field vector per feature, an SE block that weighs the fields, an MLP.

Each categorical feature is embedded (its code hashed into a fixed bucket count, so a new category never
crashes); each numeric feature is transformed (log1p for counts), standardised with a mean and std fitted
on the training rows and kept as buffers (so a saved model carries them), and projected to an emb_dim
field vector; the scenario has its own field. The squeeze-excitation block (as in COLD) squeezes each
field vector to its mean, learns a weight per field from all of them and rescales the fields: the mean of
these weights over rows is the importance the report shows and feature selection can rank by. The
reweighted fields go through the MLP to one click logit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .features import SPECS, validate_names

UNKNOWN_SCENARIO = "<unknown>"


@dataclass(frozen=True)
class RankModelConfig:
    """The network's shape (params: rank.emb_dim, rank.hidden)."""

    emb_dim: int = 8
    hidden: tuple[int, ...] = (64, 32)
    buckets: int = 1009          # rows of each categorical feature's hashed table (prime: codes spread evenly)
    se_reduction: int = 2        # the SE block's bottleneck is fields / se_reduction wide

    @classmethod
    def from_params(cls, params: Any) -> RankModelConfig:
        return cls(emb_dim=params.rank.emb_dim, hidden=tuple(params.rank.hidden))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankModelConfig:
        return cls(**{**d, "hidden": tuple(d["hidden"])})


class SEBlock(nn.Module):
    """Squeeze (mean of each field vector) -> excitation (two layers, sigmoid) -> one weight per field."""

    def __init__(self, fields: int, reduction: int) -> None:
        super().__init__()
        mid = max(1, fields // max(reduction, 1))
        self.net = nn.Sequential(nn.Linear(fields, mid), nn.ReLU(), nn.Linear(mid, fields), nn.Sigmoid())

    def forward(self, e: Tensor) -> Tensor:       # e: [n, fields, dim] -> weights [n, fields]
        return self.net(e.mean(dim=2))


@dataclass
class _Layout:
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)


class PreRanker(nn.Module):
    def __init__(self, names: Sequence[str], scenarios: Sequence[str], cfg: RankModelConfig) -> None:
        super().__init__()
        self.names = validate_names(names)
        if not self.names:
            raise ValueError("PreRanker: needs at least one feature")
        self.scenarios = [str(s) for s in scenarios]
        self.cfg = cfg
        self.layout = _Layout([n for n in self.names if SPECS[n].kind == "numeric"],
                              [n for n in self.names if SPECS[n].kind == "categorical"])
        self._scenario_index = {s: i for i, s in enumerate(self.scenarios)}
        d = cfg.emb_dim
        k = len(self.layout.numeric)
        self.register_buffer("num_mean", torch.zeros(k))
        self.register_buffer("num_std", torch.ones(k))
        self.register_buffer("num_log", torch.tensor([SPECS[n].log for n in self.layout.numeric], dtype=torch.bool))
        self.num_weight = nn.Parameter(torch.randn(k, d) * 0.1)
        self.num_bias = nn.Parameter(torch.zeros(k, d))
        built = [*self.layout.numeric, *self.layout.categorical]
        self.register_buffer("order", torch.tensor([built.index(n) for n in self.names]), persistent=False)
        self.cat_tables = nn.ModuleDict({n: nn.Embedding(cfg.buckets, d) for n in self.layout.categorical})
        for table in self.cat_tables.values():
            nn.init.normal_(table.weight, std=0.1)
        self.scenario_table = nn.Embedding(len(self.scenarios) + 1, d)    # the last row: a scenario not trained on
        nn.init.normal_(self.scenario_table.weight, std=0.1)
        self.fields = len(self.names) + 1
        self.se = SEBlock(self.fields, cfg.se_reduction)
        layers: list[nn.Module] = []
        width = self.fields * d
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    @property
    def field_names(self) -> list[str]:
        """The SE block's fields, in order: the features as given, then the scenario."""
        return [*self.names, "scenario"]

    # ---- inputs

    def scenario_index(self, scenarios: np.ndarray | Sequence[str] | str, n: int | None = None) -> Tensor:
        unknown = len(self.scenarios)
        if isinstance(scenarios, str):
            return torch.full((n or 0,), self._scenario_index.get(scenarios, unknown), dtype=torch.long)
        return torch.tensor([self._scenario_index.get(str(s), unknown) for s in scenarios], dtype=torch.long)

    def _numeric(self, features: dict[str, Tensor]) -> Tensor:
        x = torch.stack([features[n].float() for n in self.layout.numeric], dim=1)
        return torch.where(self.num_log, torch.log1p(x.clamp_min(0.0)), x)

    @torch.no_grad()
    def fit_normalisation(self, features: dict[str, np.ndarray]) -> None:
        """Fit the numeric features' mean and std on training rows (after log1p where a count)."""
        if not self.layout.numeric:
            return
        x = self._numeric({n: torch.from_numpy(np.array(features[n], dtype=np.float32)) for n in self.layout.numeric})
        self.num_mean.copy_(x.mean(dim=0))
        self.num_std.copy_(x.std(dim=0, unbiased=False).clamp_min(1e-6))

    # ---- the network

    def field_vectors(self, features: dict[str, Tensor], scenario_idx: Tensor) -> Tensor:
        parts = []
        if self.layout.numeric:
            z = (self._numeric(features) - self.num_mean) / self.num_std
            parts.append(z.unsqueeze(2) * self.num_weight + self.num_bias)
        for n in self.layout.categorical:
            codes = torch.remainder(features[n].long(), self.cfg.buckets)
            parts.append(self.cat_tables[n](codes).unsqueeze(1))
        e = torch.cat(parts, dim=1)[:, self.order]                          # the features in names order
        return torch.cat([e, self.scenario_table(scenario_idx).unsqueeze(1)], dim=1)    # [n, fields, dim]

    def forward(self, features: dict[str, Tensor], scenario_idx: Tensor) -> Tensor:
        e = self.field_vectors(features, scenario_idx)
        w = self.se(e)
        return self.mlp((e * w.unsqueeze(2)).flatten(1)).squeeze(1)

    # ---- numpy in, numpy out

    def _tensors(self, features: dict[str, np.ndarray]) -> dict[str, Tensor]:
        missing = [n for n in self.names if n not in features]
        if missing:
            raise KeyError(f"pre-ranker features: missing {', '.join(missing)}")
        return {n: torch.from_numpy(np.require(features[n], requirements=["C", "W"])) for n in self.names}

    @torch.no_grad()
    def score(self, features: dict[str, np.ndarray], scenario: str) -> np.ndarray:
        """Logits of one scenario's candidates (float32); no gradient, eval mode."""
        was = self.training
        self.eval()
        x = self._tensors(features)
        n = len(next(iter(x.values())))
        out = self(x, self.scenario_index(scenario, n)).numpy().astype(np.float32)
        self.train(was)
        return out

    @torch.no_grad()
    def field_weights(self, features: dict[str, np.ndarray], scenario: str) -> np.ndarray:
        """The SE block's mean weight per field (``field_names`` order: features, then the scenario)."""
        x = self._tensors(features)
        n = len(next(iter(x.values())))
        return self.se(self.field_vectors(x, self.scenario_index(scenario, n))).mean(dim=0).numpy()

    def field_weight_dict(self, features: dict[str, np.ndarray], scenario: str) -> dict[str, float]:
        return dict(zip(self.field_names, map(float, self.field_weights(features, scenario)), strict=True))


def save_ranker(model: PreRanker, folder: Path) -> None:
    """``ranker.pt`` (state_dict only: loads with weights_only) and ``ranker.json`` (what rebuilds the module)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "ranker.pt")
    meta = {"names": model.names, "scenarios": model.scenarios, "config": model.cfg.to_dict()}
    (folder / "ranker.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_ranker(folder: Path) -> PreRanker:
    folder = Path(folder)
    for f in ("ranker.json", "ranker.pt"):
        if not (folder / f).is_file():
            raise FileNotFoundError(f"{folder / f}: missing (the rank stage writes it)")
    meta = json.loads((folder / "ranker.json").read_text())
    model = PreRanker(meta["names"], meta["scenarios"], RankModelConfig.from_dict(meta["config"]))
    model.load_state_dict(torch.load(folder / "ranker.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model
