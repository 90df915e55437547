"""Stage `train`: fine-tune one reference row (sass, sass_base, dssm_mixed, dssm_single, ctnet, sass_mt).

Layouts under models/<row>/: ``model.pt`` (one model for every scenario, but those with ``model_<s>.pt``: a large
scenario that kept its own best epoch, finetune.own_epoch_min_clicks), ``model_<s>.pt`` per scenario
(dssm_single), ctnet: ``source.pt`` (serves the largest scenario, unless a ``model_<largest>.pt`` holds its own
epoch of a source trained on every scenario) and a target ``model_<s>.pt`` per other scenario (models.checkpoint.load_row_model reads all three)."""

from __future__ import annotations

import logging
import time

from sass_retrieval.config import get

from .common import (
    bank_for,
    incremental_params,
    load_run,
    parser,
    safe_path,
    setup_logging,
    warm_start_path,
    write_json,
)

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--row", required=True, choices=["sass", "sass_base", "dssm_mixed", "dssm_single", "ctnet", "sass_mt"])
    p.add_argument("--features", default="data/features")
    p.add_argument("--pretrained", default="models/pretrain/model.pt", help="stage-1 checkpoint (row sass)")
    p.add_argument("--out", default=None, help="default: models/<row>")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from sass_retrieval.models.checkpoint import load_model
    from sass_retrieval.train.checkpoint import save_checkpoint
    from sass_retrieval.train.distributed import init_from_env, is_main
    from sass_retrieval.train.recipes import train_row

    init_from_env()  # under torchrun: join the gloo process group; standalone: no-op
    t0 = time.perf_counter()
    run = load_run(args.params)
    out = safe_path(args.out or f"models/{args.row}")
    out.mkdir(parents=True, exist_ok=True)
    if args.row == "ctnet":
        return train_ctnet_row(run, args.features, out, not args.no_progress, t0)
    params, init = run.params, None
    if args.row != "dssm_single":
        warm = warm_start_path(params, f"models/{args.row}/model.pt")
        if warm is not None:
            init, _ = load_model(warm)
            params = incremental_params(params, ("finetune",))
    bank = bank_for(run, args.features)
    pretrained = None
    if args.row == "sass" and init is None:
        pretrained, _ = load_model(safe_path(args.pretrained))
    seed = int(get(params, "train.seed"))
    models, report = train_row(args.row, bank, params, seed, out, pretrained=pretrained, init=init,
                               progress=not args.no_progress)
    if not is_main():
        return 0
    meta = {"row": args.row, "window": run.window.__dict__, "scenarios": bank.scenarios}
    drop_scenario_checkpoints(out)
    if args.row == "dssm_single":
        for s, m in models.items():
            save_checkpoint(out / f"model_{s}.pt", m, meta={**meta, "scenario": s})
    else:
        # one shared model, plus model_<s>.pt for a scenario that kept an epoch of its own (finetune.own_epoch_min_clicks)
        owned = set(report.get("own_models", [])) if isinstance(report, dict) else set()
        shared = next((m for s, m in models.items() if s not in owned), next(iter(models.values())))
        save_checkpoint(out / "model.pt", shared, meta=meta)
        for s, m in models.items():
            if m is not shared:
                save_checkpoint(out / f"model_{s}.pt", m, meta={**meta, "scenario": s})
    for f in out.rglob("resume*.pt*"):
        f.unlink()
    write_json(out / "report.json", {"row": args.row, "report": report, "seconds": round(time.perf_counter() - t0, 2)})
    log.info("trained %s in %.1fs", args.row, time.perf_counter() - t0)
    return 0


def drop_scenario_checkpoints(out) -> None:
    """Remove a row folder's per-scenario checkpoints (``model_<s>.pt`` and manifests), once today's models are
    trained and about to be saved: the folders persist between runs (persist: true), and yesterday's file for a
    scenario today's run does not write would otherwise still be served (models.checkpoint.row_checkpoint)."""
    for f in out.glob("model_*.pt*"):
        f.unlink()


def train_ctnet_row(run, features: str, out, progress: bool, t0: float) -> int:
    """The ctnet row: the day's source, then every other scenario's target over it (train.ctnet).

    Incremental days continue from the published ctnet models (yesterday's source and targets; the targets'
    adapters then read today's source: continual transfer); without them the row starts from scratch."""
    from sass_retrieval.models.checkpoint import load_ctnet, load_model, read_manifest
    from sass_retrieval.models.ctnet import CTNet
    from sass_retrieval.train.checkpoint import save_checkpoint, save_ctnet
    from sass_retrieval.train.ctnet import train_ctnet

    params, source_init, target_inits = run.params, None, {}
    warm = warm_start_path(params, "models/ctnet")
    if warm is not None:   # a published ctnet folder without its source is broken: CheckpointError names it
        source_init, manifest = load_model(warm / "source.pt")
        for f in sorted(warm.glob("model_*.pt")):
            s = f.stem[len("model_"):]
            if s == manifest.get("meta", {}).get("scenario"):
                continue   # the source's own-epoch model of its scenario (source=all) serves, it is no target
            is_ctnet = "ctnet" in read_manifest(f).get("meta", {})
            target_inits[s] = load_ctnet(f, warm / "source.pt", same_source=False)[0] if is_ctnet else load_model(f)[0]
        params = incremental_params(params, ("finetune",))
    bank = bank_for(run, features, "dssm")
    source, models, report = train_ctnet(bank, params, int(get(params, "train.seed")), out, source_init,
                                         target_inits, progress=progress)
    drop_scenario_checkpoints(out)
    meta = {"row": "ctnet", "window": run.window.__dict__, "scenarios": bank.scenarios,
            "warm_start": str(warm) if warm else None}
    large = report["source_scenario"]
    save_checkpoint(out / "source.pt", source, meta={**meta, "scenario": large})
    if models[large] is not source:          # source=all: the largest scenario's own epoch serves it
        save_checkpoint(out / f"model_{large}.pt", models[large], meta={**meta, "scenario": large})
    for s in report["targets"]:
        if isinstance(models[s], CTNet):
            save_ctnet(out / f"model_{s}.pt", models[s], out / "source.pt", meta={**meta, "scenario": s})
        else:                                # ctnet.adapters: false, plain pretrain-then-finetune targets
            save_checkpoint(out / f"model_{s}.pt", models[s], meta={**meta, "scenario": s})
    for f in out.rglob("resume*.pt*"):
        f.unlink()
    write_json(out / "report.json", {"row": "ctnet", "report": report, "seconds": round(time.perf_counter() - t0, 2)})
    log.info("trained ctnet in %.1fs", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
