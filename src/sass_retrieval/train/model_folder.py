"""The training stages' work for one run: find the warm start, train, and write the model folder.

A row's folder models/<row>/ follows its checkpoint layout in the row registry (sass_retrieval.rows):

- ``shared``: ``model.pt`` serves every scenario but those with a ``model_<s>.pt``, a large scenario that kept
  its own best epoch (finetune.own_epoch_min_clicks);
- ``per_scenario``: a ``model_<s>.pt`` per scenario (dssm_single);
- ``ctnet``: ``source.pt`` (serves the largest scenario, unless a ``model_<largest>.pt`` holds its own epoch of a
  source trained on every scenario) and a target ``model_<s>.pt`` per other scenario.

models.checkpoint.load_row_model reads all three. Incremental days (train.mode) start from the published
folder of the same layout and train a few epochs on the newest days (run.incremental_params).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..models.bank import bank_for, split_scenarios
from ..models.checkpoint import load_ctnet, load_model, read_manifest
from ..models.ctnet import CTNet
from ..rows import CTNET, PER_SCENARIO, SHARED, RowSpec
from ..run import Run, incremental_params, safe_path, warm_start_path
from .checkpoint import save_checkpoint, save_ctnet
from .distributed import is_main
from .recipes import TrainedRow, run_pretraining, train_trained_row

log = logging.getLogger("train")


def pretrain_folder(run: Run, features: Path, out: Path, progress: bool = True) -> dict[str, Any] | None:
    """Stage 1 into ``out/model.pt`` (from the published pretrained model on an incremental day); the report, or
    None in a distributed worker that is not the main process (it writes nothing)."""
    params, init = run.params, None
    warm = warm_start_path(params, "models/pretrain/model.pt")
    if warm is not None:
        init, _ = load_model(warm)
        params = incremental_params(params, ("pretrain",))
    bank = bank_for(run, features) if params.pretrain.enabled else None
    model, report = run_pretraining(bank, params, params.train.seed, out, init=init, progress=progress,
                                    scenarios=split_scenarios(features))
    if not is_main():
        return None
    save_checkpoint(out / "model.pt", model, meta={"stage": "pretrain", "window": run.window.__dict__,
                                                   "warm_start": str(warm) if warm else None})
    (out / "resume.pt").unlink(missing_ok=True)
    return report


def train_folder(run: Run, row: RowSpec, features: Path, out: Path, pretrained: str | Path,
                 progress: bool = True, shards: Path = Path("data/shards")) -> dict[str, Any] | None:
    """Train ``row`` for this run and write its folder ``out`` by the row's layout; the training report, or None in
    a distributed worker that is not the main process. ``pretrained``: the stage-1 checkpoint (rows that start
    from it, on a day without a warm start); ``shards``: the training shards train.input stream reads."""
    params, init, warm = run.params, None, None
    if row.layout == SHARED:
        warm = warm_start_path(params, f"models/{row.name}/model.pt")
        if warm is not None:
            init, _ = load_model(warm)
    elif row.layout == CTNET:
        warm = warm_start_path(params, f"models/{row.name}")
        if warm is not None:   # a published ctnet folder without its source is broken: CheckpointError names it
            init = published_ctnet(warm)
    if init is not None:
        params = incremental_params(params, ("finetune",))
    bank = bank_for(run, features, shards_dir=shards)
    start = load_model(safe_path(pretrained))[0] if row.pretrained and init is None else None
    trained = train_trained_row(row, bank, params, params.train.seed, out, pretrained=start, init=init,
                                progress=progress)
    if not is_main():
        return None
    meta = {"row": row.name, "window": run.window.__dict__, "scenarios": bank.scenarios}
    drop_scenario_checkpoints(out)
    if row.layout == CTNET:
        save_ctnet_folder(out, trained, {**meta, "warm_start": str(warm) if warm else None})
    elif row.layout == PER_SCENARIO:
        for s, m in trained.models.items():
            save_checkpoint(out / f"model_{s}.pt", m, meta={**meta, "scenario": s})
    else:
        save_shared_folder(out, trained, meta)
    for f in out.rglob("resume*.pt*"):
        f.unlink()
    return trained.report


def published_ctnet(warm: Path) -> tuple[Any, dict[str, CTNet | Any]]:
    """Yesterday's published ctnet folder as (source, targets by scenario): the targets' adapters then read
    today's source (continual transfer)."""
    source, manifest = load_model(warm / "source.pt")
    targets: dict[str, Any] = {}
    for f in sorted(warm.glob("model_*.pt")):
        s = f.stem[len("model_"):]
        if s == manifest.get("meta", {}).get("scenario"):
            continue   # the source's own-epoch model of its scenario (source=all) serves, it is no target
        is_ctnet = "ctnet" in read_manifest(f).get("meta", {})
        targets[s] = load_ctnet(f, warm / "source.pt", same_source=False)[0] if is_ctnet else load_model(f)[0]
    return source, targets


def drop_scenario_checkpoints(out: Path) -> None:
    """Remove a row folder's per-scenario checkpoints (``model_<s>.pt`` and manifests), once today's models are
    trained and about to be saved: the folders persist between runs (persist: true), and yesterday's file for a
    scenario today's run does not write would otherwise still be served (models.checkpoint.row_checkpoint)."""
    for f in out.glob("model_*.pt*"):
        f.unlink()


def save_shared_folder(out: Path, trained: TrainedRow, meta: dict[str, Any]) -> None:
    """One shared model, plus model_<s>.pt for a scenario that kept an epoch of its own."""
    report, models = trained.report, trained.models
    owned = set(report.get("own_models", [])) if isinstance(report, dict) else set()
    shared = next((m for s, m in models.items() if s not in owned), next(iter(models.values())))
    save_checkpoint(out / "model.pt", shared, meta=meta)
    for s, m in models.items():
        if m is not shared:
            save_checkpoint(out / f"model_{s}.pt", m, meta={**meta, "scenario": s})


def save_ctnet_folder(out: Path, trained: TrainedRow, meta: dict[str, Any]) -> None:
    """The source, the largest scenario's own-epoch model when it has one, and every target over the source."""
    source, models, report = trained.source, trained.models, trained.report
    large = report["source_scenario"]
    save_checkpoint(out / "source.pt", source, meta={**meta, "scenario": large})
    if models[large] is not source:          # source=all: the largest scenario's own epoch serves it
        save_checkpoint(out / f"model_{large}.pt", models[large], meta={**meta, "scenario": large})
    for s in report["targets"]:
        if isinstance(models[s], CTNet):
            save_ctnet(out / f"model_{s}.pt", models[s], out / "source.pt", meta={**meta, "scenario": s})
        else:                                # ctnet.adapters: false, plain pretrain-then-finetune targets
            save_checkpoint(out / f"model_{s}.pt", models[s], meta={**meta, "scenario": s})
