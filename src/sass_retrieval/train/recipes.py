"""The reference rows of BENCHMARK.md as recipes over one trainer and one data path.

``dssm_mixed``: plain two-tower on all scenarios; ``dssm_single``: one plain two-tower per scenario,
trained on that scenario only; ``sass_base``: SASS without pretraining; ``sass``: pretraining then
fine-tuning; ``ctnet``: a daily source and continually transferred per-scenario targets (train.ctnet).
``sass_mt``: the sass towers with one head per objective (models.multitask), trained on
sum_k lambda_k x objective k's loss. ``popular`` needs no training and lives in evaluate.popular.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, get
from ..data.schema import OBJECTIVES
from ..models.bank import ITEM_FIELDS, USER_FIELDS, FeatureBank
from ..models.multitask import MultiTaskModel
from ..models.retrieval import ModelConfig, RetrievalModel
from .finetune import FinetuneSettings, finetune
from .loop import LoopSettings, seed_everything
from .pretrain import PretrainSettings, pretrain

log = logging.getLogger(__name__)

ROWS = ("popular", "dssm_mixed", "dssm_single", "sass_base", "sass", "ctnet", "sass_mt")   # ctnet: train.ctnet
TRAINED_ROWS = ROWS[1:]


def model_config(params: dict[str, Any], scenarios: list[str], arch: str | None = None) -> ModelConfig:
    """The model's shape from params.yaml (the one source of its values; the schema checked them)."""
    m = get(params, "model")
    known = {k: m[k] for k in ModelConfig.__dataclass_fields__ if k in m}
    cfg = ModelConfig(**{**known, "scenarios": list(scenarios), "n_user_fields": len(USER_FIELDS),
                         "n_item_fields": len(ITEM_FIELDS)})
    if arch is not None:
        cfg.arch = arch
    return cfg


def sass_arch(params: dict[str, Any]) -> str:
    """The tower of the sass family (sass, sass_base, sass_mt): ``model.arch``. The reference rows fix theirs
    (dssm_mixed, dssm_single and ctnet are plain two-towers whatever it says)."""
    return str(get(params, "model.arch"))


# ModelConfig fields that params.yaml's model section does not hold directly
KEY_OF = {"scenarios": "scenarios.names (the run's trained scenarios, after scenarios.min_scenario_rows)",
          "n_user_fields": "the user feature fields", "n_item_fields": "the item feature fields"}


def require_same_model(init_cfg: ModelConfig, cfg: ModelConfig, what: str) -> None:
    """A warm start continues the model it loads: refuse, with the keys named, a params.yaml that now describes
    another model (model.arch star over a published sass, a new hidden size...). Without this the load failed
    with a list of missing state-dict keys, or (pretraining's own warm start) went on with the old shape while
    params.yaml said otherwise."""
    diffs = init_cfg.warm_start_differences(cfg)
    if diffs:
        raise ConfigError("\n".join(f"params.yaml: {KEY_OF.get(k, 'model.' + k)}: a warm start continues "
                                    f"{what}, which has {old!r}, not {new!r}" for k, (old, new) in diffs.items()),
                          hint="train the day from scratch (train.mode: full), then go back to incremental days")


def loop_settings(params: dict[str, Any], section: str, seed: int, progress: bool = True) -> LoopSettings:
    def key(k: str) -> Any:
        return get(params, f"{section}.{k}")

    return LoopSettings(epochs=int(key("epochs")), lr=float(key("lr")), emb_lr=float(key("emb_lr")),
                        weight_decay=float(key("weight_decay")),
                        seed=seed, checkpoint_every=int(get(params, "train.checkpoint_every")),
                        checkpoint_seconds=float(get(params, "train.checkpoint_seconds")), progress=progress,
                        max_steps_per_epoch=int(key("max_steps_per_epoch")))


def pretrain_settings(params: dict[str, Any], seed: int, progress: bool = True) -> PretrainSettings:
    return PretrainSettings(loop=loop_settings(params, "pretrain", seed, progress),
                            **{k: get(params, f"pretrain.{k}") for k in PretrainSettings.KEYS})


def finetune_settings(params: dict[str, Any], seed: int, scenarios: list[str] | None = None,
                      progress: bool = True, multitask: bool = False) -> FinetuneSettings:
    """``multitask``: the sass_mt row's settings, every objective's loss weighted by multitask.loss_weights."""
    keys = {k: get(params, f"finetune.{k}") for k in FinetuneSettings.KEYS}
    if not multitask:
        return FinetuneSettings(loop=loop_settings(params, "finetune", seed, progress), scenarios=scenarios, **keys)
    # the multi-objective row's own negatives: its objective-specific hard negatives are in-batch negatives already
    keys["in_batch_negatives"] = bool(get(params, "multitask.in_batch_negatives"))
    # and its own popularity prior: a request's weights rescale the model's score, not a prior chosen at the defaults
    keys["prior_grid"] = list(get(params, "multitask.prior_grid"))
    return FinetuneSettings(loop=loop_settings(params, "finetune", seed, progress), scenarios=scenarios,
                            objective_weights={k: float(v) for k, v in get(params, "multitask.loss_weights").items()},
                            hard_negatives=bool(get(params, "multitask.hard_negatives")),
                            hard_negative_weight=float(get(params, "multitask.hard_negative_weight")), **keys)


def multitask_model(params: dict[str, Any], scenarios: list[str]) -> MultiTaskModel:
    """The sass_mt row's model: sass towers (model section) and the multitask section's heads and weights."""
    return MultiTaskModel(RetrievalModel(model_config(params, scenarios, sass_arch(params))), list(OBJECTIVES),
                          int(get(params, "multitask.head_dim")), get(params, "multitask.weights"))


def freeze_transferred(model: RetrievalModel) -> None:
    """Freeze what pretraining produced (embeddings and tower weights) for the freeze ablation."""
    for p in model.parameters():
        p.requires_grad_(False)
    for tower in (model.user_tower, model.item_tower):
        # keep the top layer trainable, otherwise fine-tuning has nothing to fit
        for p in tower.global_net[-1].parameters():
            p.requires_grad_(True)
        if hasattr(tower, "scenario_net"):
            for p in tower.scenario_net[-1].parameters():
                p.requires_grad_(True)


def run_pretraining(bank: FeatureBank | None, params: dict[str, Any], seed: int, out_dir: Path,
                    init: RetrievalModel | None = None, progress: bool = True,
                    scenarios: list[str] | None = None) -> tuple[RetrievalModel, dict]:
    """Stage 1. With ``pretrain.enabled: false`` the seeded initial model is returned untrained, so `sass` is
    then fine-tuned from the same start as `sass_base`, in the pipeline and the benchmarks alike; the bank is
    then not needed (pass ``bank=None`` and the ``scenarios``: loading it cost the daily run seconds for nothing)."""
    seed_everything(seed)
    names = bank.scenarios if bank is not None else scenarios
    if names is None:
        raise ValueError("run_pretraining needs the bank or the scenarios")
    cfg = model_config(params, names, sass_arch(params))
    if init is not None:
        require_same_model(init.cfg, cfg, "the published pretrained model")
    model = init if init is not None else RetrievalModel(cfg)
    if not get(params, "pretrain.enabled"):
        return model, {"skipped": True, "steps": 0}
    if bank is None:
        raise ValueError("pretraining is enabled: run_pretraining needs the feature bank")
    torch.set_num_threads(int(get(params, "train.threads")))
    report = pretrain(model, bank, pretrain_settings(params, seed, progress), out_dir)
    return model, report


def train_row(row: str, bank: FeatureBank, params: dict[str, Any], seed: int, out_dir: Path,
              pretrained: RetrievalModel | None = None, init: RetrievalModel | None = None,
              progress: bool = True) -> tuple[dict[str, RetrievalModel], dict[str, Any]]:
    """Train one reference row; returns scenario -> model and a training report.

    ``pretrained`` is the stage-1 model for ``sass``; ``init`` warm-starts (incremental mode).
    """
    if row not in TRAINED_ROWS:
        raise ValueError(f"unknown trained row {row!r}; choose from {TRAINED_ROWS}")
    torch.set_num_threads(int(get(params, "train.threads")))
    out_dir = Path(out_dir)
    if row == "ctnet":   # a source and per-scenario targets (train.ctnet); init/pretrained do not apply
        from .ctnet import train_ctnet

        _, models, report = train_ctnet(bank, params, seed, out_dir, progress=progress)
        return models, report
    if row == "dssm_single":
        models, reports = {}, {}
        for s in bank.scenarios:
            seed_everything(seed)
            model = RetrievalModel(model_config(params, bank.scenarios, "dssm"))
            reports[s] = finetune(model, bank, finetune_settings(params, seed, [s], progress), out_dir / s)
            models[s] = model
        return models, reports
    seed_everything(seed)
    arch = "dssm" if row == "dssm_mixed" else sass_arch(params)
    model = (multitask_model(params, bank.scenarios) if row == "sass_mt" else
             RetrievalModel(model_config(params, bank.scenarios, arch)))
    if init is not None:
        require_same_model(init.cfg, model.cfg, f"the published {row} model")
        model.load_state_dict(init.state_dict())
        model.cfg.prior_weights = init.cfg.prior_weights   # kept unless this day's held-out day picks new ones
    elif row == "sass" and bool(get(params, "finetune.load_pretrained")):
        if pretrained is None:
            raise ValueError("row 'sass' needs the pretrained model (run pretraining first)")
        model.load_state_dict(copy.deepcopy(pretrained.state_dict()))
        if bool(get(params, "finetune.freeze_pretrained")):
            freeze_transferred(model)
    own: dict[str, torch.nn.Module] = {}
    report = finetune(model, bank, finetune_settings(params, seed, None, progress, row == "sass_mt"), out_dir, own)
    return {s: own.get(s, model) for s in bank.scenarios}, report
