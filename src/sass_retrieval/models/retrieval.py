"""The two-tower retrieval model: shared hashed embeddings feeding a user tower and an item tower.

The video-id table is shared: a video in a user's click sequence and the same video as a candidate
are one embedding, which is what lets clicks in one scenario inform retrieval in another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from .dat import LatestAugment, mimic_loss
from .parallel_tower import KINDS, ParallelTower, fold_item, fold_user
from .tower import Tower

N_USER_STATS = 3  # log1p(exposures), log1p(clicks), smoothed click rate — in the sample's scenario
N_ITEM_STATS = 5  # the same three, plus log1p(exposures) and log1p(clicks) of the previous day


@dataclass
class ModelConfig:
    """The model's shape. Built from params.yaml (train.recipes.model_config) and stored in every checkpoint;
    no defaults here except for fields added after checkpoints were first written (``COMPAT``), so an older
    checkpoint still loads as the model it was."""

    arch: str                       # sass | dssm | star | pepnet | senet | dat (models.tower) | parallel
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
    dat_weight: float = 0.5         # COMPAT: weight of arch dat's mimic loss (models.dat; a training knob)
    dcn_depth: int = 2              # COMPAT: arch parallel's cross-network layers (models.parallel_tower)

    # what a warm start may change: a calibration (prior_weights), the training-time dropout and mimic-loss weight,
    # and gate_bias (an initialisation, which a loaded model no longer has); every other field is the model itself
    WARM_START_FREE = ("prior_weights", "dropout", "gate_bias", "dat_weight")

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
        user_widths = [w for _, w in self.field_groups("user")]
        item_widths = [w for _, w in self.field_groups("item")]
        d_user, d_item = sum(user_widths), sum(item_widths)
        if cfg.arch == "dat":   # one augment vector per hashed user and video id, appended to its own tower's input
            self.user_augment = nn.Embedding(cfg.user_buckets, cfg.hidden, padding_idx=0, sparse=True)
            self.item_augment = nn.Embedding(cfg.video_buckets, cfg.hidden, padding_idx=0, sparse=True)
            for emb in (self.user_augment, self.item_augment):
                nn.init.normal_(emb.weight, std=0.05)
                with torch.no_grad():
                    emb.weight[0].zero_()
            self.latest_augment = LatestAugment()
            d_user, d_item = d_user + cfg.hidden, d_item + cfg.hidden
        if cfg.arch == "parallel":
            self.user_tower = ParallelTower(d_user, cfg.hidden, cfg.layers, cfg.dcn_depth, cfg.dropout)
            self.item_tower = ParallelTower(d_item, cfg.hidden, cfg.layers, cfg.dcn_depth, cfg.dropout)
            self.fusion_logits = nn.Parameter(torch.zeros(len(KINDS)))   # softmax: equal weights at the start
        else:
            kw = dict(hidden=cfg.hidden, layers=cfg.layers, arch=cfg.arch, gate=cfg.gate, bias_net=cfg.bias_net,
                      dropout=cfg.dropout, gate_bias=cfg.gate_bias, scenario_layer=cfg.scenario_layer,
                      residual=cfg.residual, scenario_norm=cfg.scenario_norm)
            self.user_tower = Tower(d_user, n_s, N_USER_STATS, **kw, field_widths=user_widths)
            self.item_tower = Tower(d_item, n_s, N_ITEM_STATS, **kw, field_widths=item_widths)
        offsets = torch.arange(cfg.n_user_fields) * cfg.field_buckets
        self.register_buffer("user_field_offsets", offsets, persistent=False)
        self.register_buffer("item_field_offsets", torch.arange(cfg.n_item_fields) * cfg.field_buckets,
                             persistent=False)

    def field_groups(self, side: str) -> list[tuple[str, int]]:
        """(name, width) of the consecutive fields of a tower's input (``user_input``/``item_input`` order, without
        dat's augment vector): what the senet tower reweights and reports."""
        from .bank import ITEM_FIELDS, USER_FIELDS  # here: models.bank imports this module

        c = self.cfg

        def names(known: tuple[str, ...], n: int, prefix: str) -> list[str]:   # a config of other fields: numbered
            return list(known) if len(known) == n else [f"{prefix}_field_{i}" for i in range(n)]

        if side == "user":
            return ([("user_id", c.emb_dim)] + [(f, c.field_dim) for f in names(USER_FIELDS, c.n_user_fields, "user")]
                    + [("click_sequence", c.emb_dim), ("user_stats", N_USER_STATS), ("scenario", c.scen_dim)])
        return ([("video_id", c.emb_dim)] + [(f, c.field_dim) for f in names(ITEM_FIELDS, c.n_item_fields, "item")]
                + [("item_stats", N_ITEM_STATS), ("scenario", c.scen_dim)])

    def _augmented(self, x: torch.Tensor, table: nn.Embedding, ids: torch.Tensor, side: str) -> torch.Tensor:
        """dat: ``x`` with the augment vectors of ``ids`` appended, recorded for the mimic loss when training."""
        a = table(ids)
        if self.training and torch.is_grad_enabled():
            self.latest_augment[side] = a
        return torch.cat([x, a], dim=-1)

    def user_input(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """The user tower's input row: id, fields, mean of the click sequence, statistics, scenario."""
        fields = self.user_fields(b["ufields"] + self.user_field_offsets).flatten(1)
        seq = masked_mean(self.video_emb(b["seq"]), b["seq"])
        x = torch.cat([self.user_emb(b["uid"]), fields, seq, b["ustats"], self.scen_emb(b["scen"])], dim=-1)
        return self._augmented(x, self.user_augment, b["uid"], "user") if self.cfg.arch == "dat" else x

    def item_input(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        fields = self.item_fields(b["ifields"] + self.item_field_offsets).flatten(1)
        x = torch.cat([self.video_emb(b["vid"]), fields, b["istats"], self.scen_emb(b["scen"])], dim=-1)
        return self._augmented(x, self.item_augment, b["vid"], "item") if self.cfg.arch == "dat" else x

    @property
    def serving_dim(self) -> int:
        """The length of the serving vectors: ``hidden``, or one ``hidden`` per parallel tower kind."""
        return self.cfg.hidden * (len(KINDS) if self.cfg.arch == "parallel" else 1)

    def fusion_weights(self) -> torch.Tensor:
        """parallel: w_k of score = sum_k w_k <u_k, i_k>, in models.parallel_tower.KINDS order."""
        return torch.softmax(self.fusion_logits, dim=0)

    def user_parts(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """parallel: (rows, K, hidden) the user side's per-kind unit vectors, before folding."""
        return self.user_tower(self.user_input(b))

    def item_parts(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.item_tower(self.item_input(b))

    def user_vectors(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.arch == "parallel":   # the fusion weights folded into the query
            v = fold_user(self.user_parts(b), self.fusion_weights())
            return v, v
        return self.user_tower(self.user_input(b), b["scen"], b["ustats"])

    def item_vectors(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.arch == "parallel":
            v = fold_item(self.item_parts(b))
            return v, v
        return self.item_tower(self.item_input(b), b["scen"], b["istats"])

    def scenario_drift(self) -> torch.Tensor:
        """Both towers' scenario layers' squared distance from the global layers (models.tower.ScenarioLinear.drift)."""
        return self.user_tower.scenario_drift() + self.item_tower.scenario_drift()

    def extra_loss(self, eb) -> torch.Tensor:  # noqa: ANN001 - train.finetune.EmbeddedBatch (no import of training)
        """The arch's own training term beside the retrieval loss, on the batch train.finetune just embedded
        (``eb.user``/``eb.item``: the towers' outputs; the item side's first ``eb.n_pos`` rows are the positives):
        dat's weighted mimic loss on the batch's positive pairs (models.dat); 0 for every other arch."""
        if self.cfg.arch != "dat" or not self.cfg.dat_weight:
            return self.user_emb.weight.new_zeros(())
        aug_u, aug_i = self.latest_augment.pop("user", None), self.latest_augment.pop("item", None)
        if aug_u is None or aug_i is None:
            raise RuntimeError("extra_loss needs the augment vectors of a training forward of both towers")
        rows = eb.rows
        out_u, out_i = eb.user[0][rows], eb.item[0][:eb.n_pos][rows]
        positive = torch.ones(len(rows), dtype=torch.bool)   # every batch row is a positive (click) pair
        return self.cfg.dat_weight * mimic_loss(aug_u[rows], aug_i[:eb.n_pos][rows], out_u, out_i, positive)

    @torch.no_grad()
    def field_weights(self, user_batch: dict[str, torch.Tensor],
                      item_batch: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
        """senet: side -> field name -> the mean SE weight of the field over the batch's rows (models.senet: the
        weights of a row sum to the number of fields, so 1 is an average field). What the report shows."""
        if self.cfg.arch != "senet":
            raise ValueError(f"field weights exist for arch senet only, this model is {self.cfg.arch!r}")
        out = {}
        for side, tower, x in (("user", self.user_tower, self.user_input(user_batch)),
                               ("item", self.item_tower, self.item_input(item_batch))):
            w = tower.field_se.weights(x).mean(0).tolist()
            out[side] = {name: float(v) for (name, _), v in zip(self.field_groups(side), w, strict=True)}
        return out
