"""Speed: wall time of every stage of the daily pipeline on KuaiRand-Pure (dev window), and training
throughput of pretraining and fine-tuning for dssm_mixed and sass beside torch-rechub's DSSM.

    python bench/speed.py --threads 2

Stages run as separate processes (`python -m pipelines.<stage>`, as dvc.yaml runs them) under
/usr/bin/time. Throughput is measured in one process, after warm-up, as the median of several timed
runs of a fixed number of optimizer steps. Writes bench/results/speed.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sass_retrieval/__init__.py
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from bench_cli import bench_parser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stage_timer import dvc_plan, run_stage, table  # noqa: E402

from sass_retrieval.experiment import provenance, write_results  # noqa: E402

NAMES = ["1", "0", "4", "6", "2", "other"]


def throughput(work: Path, params: dict, steps: int, repeats: int) -> list[dict]:
    """Samples per second of our training steps (pretraining pairs, fine-tuning clicks)."""
    from pipelines.common import bank_for, load_run
    from sass_retrieval.models.retrieval import RetrievalModel
    from sass_retrieval.train.finetune import _day_batches, _positives, batch_loss
    from sass_retrieval.train.loop import make_optimizer, step_rng
    from sass_retrieval.train.losses import nt_xent
    from sass_retrieval.train.pretrain import _views_item, _views_user
    from sass_retrieval.train.recipes import finetune_settings, loop_settings, model_config
    from sass_retrieval.train.sampler import NegativeSampler

    old = Path.cwd()
    os.chdir(work)
    try:
        run = load_run("params.yaml")
        out = []
        for arch, row in (("dssm", "dssm_mixed"), ("sass", "sass")):
            bank = bank_for(run, "data/features", arch)
            torch.manual_seed(0)
            model = RetrievalModel(model_config(params, bank.scenarios, arch))
            opt = make_optimizer(model, loop_settings(params, "finetune", 0, False))
            s = finetune_settings(params, 0, progress=False)
            samplers = {bank.scen_index(n): NegativeSampler(bank.per[n].pool, bank.per[n].exposures, s.alpha)
                        for n in bank.scenarios}
            pos = _positives(bank, bank.scenarios, set(range(len(bank.train_dates))))
            plan = _day_batches(pos["day"], s.batch_size, np.random.default_rng(0))

            def ft(n: int, plan=plan, pos=pos, model=model, bank=bank, samplers=samplers, opt=opt, s=s) -> int:
                seen = 0
                for i in range(n):
                    idx = plan[i % len(plan)]
                    opt.zero_grad()
                    batch_loss(model, bank, samplers, pos, idx, s, step_rng(0, 0, i)).backward()
                    opt.step()
                    seen += len(idx)
                return seen

            def pt(n: int, model=model, bank=bank, opt=opt) -> int:
                bs = int(params["pretrain"]["batch_size"])
                seen = 0
                for i in range(n):
                    rng = step_rng(0, 0, i)
                    loss = torch.zeros(())
                    for pairs, views, tower in ((bank.user_pairs, _views_user, model.user_vectors),
                                                (bank.item_pairs, _views_item, model.item_vectors)):
                        sel = pairs[rng.choice(len(pairs), size=min(bs, len(pairs)), replace=False)]
                        va, vb = views(bank, sel, rng, 0.5)
                        loss = loss + nt_xent(tower(va)[0], tower(vb)[0], 0.1)
                        seen += len(sel)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                return seen

            stages = [("fine-tuning", ft)] + ([("pretraining", pt)] if arch == "sass" else [])
            for stage, fn in stages:
                fn(2)  # warm-up
                rates = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    n = fn(steps)
                    rates.append(n / (time.perf_counter() - t0))
                out.append({"model": row, "stage": stage, "samples_per_s": statistics.median(rates),
                            "runs": rates, "batch_size": s.batch_size if stage == "fine-tuning" else
                            int(params["pretrain"]["batch_size"]), "emb_dim": params["model"]["emb_dim"],
                            "negatives": s.negatives if stage == "fine-tuning" else "2n-2 in batch"})
        return out
    finally:
        os.chdir(old)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "speed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {**params["data"], "source": "kuairand", "kuairand_dir": str(Path(args.data_dir).resolve())}
    params["window"] = {"end_date": 20220505, "train_days": 8, "test_days": 3}
    params["scenarios"] = {"names": NAMES, "min_scenario_rows": 1000}
    params["train"] = {**params["train"], "threads": args.threads}
    params["publish"] = {**params["publish"], "dir": "published"}
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {"SASS_ALLOW_EXTERNAL_PATHS": "1", "OMP_NUM_THREADS": str(args.threads)}
    rows = [run_stage(name, cmd, work, env) for name, cmd in dvc_plan(work)]  # every stage of dvc.yaml
    total = sum(r.seconds for r in rows)
    tp = throughput(work, params, args.steps, args.repeats)
    if args.peer:
        from peer_rows import measure_throughput

        tp += measure_throughput(work / "data" / "store", params, args.steps, args.repeats)
    tp_lines = ["| model | stage | batch | emb dim | negatives | samples/s (median) |", "|---|---|---:|---:|---|---:|"]
    tp_lines += [f"| {t['model']} | {t['stage']} | {t['batch_size']} | {t['emb_dim']} | {t['negatives']} | "
                 f"{t['samples_per_s']:,.0f} |" for t in tp]
    body = (f"## Daily pipeline on KuaiRand-Pure (dev window), {args.threads} threads\n\n{table(rows)}\n\n"
            f"Whole pipeline: **{total / 60:.1f} min** (target: at most 5 min).\n\n"
            f"## Training throughput ({args.steps} steps × {args.repeats} runs, median)\n\n" + "\n".join(tp_lines) + "\n")
    print(body)
    write_results(Path(args.out), "Speed on KuaiRand-Pure", provenance(sys.argv), body,
                  {"stages": [r.__dict__ for r in rows], "total_seconds": total, "throughput": tp})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
