"""Stage `pretrain`: cross-scenario contrastive pretraining of the SASS towers."""

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

log = logging.getLogger("pretrain")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--features", default="data/features")
    p.add_argument("--out", default="models/pretrain")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from sass_retrieval.models.checkpoint import load_model
    from sass_retrieval.train.checkpoint import save_checkpoint
    from sass_retrieval.train.distributed import init_from_env, is_main
    from sass_retrieval.train.recipes import run_pretraining

    init_from_env()  # under torchrun: join the gloo process group; standalone: no-op
    t0 = time.perf_counter()
    run = load_run(args.params)
    out = safe_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params, init = run.params, None
    warm = warm_start_path(params, "models/pretrain/model.pt")
    if warm is not None:
        init, _ = load_model(warm)
        params = incremental_params(params, ("pretrain",))
    from sass_retrieval.models.bank import split_scenarios

    bank = bank_for(run, args.features, "sass") if get(params, "pretrain.enabled") else None
    model, report = run_pretraining(bank, params, int(get(params, "train.seed")), out, init=init,
                                    progress=not args.no_progress, scenarios=split_scenarios(safe_path(args.features)))
    if not is_main():
        return 0
    save_checkpoint(out / "model.pt", model, meta={"stage": "pretrain", "window": run.window.__dict__,
                                                   "warm_start": str(warm) if warm else None})
    (out / "resume.pt").unlink(missing_ok=True)
    if not (out / "loss.csv").exists():
        (out / "loss.csv").write_text("step,epoch,loss\n")
    write_json(out / "report.json", {**report, "seconds": round(time.perf_counter() - t0, 2)})
    log.info("pretraining done in %.1fs", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
