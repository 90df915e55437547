"""How each trained row of the registry (sass_retrieval.rows) trains: its model, the knobs it reads, its trainer.

``dssm_mixed``, ``sass_base``, ``sass`` and ``sass_mt`` train one shared model (:func:`train_shared`; sass starts
from the pretraining stage's model, sass_mt has one head per objective, models.multitask, and trains on
sum_k lambda_k x objective k's loss); ``dssm_single`` one model per scenario on that scenario alone
(:func:`train_per_scenario`); ``ctnet`` a daily source and continually transferred per-scenario targets
(train.ctnet). ``popular`` needs no training and lives in evaluate.popular.

Every trainer reads the params sections themselves (``params.finetune``...); a row that changes a knob
trains with a copy of its section (:func:`row_finetune`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from ..data.schema import OBJECTIVES
from ..models.bank import FeatureBank, model_config, recent_days
from ..models.multitask import MultiTaskModel
from ..models.retrieval import ModelConfig, RetrievalModel
from ..params_schema import Finetune, Params, Pretrain, Train
from ..rows import RowSpec, spec, trainer
from .distill import DistillInput
from .finetune import FinetuneJob, finetune
from .loop import LoopSettings, seed_everything
from .pretrain import pretrain

log = logging.getLogger(__name__)


@dataclass
class TrainedRow:
    """What a row's trainer hands back: the serving model of every scenario, its training report, and (ctnet) the
    source the targets were trained over (saved beside them, train.row_stage)."""

    models: dict[str, torch.nn.Module]
    report: dict[str, Any]
    source: RetrievalModel | None = None


def row_arch(params: Params, row: RowSpec) -> str:
    """The row's tower: the one it always uses (dssm_mixed, dssm_single and ctnet are plain two-towers), else
    ``model.arch`` (the sass family: sass, sass_base, sass_mt)."""
    return row.arch or params.model.arch


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


def loop_settings(section: Pretrain | Finetune, train: Train, seed: int, progress: bool = True) -> LoopSettings:
    """The training loop's settings of one stage: its section's epochs and learning rates, train's checkpointing."""
    return LoopSettings(epochs=int(section.epochs), lr=float(section.lr), emb_lr=float(section.emb_lr),
                        weight_decay=float(section.weight_decay),
                        seed=seed, checkpoint_every=int(train.checkpoint_every),
                        checkpoint_seconds=float(train.checkpoint_seconds), progress=progress,
                        max_steps_per_epoch=int(section.max_steps_per_epoch))


def row_finetune(params: Params, row: RowSpec | None = None) -> Finetune:
    """The finetune section as ``row`` trains with it. The multi-objective row has its own negatives (its
    objective-specific hard negatives are in-batch negatives already) and its own popularity prior (a request's
    weights rescale the model's score, not a prior chosen at the default weights)."""
    if row is None or not row.multi_objective:
        return params.finetune
    mt = params.multitask
    return params.finetune.model_copy(update={"in_batch_negatives": mt.in_batch_negatives,
                                              "prior_grid": list(mt.prior_grid)})


def finetune_job(params: Params, seed: int, scenarios: list[str] | None = None, progress: bool = True,
                 row: RowSpec | None = None, distill: DistillInput | None = None) -> FinetuneJob:
    """One fine-tuning call of ``row`` (default: the section as params.yaml has it), on ``scenarios`` (None: all);
    ``distill``: the teacher's groups (:func:`distill_input`), the distillation term on."""
    knobs = row_finetune(params, row)
    multi = row is not None and row.multi_objective
    return FinetuneJob(knobs, loop_settings(knobs, params.train, seed, progress), scenarios,
                       params.multitask if multi else None, input=params.train.input,
                       shuffle_buffer=int(params.train.shuffle_buffer), distill=distill)


def distill_input(params: Params, bank: FeatureBank, seed: int, row: RowSpec | None = None) -> DistillInput | None:
    """The teacher's groups of the days ``row`` trains on, when ``distill.enabled`` and the row is a shared
    single-objective one (dssm_mixed, sass_base, sass; the multi-objective heads score objectives the teacher
    does not); else None."""
    if not params.distill.enabled or (row is not None and row.multi_objective):
        return None
    days = recent_days(len(bank.train_dates), row_finetune(params, row).recent_days)
    return DistillInput.load(params.distill.teacher, bank, days, params.distill, seed)


def multitask_model(params: Params, scenarios: list[str]) -> MultiTaskModel:
    """The sass_mt row's model: sass towers (model section) and the multitask section's heads and weights."""
    return MultiTaskModel(RetrievalModel(model_config(params, scenarios, params.model.arch)), list(OBJECTIVES),
                          params.multitask.head_dim, params.multitask.weights.model_dump())


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


def run_pretraining(bank: FeatureBank | None, params: Params, seed: int, out_dir: Path,
                    init: RetrievalModel | None = None, progress: bool = True,
                    scenarios: list[str] | None = None) -> tuple[RetrievalModel, dict]:
    """Stage 1. With ``pretrain.enabled: false`` the seeded initial model is returned untrained, so `sass` is
    then fine-tuned from the same start as `sass_base`, in the pipeline and the benchmarks alike; the bank is
    then not needed (pass ``bank=None`` and the ``scenarios``: loading it cost the daily run seconds for nothing)."""
    seed_everything(seed)
    names = bank.scenarios if bank is not None else scenarios
    if names is None:
        raise ValueError("run_pretraining needs the bank or the scenarios")
    cfg = model_config(params, names, params.model.arch)
    if init is not None:
        require_same_model(init.cfg, cfg, "the published pretrained model")
    model = init if init is not None else RetrievalModel(cfg)
    if not params.pretrain.enabled:
        return model, {"skipped": True, "steps": 0}
    if bank is None:
        raise ValueError("pretraining is enabled: run_pretraining needs the feature bank")
    torch.set_num_threads(params.train.threads)
    report = pretrain(model, bank, params.pretrain, loop_settings(params.pretrain, params.train, seed, progress),
                      out_dir)
    return model, report


def train_row(row: str | RowSpec, bank: FeatureBank, params: Params, seed: int, out_dir: Path,
              pretrained: RetrievalModel | None = None, init: Any = None,
              progress: bool = True) -> tuple[dict[str, RetrievalModel], dict[str, Any]]:
    """Train one reference row; returns scenario -> model and a training report.

    ``pretrained`` is the stage-1 model (row sass); ``init`` warm-starts (incremental mode): the published
    model of a shared row, ctnet's (source, targets) (:func:`train_trained_row` for the source as well)."""
    trained = train_trained_row(row, bank, params, seed, out_dir, pretrained, init, progress)
    return trained.models, trained.report


def train_trained_row(row: str | RowSpec, bank: FeatureBank, params: Params, seed: int, out_dir: Path,
                      pretrained: RetrievalModel | None = None, init: Any = None,
                      progress: bool = True) -> TrainedRow:
    """:func:`train_row`, with everything the row's trainer hands back (ctnet's source too)."""
    row = row if isinstance(row, RowSpec) else spec(row)
    if not row.trained:
        raise ValueError(f"row {row.name!r} has nothing to train")
    torch.set_num_threads(params.train.threads)
    return trainer(row)(row, bank, params, seed, Path(out_dir), pretrained=pretrained, init=init, progress=progress)


def train_per_scenario(row: RowSpec, bank: FeatureBank, params: Params, seed: int, out_dir: Path,
                       pretrained: RetrievalModel | None = None, init: Any = None,
                       progress: bool = True) -> TrainedRow:
    """One model per scenario, trained on that scenario's clicks alone (dssm_single; no warm start)."""
    models, reports = {}, {}
    for s in bank.scenarios:
        seed_everything(seed)
        model = RetrievalModel(model_config(params, bank.scenarios, row_arch(params, row)))
        reports[s] = finetune(model, bank, finetune_job(params, seed, [s], progress, row), out_dir / s)
        models[s] = model
    return TrainedRow(models, reports)


def train_shared(row: RowSpec, bank: FeatureBank, params: Params, seed: int, out_dir: Path,
                 pretrained: RetrievalModel | None = None, init: RetrievalModel | None = None,
                 progress: bool = True) -> TrainedRow:
    """One model for every scenario (but a scenario that keeps an epoch of its own, finetune.own_epoch_min_clicks).

    ``init`` (incremental days) continues the published model; else a row that starts from pretraining (sass, with
    finetune.load_pretrained) loads ``pretrained``."""
    seed_everything(seed)
    model = (multitask_model(params, bank.scenarios) if row.multi_objective else
             RetrievalModel(model_config(params, bank.scenarios, row_arch(params, row))))
    if init is not None:
        require_same_model(init.cfg, model.cfg, f"the published {row.name} model")
        model.load_state_dict(init.state_dict())
        model.cfg.prior_weights = init.cfg.prior_weights   # kept unless this day's held-out day picks new ones
    elif row.pretrained and params.finetune.load_pretrained:
        if pretrained is None:
            raise ValueError(f"row {row.name!r} needs the pretrained model (run pretraining first)")
        model.load_state_dict(copy.deepcopy(pretrained.state_dict()))
        if params.finetune.freeze_pretrained:
            freeze_transferred(model)
    own: dict[str, torch.nn.Module] = {}
    job = finetune_job(params, seed, None, progress, row, distill_input(params, bank, seed, row))
    report = finetune(model, bank, job, out_dir, own)
    return TrainedRow({s: own.get(s, model) for s in bank.scenarios}, report)
