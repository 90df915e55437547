"""The two-tower retrieval model: shared hashed embeddings feeding a user tower and an item tower.

The video-id table is shared: a video in a user's click sequence and the same video as a candidate
are one embedding, which is what lets clicks in one scenario inform retrieval in another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from .tower import Tower

N_USER_STATS = 3  # log1p(exposures), log1p(clicks), smoothed click rate — in the sample's scenario
N_ITEM_STATS = 5  # the same three, plus log1p(exposures) and log1p(clicks) of the previous day


@dataclass
class ModelConfig:
    """The model's shape. Built from params.yaml (train.recipes.model_config) and stored in every checkpoint;
    no defaults here except for fields added after checkpoints were first written (``COMPAT``), so an older
    checkpoint still loads as the model it was."""

    arch: str                       # sass | dssm | star | pepnet (models.tower)
    scenarios: list[str]
    n_user_fields: int
    n_item_fields: int
    user_buckets: int
    video_buckets: int
    field_buckets: int
    emb_dim: int
    field_dim: int
    scen_dim: int
    hidden: int
    layers: int
    gate: str                       # adaptive | sigmoid | none
    gate_bias: float | None         # initial bias of the transfer gates (> 0: start close to the global net)
    bias_net: bool
    dropout: float
    scenario_layer: str = "full"    # COMPAT: full | star | lowrank, see models.tower.ScenarioLinear
    residual: bool = False          # COMPAT: serving vector = normalize(g_L + h_s,L + P b_s)
    scenario_norm: bool = False     # COMPAT: partitioned normalisation of the tower input (models.tower.PartitionedNorm)
    # COMPAT: scenario -> weight of the popularity prior its index adds to the inner product (train.finetune
    # chooses it on the held-out day; evaluate.embedding_recommender.serving_prior). Not a shape: a calibration
    # of the trained model, kept here so it travels in the checkpoint's manifest with the weights.
    prior_weights: dict[str, float] | None = None

    # what a warm start may change: a calibration (prior_weights), the training-time dropout, and gate_bias (an
    # initialisation, which a loaded model no longer has); every other field is the model itself
    WARM_START_FREE = ("prior_weights", "dropout", "gate_bias")

    def to_dict(self) -> dict:
        return asdict(self)

    def warm_start_differences(self, other: ModelConfig) -> dict[str, tuple]:
        """field -> (this value, other's value) where a model of ``other``'s config could not continue this one."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in self.WARM_START_FREE and a[k] != b[k]}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def masked_mean(emb: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    mask = (ids > 0).unsqueeze(-1).to(emb.dtype)
    return (emb * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class RetrievalModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = replace(cfg)   # its own copy: fine-tuning sets prior_weights on it (models built from one config)
        n_s = len(cfg.scenarios)
        if n_s == 0:
            raise ValueError("ModelConfig.scenarios must list the run's scenarios")
        # Bucket 0 is the padding / masked-id row. Sparse gradients: see train.loop.PairedOptimizer.
        self.user_emb = nn.Embedding(cfg.user_buckets, cfg.emb_dim, padding_idx=0, sparse=True)
        self.video_emb = nn.Embedding(cfg.video_buckets, cfg.emb_dim, padding_idx=0, sparse=True)
        self.user_fields = nn.Embedding(cfg.n_user_fields * cfg.field_buckets, cfg.field_dim, sparse=True)
        self.item_fields = nn.Embedding(cfg.n_item_fields * cfg.field_buckets, cfg.field_dim, sparse=True)
        self.scen_emb = nn.Embedding(n_s, cfg.scen_dim)
        for emb in (self.user_emb, self.video_emb, self.user_fields, self.item_fields):
            nn.init.normal_(emb.weight, std=0.05)
        with torch.no_grad():
            self.user_emb.weight[0].zero_()
            self.video_emb.weight[0].zero_()
        d_user = 2 * cfg.emb_dim + cfg.n_user_fields * cfg.field_dim + N_USER_STATS + cfg.scen_dim
        d_item = cfg.emb_dim + cfg.n_item_fields * cfg.field_dim + N_ITEM_STATS + cfg.scen_dim
        kw = dict(hidden=cfg.hidden, layers=cfg.layers, arch=cfg.arch, gate=cfg.gate, bias_net=cfg.bias_net,
                  dropout=cfg.dropout, gate_bias=cfg.gate_bias, scenario_layer=cfg.scenario_layer,
                  residual=cfg.residual, scenario_norm=cfg.scenario_norm)
        self.user_tower = Tower(d_user, n_s, N_USER_STATS, **kw)
        self.item_tower = Tower(d_item, n_s, N_ITEM_STATS, **kw)
        offsets = torch.arange(cfg.n_user_fields) * cfg.field_buckets
        self.register_buffer("user_field_offsets", offsets, persistent=False)
        self.register_buffer("item_field_offsets", torch.arange(cfg.n_item_fields) * cfg.field_buckets,
                             persistent=False)

    def user_input(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """The user tower's input row: id, fields, mean of the click sequence, statistics, scenario."""
        fields = self.user_fields(b["ufields"] + self.user_field_offsets).flatten(1)
        seq = masked_mean(self.video_emb(b["seq"]), b["seq"])
        return torch.cat([self.user_emb(b["uid"]), fields, seq, b["ustats"], self.scen_emb(b["scen"])], dim=-1)

    def item_input(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        fields = self.item_fields(b["ifields"] + self.item_field_offsets).flatten(1)
        return torch.cat([self.video_emb(b["vid"]), fields, b["istats"], self.scen_emb(b["scen"])], dim=-1)

    def user_vectors(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_tower(self.user_input(b), b["scen"], b["ustats"])

    def item_vectors(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.item_tower(self.item_input(b), b["scen"], b["istats"])

    def scenario_drift(self) -> torch.Tensor:
        """Both towers' scenario layers' squared distance from the global layers (models.tower.ScenarioLinear.drift)."""
        return self.user_tower.scenario_drift() + self.item_tower.scenario_drift()
