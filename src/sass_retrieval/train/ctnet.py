"""Training recipe of the ``ctnet`` row: a daily source model and continually transferred small-scenario targets.

Each day (models.ctnet has the model):

1. The **source**, a plain two-tower, trains on the largest scenario (``ctnet.source: largest``, the one with
   the most training clicks) or on every scenario (``all``); on an incremental day it warm-starts from
   yesterday's source and trains on the newest day, like every other row. It serves the largest scenario;
   trained on every scenario, it does so at the epoch best for that scenario when early stopping keeps one
   of its own (``finetune.own_epoch_min_clicks``, as dssm_mixed's largest tab), while the targets read and
   start from the macro-best source.
2. Each other scenario's **target** warm-starts from its own previous day's target (on the first day, from the
   source: every weight, only the embedding tables with ``ctnet.init: embeddings``, or none with ``scratch``) and trains on its own
   scenario's clicks with the fine-tuning loss and sampler of every row, reading today's frozen source
   through zero-initialised adapters (``ctnet.adapters: true``). ``adapters: false`` is plain
   pretrain-then-finetune from the source, the baseline the seed compares against. ``ctnet.anchor_l2`` pulls
   each target's tower weights toward its warm start (L2-SP, models.ctnet), in place of ``finetune.scenario_l2``
   (a target has no scenario layers). ``ctnet.keep_start``: early stopping may keep a target as it started,
   if no epoch on its own clicks beats its start on the held-out day (train.finetune).

``ctnet.follow_source`` (alpha): on an incremental day each target first moves by alpha times the source's own
update of the day (follow_source), so that the source's newest knowledge reaches the target's weights.

``adapter_source`` lets the benchmark keep the first day's source under the adapters (one-time transfer)
while the large scenario still gets its daily model.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.bank import FeatureBank, model_config
from ..models.ctnet import CTNet
from ..models.retrieval import RetrievalModel
from ..params_schema import Params
from ..rows import RowSpec, spec
from .finetune import FinetuneJob, finetune
from .loop import seed_everything
from .recipes import TrainedRow, finetune_job, require_same_model, row_arch

log = logging.getLogger(__name__)

SOURCE_MODES = ("largest", "all")
INIT_MODES = ("all", "embeddings", "scratch")
SOURCE_VIEWS = ("largest", "own")
EMBEDDINGS = ("user_emb", "video_emb", "user_fields", "item_fields", "scen_emb")


def largest_scenario(bank: FeatureBank) -> str:
    """The reported scenario with the most training clicks (KuaiRand: tab 1, ~85% of clicks)."""
    names = bank.reported or bank.scenarios
    return max(names, key=lambda s: (len(bank.per[s].pos_user), s))


def source_and_targets(bank: FeatureBank, source_mode: str) -> tuple[str, list[str] | None, list[str]]:
    """(the scenario the source serves, the scenarios it trains on (None: all), the target scenarios)."""
    if source_mode not in SOURCE_MODES:
        raise ValueError(f"ctnet.source must be one of {SOURCE_MODES}, got {source_mode!r}")
    large = largest_scenario(bank)
    return large, ([large] if source_mode == "largest" else None), [s for s in bank.scenarios if s != large]


def source_view(mode: str, large: str, source_scen: list[str] | None) -> str | None:
    """The scenario the adapters show the source a target's rows as (models.ctnet): ``largest``, the one a
    source trained on the largest scenario alone knows, or ``own``, each target's (None: the rows as they are).
    A source trained on every scenario knows each target's own, so it reads the rows as they are either way."""
    if mode not in SOURCE_VIEWS:
        raise ValueError(f"ctnet.source_view must be one of {SOURCE_VIEWS}, got {mode!r}")
    return large if mode == "largest" and source_scen is not None else None


def target_from_source(source: RetrievalModel, cfg, init: str, view: str | None = None) -> RetrievalModel:
    """The first day's target: a copy of the source (``all``), a fresh tower over the source's embeddings
    (``embeddings``), or a model of its own from scratch (``scratch``: the paper's setting, where the small
    domain's model is its own and only the adapters read the source; drawn as dssm_single draws its model).

    ``view`` (source_view): every scenario's embedding starts as that scenario's, so the target starts as the
    source serves its own scenario, not over a scenario embedding the source never trained."""
    if init not in INIT_MODES:
        raise ValueError(f"ctnet.init must be one of {INIT_MODES}, got {init!r}")
    target = RetrievalModel(cfg)
    if init == "scratch":
        return target
    state = copy.deepcopy(source.state_dict())
    if view is not None:
        table = state["scen_emb.weight"]
        table[:] = table[source.cfg.scenarios.index(view)]
    if init == "embeddings":
        state = {k: v for k, v in state.items() if k.split(".")[0] in EMBEDDINGS}
    target.load_state_dict(state, strict=init == "all")
    return target


def adapter_effects(model: CTNet, bank: FeatureBank, s: str, max_users: int = 4096) -> dict[str, float]:
    """How far the adapters move target s's served vectors (CTNet.adapter_effect, mean distance): over the users
    who clicked in s (the first ``max_users`` rows) and every item, as served in s. In the training report, so
    that a user can see whether the source reaches a target at all."""
    model.eval()
    users = np.unique(bank.per[s].pos_user)[:max_users]
    return {"user": model.adapter_effect(bank.serving_user_batch(users, s), "user"),
            "item": model.adapter_effect(bank.serving_item_batch(np.arange(len(bank.item_ids)), s), "item")}


def follow_source(target: RetrievalModel, today: RetrievalModel, yesterday: RetrievalModel, alpha: float) -> None:
    """Move a target by ``alpha`` times the source's last day: w_t += alpha (w_source,today - w_source,yesterday).

    A target starts as a copy of the source; with alpha 1 it stays "today's source plus what its own clicks
    taught it", so the large scenario's newest day reaches it every day through its weights, which the adapters
    barely do (docs/lab/ctnet.md, "Where the transfer goes: the warm start, not the adapters"), and without the large scenario's data. Every
    floating-point tensor of the state is moved (the embedding tables too: the same videos serve every tab)."""
    t, a, b = target.state_dict(), today.state_dict(), yesterday.state_dict()
    with torch.no_grad():
        for k, v in t.items():
            if v.is_floating_point():
                v.add_(a[k] - b[k], alpha=alpha)


def target_job(params: Params, seed: int, scenario: str, progress: bool = True) -> FinetuneJob:
    """A target's fine-tuning: on its scenario alone, ``ctnet.anchor_l2`` in place of ``finetune.scenario_l2`` (a
    target has no scenario layers), and early stopping may keep its start (``ctnet.keep_start``)."""
    job = finetune_job(params, seed, [scenario], progress)
    return replace(job, knobs=job.knobs.model_copy(update={"scenario_l2": params.ctnet.anchor_l2}),
                   keep_start=params.ctnet.keep_start)


def train_ctnet_row(row: RowSpec, bank: FeatureBank, params: Params, seed: int, out_dir: Path,
                    pretrained: RetrievalModel | None = None,
                    init: tuple[RetrievalModel, dict[str, CTNet | RetrievalModel]] | None = None,
                    progress: bool = True) -> TrainedRow:
    """The registry's trainer of the ctnet row: ``init`` is yesterday's (source, targets by scenario), or None
    (from scratch). ``pretrained`` does not apply."""
    source_init, target_inits = init if init is not None else (None, None)
    source, models, report = train_ctnet(bank, params, seed, out_dir, source_init, target_inits, progress=progress)
    return TrainedRow(models, report, source)


def train_ctnet(bank: FeatureBank, params: Params, seed: int, out_dir: Path,
                source_init: RetrievalModel | None = None,
                target_inits: dict[str, CTNet | RetrievalModel] | None = None,
                adapter_source: RetrievalModel | None = None,
                progress: bool = True) -> tuple[RetrievalModel, dict[str, RetrievalModel | CTNet], dict[str, Any]]:
    """Train one day of the ctnet row: returns (the source, scenario -> serving model, a training report). The
    largest scenario's serving model is the source itself, or its own-epoch model (source=all).

    ``source_init``: yesterday's source (incremental days); ``target_inits``: yesterday's targets by scenario
    (missing scenarios start from the source); ``adapter_source``: the source the adapters read (default:
    today's, i.e. continual transfer)."""
    out_dir = Path(out_dir)
    ct = params.ctnet
    cfg = model_config(params, bank.scenarios, row_arch(params, spec("ctnet")))
    large, source_scen, targets = source_and_targets(bank, ct.source)
    use_adapters, init = ct.adapters, ct.init
    view = source_view(ct.source_view, large, source_scen)

    seed_everything(seed)
    source = RetrievalModel(cfg)
    if source_init is not None:   # a day whose scenarios or model changed cannot continue yesterday's: say which key
        require_same_model(source_init.cfg, cfg, "yesterday's ctnet source")
        source.load_state_dict(source_init.state_dict())
    own: dict[str, Any] = {}      # source=all: the largest scenario's own-epoch model, when selection keeps one
    report: dict[str, Any] = {"source_scenario": large, "source_trains_on": source_scen or "all",
                              "targets": targets, "adapters": use_adapters, "init": init,
                              "source": finetune(source, bank, finetune_job(params, seed, source_scen, progress),
                                                 out_dir / "source", own if source_scen is None else None)}
    models: dict[str, RetrievalModel | CTNet] = {large: own.get(large, source)}
    frozen = copy.deepcopy(adapter_source if adapter_source is not None else source)
    for s in targets:
        seed_everything(seed)
        prev = (target_inits or {}).get(s)
        if prev is None:
            target = target_from_source(source, cfg, init, view)
        else:
            target = RetrievalModel(cfg)
            prev_target = prev.target if isinstance(prev, CTNet) else prev
            require_same_model(prev_target.cfg, cfg, f"yesterday's ctnet target of scenario {s}")
            target.load_state_dict(prev_target.state_dict())
            if ct.follow_source and source_init is not None:
                follow_source(target, source, source_init, ct.follow_source)
        model: RetrievalModel | CTNet = target
        if use_adapters:
            model = CTNet(frozen, target, ct.adapter_lr, ct.adapt_output, view, ct.target_emb_lr)
            if isinstance(prev, CTNet):   # yesterday's adapters carry on over today's source
                model.user_adapters.load_state_dict(prev.user_adapters.state_dict())
                model.item_adapters.load_state_dict(prev.item_adapters.state_dict())
        report[s] = finetune(model, bank, target_job(params, seed, s, progress), out_dir / s)
        models[s] = model
        how = "no adapters"
        if isinstance(model, CTNet):
            effect = report[s]["adapter_effect"] = adapter_effects(model, bank, s)
            how = f"adapters move its vectors by {effect['user']:.4f} (users), {effect['item']:.4f} (items)"
        log.info("ctnet target %s trained (%s, %s)", s, how,
                 "warm start" if prev is not None else f"from the source ({init})")
    return source, models, report
