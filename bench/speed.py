"""Speed: wall time of every stage of the daily pipeline on KuaiRand-Pure (dev window), and training
throughput of pretraining and fine-tuning for dssm_mixed and sass beside torch-rechub's DSSM.

    python bench/speed.py            # threads: params.yaml train.threads (--threads N to override)

The first day trains on the whole window from scratch (``train.mode: full``, the default); the second day
(``--incremental-day``, on by default) runs every stage again in ``train.mode: incremental``: it warm-starts
from the model the first day published and trains ``train.incremental_epochs`` epochs on the newest day, which
is what a scheduled daily retraining costs once the first model exists. KuaiRand-Pure ends on the dev
window's last day, so the incremental day re-runs the same window (same ingest, validation and split sizes).

Stages run as separate processes (`python -m pipelines.<stage>`, as dvc.yaml runs them) under
/usr/bin/time. Throughput is measured in one process, after warm-up, as the median of several timed
runs of a fixed number of optimizer steps. Writes bench/results/speed.{md,json}.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sass_retrieval/__init__.py
import torch  # noqa: E402
import yaml  # noqa: E402
from bench_cli import bench_parser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stage_timer import dvc_plan, run_stage, table  # noqa: E402

from sass_retrieval.experiment import provenance, write_results  # noqa: E402

NAMES = ["1", "0", "4", "6", "2", "other"]


def row_arch(row: str, params: dict) -> str:
    """``dssm_*`` rows are plain two-towers; ``sass@<arch>`` is the sass row with ``model.arch`` = <arch>
    (``sass@star``: STAR alone); ``sass`` the params' own."""
    if row.startswith("dssm"):
        return "dssm"
    return row.split("@", 1)[1] if "@" in row else str(params["model"]["arch"])


def throughput(work: Path, params: dict, steps: int, repeats: int, rows: tuple[str, ...] = ("dssm_mixed", "sass")
               ) -> list[dict]:
    """Samples per second of the product's own training loops (train.finetune / train.pretrain, the functions
    the pipeline's stages call), each run for ``steps`` optimizer steps: no second implementation of a step.

    Every row is timed once per repeat, rows interleaved (A B A B ...), so a change in the machine's load
    hits every row alike; the median over repeats is reported, and the ratio of two rows is taken per repeat.
    """
    import copy
    import tempfile

    from pipelines.common import bank_for, load_run
    from sass_retrieval.models.retrieval import RetrievalModel
    from sass_retrieval.train.finetune import finetune
    from sass_retrieval.train.pretrain import pretrain
    from sass_retrieval.train.recipes import finetune_settings, model_config, pretrain_settings

    p = copy.deepcopy(params)
    for sec in ("finetune", "pretrain"):
        p[sec].update(epochs=1, max_steps_per_epoch=steps)
    p["finetune"]["early_stopping"] = False
    p["train"]["checkpoint_every"] = 0
    old = Path.cwd()
    os.chdir(work)
    try:
        run = load_run("params.yaml")
        bank = bank_for(run, "data/features")     # the bank does not depend on the tower
        jobs = [(row, "fine-tuning") for row in rows] + [("sass", "pretraining")]
        rates: dict[tuple[str, str], list[float]] = {j: [] for j in jobs}

        def once(row: str, stage: str) -> float:
            arch = row_arch(row, p)
            torch.manual_seed(0)
            model = RetrievalModel(model_config(p, bank.scenarios, arch))
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                if stage == "fine-tuning":
                    rep = finetune(model, bank, finetune_settings(p, 0, progress=False), Path(tmp))["refit"]
                    n = rep["steps"] * int(p["finetune"]["batch_size"])
                else:
                    rep = pretrain(model, bank, pretrain_settings(p, 0, progress=False), Path(tmp))
                    n = rep["steps"] * 2 * int(p["pretrain"]["batch_size"])  # user pairs + item pairs
                return n / (time.perf_counter() - t0)

        for j in jobs:  # warm-up
            once(*j)
        for _ in range(repeats):
            for j in jobs:
                rates[j].append(once(*j))
        out = []
        for (row, stage), r in rates.items():
            out.append({"model": row, "stage": stage, "samples_per_s": statistics.median(r), "runs": r,
                        "batch_size": int(p["finetune" if stage == "fine-tuning" else "pretrain"]["batch_size"]),
                        "emb_dim": p["model"]["emb_dim"],
                        "negatives": p["finetune"]["negatives"] if stage == "fine-tuning" else "2n-2 in batch"})
        a = rates[(rows[0], "fine-tuning")]
        for other in rows[1:]:   # every row against the first, per repeat
            b = rates[(other, "fine-tuning")]
            out.append({"ratio": f"{other} / {rows[0]} fine-tuning", "per_repeat": [y / x for x, y in zip(a, b, strict=True)],
                        "median": statistics.median(y / x for x, y in zip(a, b, strict=True))})
        return out
    finally:
        os.chdir(old)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "speed")
    p.add_argument("--threads", type=int, default=None, help="default: params.yaml train.threads")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--stages", action=argparse.BooleanOptionalAction, default=True,
                   help="time every stage of dvc.yaml first (--no-stages: throughput only, on a prepared --work)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rows", default="dssm_mixed,sass",
                   help="fine-tuning rows to time, the first is the ratios' reference; sass@star: sass with model.arch star")
    p.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--incremental-day", action=argparse.BooleanOptionalAction, default=True,
                   help="after the first (full) day, time the next day in train.mode=incremental")
    args = p.parse_args(argv)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    args.threads = args.threads or int(params["train"]["threads"])
    torch.set_num_threads(args.threads)
    params["data"] = {**params["data"], "source": "kuairand", "kuairand_dir": str(Path(args.data_dir).resolve())}
    params["window"] = {"end_date": 20220505, "train_days": 8, "test_days": 3}
    params["scenarios"] = {"names": NAMES, "min_scenario_rows": 1000}
    params["train"] = {**params["train"], "threads": args.threads}
    params["publish"] = {**params["publish"], "dir": "published"}
    params["evaluate"] = {**params["evaluate"], "benchmark_rows": []}  # the daily path: candidate, challenger, popular
    work = Path(args.work)
    env = {"SASS_ALLOW_EXTERNAL_PATHS": "1", "OMP_NUM_THREADS": str(args.threads)}
    if args.stages:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        rows = [run_stage(name, cmd, work, env) for name, cmd in dvc_plan(work)]  # every stage of dvc.yaml
    else:
        rows = []
    total = sum(r.seconds for r in rows)
    inc_rows: list = []
    if args.stages and args.incremental_day:
        day2 = copy.deepcopy(params)   # KuaiRand-Pure ends on the dev window's last day: the same window again
        day2["train"]["mode"] = "incremental"
        (work / "params.yaml").write_text(yaml.safe_dump(day2, sort_keys=False))
        inc_rows = [run_stage(name, cmd, work, env) for name, cmd in dvc_plan(work)]
    inc_total = sum(r.seconds for r in inc_rows)
    tp = throughput(work, params, args.steps, args.repeats, tuple(args.rows.split(",")))
    if args.peer:
        from peer_rows import measure_throughput

        tp += measure_throughput(work / "data" / "store", params, args.steps, args.repeats)
    tp_lines = ["| model | stage | batch | emb dim | negatives | samples/s (median) |", "|---|---|---:|---:|---|---:|"]
    tp_lines += [f"| {t['model']} | {t['stage']} | {t['batch_size']} | {t['emb_dim']} | {t['negatives']} | "
                 f"{t['samples_per_s']:,.0f} |" for t in tp if "model" in t]
    tp_lines += [f"\nRatio {t['ratio']} (measured per repeat, same run): median **{t['median']:.2f}×** "
                 f"({', '.join(f'{x:.2f}' for x in t['per_repeat'])})" for t in tp if "ratio" in t]
    stages = (f"## Daily pipeline on KuaiRand-Pure (dev window), {args.threads} threads\n\n{table(rows)}\n\n"
              f"Whole pipeline, first day (train.mode=full, the whole {params['window']['train_days']}-day window "
              f"from scratch): **{total:.0f} s** (target: at most 90 s on 2 cores).\n\n") if rows else ""
    if inc_rows:
        stages += (f"## An incremental day: train.mode=incremental (warm start from the published model, "
                   f"{params['train']['incremental_epochs']} epochs on the newest {params['train']['incremental_days']} "
                   f"day(s)), {args.threads} threads\n\n{table(inc_rows)}\n\n"
                   f"Whole pipeline, incremental day: **{inc_total:.0f} s** (target: at most 90 s on 2 cores).\n\n")
    body = (stages + f"## Training throughput ({args.steps} steps × {args.repeats} runs, median)\n\n" + "\n".join(tp_lines) + "\n")
    print(body)
    write_results(Path(args.out), "Speed on KuaiRand-Pure", provenance(sys.argv), body,
                  {"stages": [r.__dict__ for r in rows], "total_seconds": total,
                   "incremental_stages": [r.__dict__ for r in inc_rows], "incremental_total_seconds": inc_total,
                   "throughput": tp})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
