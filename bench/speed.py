"""Speed: wall time of every stage of the daily pipeline on KuaiRand-Pure (dev window), and training
throughput of pretraining and fine-tuning for dssm_mixed and sass beside torch-rechub's DSSM.

    python bench/speed.py            # threads: params.yaml train.threads (--threads N to override)
    python bench/speed.py --source synthetic   # the same on the params' own data (data.synthetic, their window)

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
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sass_retrieval/__init__.py
import torch  # noqa: E402
import yaml  # noqa: E402
from bench_cli import bench_parser, bench_provenance, params_options, parse_sets, source_option  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stage_timer import dvc_plan, run_stage, table  # noqa: E402

from sass_retrieval.experiment import write_results  # noqa: E402

if TYPE_CHECKING:
    from sass_retrieval.params_schema import Params

NAMES = ["1", "0", "4", "6", "2", "other"]


def row_arch(row: str, params: Params) -> str:
    """``dssm_*`` rows are plain two-towers; ``sass@<arch>`` is the sass row with ``model.arch`` = <arch>
    (``sass@star``: STAR alone); ``sass`` the params' own."""
    if row.startswith("dssm"):
        return "dssm"
    return row.split("@", 1)[1] if "@" in row else params.model.arch


def throughput(work: Path, params: Params, steps: int, repeats: int, rows: tuple[str, ...] = ("dssm_mixed", "sass")
               ) -> list[dict]:
    """Samples per second of the product's own training loops (train.finetune / train.pretrain, the functions
    the pipeline's stages call), each run for ``steps`` optimizer steps: no second implementation of a step.

    Every row is timed once per repeat, rows interleaved (A B A B ...), so a change in the machine's load
    hits every row alike; the median over repeats is reported, and the ratio of two rows is taken per repeat.
    """
    import tempfile

    from sass_retrieval.models.bank import bank_for, model_config
    from sass_retrieval.models.retrieval import RetrievalModel
    from sass_retrieval.run import load_run
    from sass_retrieval.train.finetune import finetune
    from sass_retrieval.train.pretrain import pretrain
    from sass_retrieval.train.recipes import finetune_job, loop_settings

    p = params.override({"finetune.epochs": 1, "finetune.max_steps_per_epoch": steps, "pretrain.epochs": 1,
                         "pretrain.max_steps_per_epoch": steps, "finetune.early_stopping": False,
                         "train.checkpoint_every": 0}, source="throughput")
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
                    rep = finetune(model, bank, finetune_job(p, 0, progress=False), Path(tmp))["refit"]
                    n = rep["steps"] * p.finetune.batch_size
                else:
                    rep = pretrain(model, bank, p.pretrain, loop_settings(p.pretrain, p.train, 0, progress=False),
                                   Path(tmp))
                    n = rep["steps"] * 2 * p.pretrain.batch_size  # user pairs + item pairs
                return n / (time.perf_counter() - t0)

        for j in jobs:  # warm-up
            once(*j)
        for _ in range(repeats):
            for j in jobs:
                rates[j].append(once(*j))
        out = []
        for (row, stage), r in rates.items():
            out.append({"model": row, "stage": stage, "samples_per_s": statistics.median(r), "runs": r,
                        "batch_size": (p.finetune if stage == "fine-tuning" else p.pretrain).batch_size,
                        "emb_dim": p.model.emb_dim,
                        "negatives": p.finetune.negatives if stage == "fine-tuning" else "2n-2 in batch"})
        a = rates[(rows[0], "fine-tuning")]
        for other in rows[1:]:   # every row against the first, per repeat
            b = rates[(other, "fine-tuning")]
            out.append({"ratio": f"{other} / {rows[0]} fine-tuning", "per_repeat": [y / x for x, y in zip(a, b, strict=True)],
                        "median": statistics.median(y / x for x, y in zip(a, b, strict=True))})
        return out
    finally:
        os.chdir(old)


def speed_params(args: argparse.Namespace) -> Params:
    """The params file with the benchmark's settings, then the --set overrides: on KuaiRand-Pure its dev window
    and tabs; the daily path only (candidate, challenger, popular); ``--threads`` (default train.threads)."""
    from sass_retrieval.config import load_params

    base = load_params(args.params)
    args.threads = args.threads or base.train.threads
    fixed: dict[str, object] = {"train.threads": args.threads, "publish.dir": "published",
                                "evaluate.benchmark_rows": []}
    if args.source == "kuairand":
        fixed |= {"data.source": "kuairand", "data.kuairand_dir": str(Path(args.data_dir).resolve()),
                  "window.end_date": 20220505, "window.train_days": 8, "window.test_days": 3,
                  "scenarios.names": args.scenarios.split(",") + ["other"] if args.scenarios else NAMES,
                  "scenarios.min_scenario_rows": 1000}
    return base.override({**fixed, **dict(parse_sets(args.set))}, source="speed settings")


def write_params(work: Path, params: Params) -> None:
    """The work folder's params.yaml, which the stages read."""
    (work / "params.yaml").write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))


CASCADE_STAGES = ("rank", "rerank", "evaluate")   # what the pre-ranker and the re-ranker add to a day


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
    source_option(p)
    params_options(p, "finetune.epochs=2")
    args = p.parse_args(argv)
    params = speed_params(args)
    torch.set_num_threads(args.threads)
    prov = bench_provenance(__file__, argv)
    work = Path(args.work)
    env = {"SASS_ALLOW_EXTERNAL_PATHS": "1", "OMP_NUM_THREADS": str(args.threads)}
    if args.stages:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        write_params(work, params)
        rows = [run_stage(name, cmd, work, env) for name, cmd in dvc_plan(work)]  # every stage of dvc.yaml
    else:
        rows = []
    total = sum(r.seconds for r in rows)
    rank_cost = ""
    if args.stages and (params.rank.enabled or params.rerank.enabled):
        # the same day without the pre-ranker and the re-ranker, in the same run: rank and rerank (off) and
        # evaluate again, the rest unchanged
        write_params(work, params.override({"rank.enabled": False, "rerank.enabled": False}, source="rank off"))
        off = {r.stage: r for r in (run_stage(name, cmd, work, env) for name, cmd in dvc_plan(work)
                                    if name in CASCADE_STAGES)}
        write_params(work, params)
        on = {r.stage: r.seconds for r in rows if r.stage in off}
        without = total - sum(on.values()) + sum(r.seconds for r in off.values())
        rank_cost = ("The pre-ranker's and the re-ranker's cost (issue 31's target: the first day within 1.3x of the "
                     "day without the pre-ranker): " + ", ".join(f"{name} {on.get(name, 0):.1f} s" for name in off)
                     + " with them; " + ", ".join(f"{name} {r.seconds:.1f} s" for name, r in off.items())
                     + f" with rank.enabled and rerank.enabled false: the day takes **{total / without:.2f}x** the "
                     f"day without them ({without:.0f} s); without the re-ranker alone it would take "
                     f"{(total - on.get('rerank', 0) + off['rerank'].seconds) / without:.2f}x (evaluate still "
                     "measures both).\n\n")
    inc_rows: list = []
    if args.stages and args.incremental_day:
        # KuaiRand-Pure ends on the dev window's last day: the same window again
        write_params(work, params.override({"train.mode": "incremental"}, source="incremental day"))
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
    data = "KuaiRand-Pure (dev window)" if args.source == "kuairand" else "the synthetic generator"
    stages = (f"## Daily pipeline on {data}, {args.threads} threads\n\n{table(rows)}\n\n"
              f"Whole pipeline, first day (train.mode=full, the whole {params.window.train_days}-day window "
              f"from scratch): **{total:.0f} s** (target: at most 90 s on 2 cores).\n\n" + rank_cost) if rows else ""
    if inc_rows:
        stages += (f"## An incremental day: train.mode=incremental (warm start from the published model, "
                   f"{params.train.incremental_epochs} epochs on the newest {params.train.incremental_days} "
                   f"day(s)), {args.threads} threads\n\n{table(inc_rows)}\n\n"
                   f"Whole pipeline, incremental day: **{inc_total:.0f} s** (target: at most 90 s on 2 cores).\n\n")
    body = (stages + f"## Training throughput ({args.steps} steps × {args.repeats} runs, median)\n\n" + "\n".join(tp_lines) + "\n")
    print(body)
    title = "Speed on KuaiRand-Pure" if args.source == "kuairand" else "Speed on the synthetic generator"
    write_results(Path(args.out), title, prov, body,
                  {"stages": [r.__dict__ for r in rows], "total_seconds": total, "rank_cost": rank_cost,
                   "incremental_stages": [r.__dict__ for r in inc_rows], "incremental_total_seconds": inc_total,
                   "throughput": tp})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
