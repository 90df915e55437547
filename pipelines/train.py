"""Stage `train`: fine-tune one reference row (sass, sass_base, dssm_mixed, dssm_single)."""

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
    p.add_argument("--row", required=True, choices=["sass", "sass_base", "dssm_mixed", "dssm_single"])
    p.add_argument("--features", default="data/features")
    p.add_argument("--pretrained", default="models/pretrain/model.pt", help="stage-1 checkpoint (row sass)")
    p.add_argument("--out", default=None, help="default: models/<row>")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from sass_retrieval.train.checkpoint import load_model, save_checkpoint
    from sass_retrieval.train.distributed import init_from_env, is_main
    from sass_retrieval.train.recipes import train_row

    init_from_env()  # under torchrun: join the gloo process group; standalone: no-op
    t0 = time.perf_counter()
    run = load_run(args.params)
    out = safe_path(args.out or f"models/{args.row}")
    out.mkdir(parents=True, exist_ok=True)
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
    if args.row == "dssm_single":
        for s, m in models.items():
            save_checkpoint(out / f"model_{s}.pt", m, meta={**meta, "scenario": s})
    else:
        save_checkpoint(out / "model.pt", next(iter(models.values())), meta=meta)
    for f in out.rglob("resume*.pt*"):
        f.unlink()
    write_json(out / "report.json", {"row": args.row, "report": report, "seconds": round(time.perf_counter() - t0, 2)})
    log.info("trained %s in %.1fs", args.row, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
