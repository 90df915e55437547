"""Scale: the daily pipeline on synthetic days of growing size: wall time and peak memory of every stage,
training throughput with one and two processes, and the workers a day needs.

    python bench/scale.py                       # 10M, 30M and 100M interactions
    python bench/scale.py --rows 1000000 --next-day

For each size (users and items grow with it, 12 days, a window of 8 training + 2 test days):

1. every stage of dvc.yaml but the params check and the run report (what the daily run computes: the candidate
   `sass`, its challenger (publish.challenger), scored beside `popular`), each its own process under
   /usr/bin/time. Training stages are capped at ``--train-steps`` steps per epoch (one epoch): a full epoch at
   100M rows is hours on 2 cores, and what the projection needs is the rate;
2. the fine-tuning stage again with ``train.procs_per_node`` 1 and 2 (torchrun, gloo), same cap, same run:
   positives per second of each and the scaling efficiency;
3. a projection: the workers (``--cores-per-worker`` cores, one training process per core) that fine-tune the
   day's positives for ``finetune.epochs`` (the shipped params) within ``--budget-minutes``, at the measured
   two-process rate, assuming the two-process efficiency holds across nodes (the all-reduce then crosses a
   network, so this is a lower bound);
4. with ``--next-day``: the next day as ``train.mode: incremental`` and the same day retrained in full (no cap).

Writes bench/results/scale.{md,json}; each size is written as soon as it is measured.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import bench_parser, bench_provenance  # noqa: E402
from stage_timer import StageTime, dvc_plan, run_stage, table  # noqa: E402

from sass_retrieval.config import load_params, shift  # noqa: E402
from sass_retrieval.experiment import write_results  # noqa: E402
from sass_retrieval.orchestration.dvc_graph import load_graph  # noqa: E402

if TYPE_CHECKING:
    from sass_retrieval.params_schema import Params

UNTIMED = {"params", "report"}                 # the params check and the HTML report: not the daily compute
DATA = {"validate", "split", "pairs", "shards"}
DATA_PATH = {"ingest", "validate", "split", "pairs", "shards"}   # the data path of the targets: ingest -> shards
TRAINING = {"pretrain", "finetune", "challenger", "reference"}   # dvc.yaml's training stages
DATA_PATH_TARGET = {"minutes": 15, "peak_mib": 6 * 1024, "rows": 100_000_000, "rss_growth": 1.5}
DDP_TARGET = 1.7


def daily(work: Path, env: dict[str, str], ingest: bool, data: bool = True, publish: bool = True) -> list[StageTime]:
    """The daily stages, dvc.yaml's commands resolved for the work folder's params: every stage but UNTIMED,
    so whatever the daily run trains (the candidate, the challenger, any stage added later) is trained here;
    without ingest, the data stages or publish when asked."""
    groups = set(load_graph(work, str(ROOT / "dvc.yaml")).groups()) - UNTIMED
    groups -= set() if ingest else {"ingest"}
    groups -= set() if data else DATA
    groups -= set() if publish else {"publish"}
    done: list[StageTime] = []
    for name, cmd in dvc_plan(work, groups):
        done.append(run_stage(name, cmd, work, env, check=False))
        if done[-1].error:   # what depends on it can not run; the size records how far it went
            break
    return done


def quality(work: Path) -> dict[str, float]:
    """Macro NDCG@50 of every row this run evaluated (the protocol of docs/benchmark.md, synthetic window)."""
    m = json.loads((work / "metrics" / "metrics.json").read_text())
    return {row: res["macro"]["ndcg@50"] for row, res in m["rows"].items()}


def training_s(rows: list[StageTime]) -> float:
    return sum(r.seconds for r in rows if r.stage.split("@")[0] in TRAINING)


def data_path(rows: list[StageTime]) -> dict[str, float]:
    """Wall seconds and peak RSS of ingest -> validate -> split -> pairs (the shards training reads)."""
    part = [r for r in rows if r.stage.split("@")[0] in DATA_PATH]
    return {"seconds": sum(r.seconds for r in part), "peak_mib": max((r.peak_mib for r in part), default=0.0)}


def size_params(base: Params, n: int, threads: int, train_steps: int = 0) -> tuple[Params, int, int]:
    """The benchmark's params for ``n`` interactions (users and items grow with it), and those counts.
    ``train_steps`` > 0 caps every training stage at that many steps of one epoch. Training streams its
    positives from the shards (``train.input: stream``): held in memory, the positives of a 30M-row window
    already take a training process to several GiB, and every DDP process holds its own copy."""
    users, items = max(3000, n // 50), max(1500, n // 200)
    cap = {"finetune.max_steps_per_epoch": train_steps, "pretrain.max_steps_per_epoch": train_steps} if train_steps else {}
    return base.override({
        "data.synthetic.rows": n, "data.synthetic.users": users, "data.synthetic.items": items,
        "data.synthetic.days": 12, "validation.min_rows_per_day": 100,
        "window.end_date": shift(20220425, 10), "window.train_days": 8, "window.test_days": 2,
        "finetune.epochs": 1, "finetune.early_stopping": False, "finetune.batch_size": 2048,
        "pretrain.epochs": 1, "pretrain.batch_size": 2048, "train.threads": threads, "train.incremental_epochs": 1,
        "evaluate.rows": ["popular", "sass"], "evaluate.benchmark_rows": [], "train.input": "stream", **cap},
        source=f"scale {n} rows"), users, items


def write_params(work: Path, params: Params) -> None:
    (work / "params.yaml").write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))


def positives(work: Path) -> int:
    """The day's fine-tuning positives (clicks) over the training window: the split's stats of every scenario."""
    return sum(int(json.loads(f.read_text()).get("positives", 0)) for f in (work / "data" / "features").glob("*/stats.json"))


def training_rate(work: Path, params: Params, env: dict[str, str], procs: int, threads: int) -> dict[str, float]:
    """Fine-tune `sass` once with ``procs`` processes (torchrun) sharing ``threads`` torch threads (the cap of
    size_params): positives per second.

    The cap counts global steps and each rank takes every procs-th batch, so the run trains steps x batch_size
    positives whatever ``procs`` is (the last batch of a day may be short: a slight overestimate, the same for
    every count). The rate is over the training loop's own seconds (report.json), without the feature bank's
    loading, which does not shrink with more processes."""
    write_params(work, params.override({"train.procs_per_node": procs, "train.threads": threads},
                                       source=f"{procs} training process(es), {threads} thread(s)"))
    (cmd,) = [c for name, c in dvc_plan(work, {"finetune"})]
    stage = run_stage(f"finetune x{procs}", cmd, work, {**env, "OMP_NUM_THREADS": str(max(1, threads // procs))})
    report = json.loads((work / "models" / "sass" / "report.json").read_text())["report"]
    trained = procs * int(report["steps"]) * params.finetune.batch_size
    return {"procs": procs, "threads": threads, "steps_per_rank": int(report["steps"]), "positives": trained,
            "train_seconds": float(report["seconds"]), "stage_seconds": stage.seconds, "peak_mib": stage.peak_mib,
            "positives_per_s": trained / float(report["seconds"])}


RATE_RUNS = ((1, 1), (1, 2), (2, 2))   # (processes, threads in all): one core, the machine in one process, DDP


def projection(day_positives: int, epochs: int, rate2: float, cores_per_worker: int, budget_min: float) -> dict:
    """Workers that fine-tune ``day_positives`` x ``epochs`` within the budget at the two-process rate."""
    per_worker = rate2 * cores_per_worker / 2.0
    needed = day_positives * epochs / (budget_min * 60.0)
    return {"day_positives": day_positives, "epochs": epochs, "positives_per_s_needed": needed,
            "per_worker_positives_per_s": per_worker, "workers": max(1, math.ceil(needed / per_worker)),
            "cores_per_worker": cores_per_worker, "budget_minutes": budget_min}


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "scale", kuairand=False)
    p.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 30_000_000, 100_000_000])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=100, help="steps of the one capped training epoch")
    p.add_argument("--cores-per-worker", type=int, default=2)
    p.add_argument("--budget-minutes", type=float, default=60.0)
    p.add_argument("--next-day", action="store_true", help="also an incremental next day and its full retrain "
                                                           "(uncapped: for sizes up to about 10M)")
    p.add_argument("--append", action="store_true", help="keep the other sizes already in the results file")
    p.add_argument("--params", default=str(ROOT / "params.yaml"), help="the params every size starts from")
    args = p.parse_args(argv)
    base = load_params(args.params)
    env = {"SASS_ALLOW_EXTERNAL_PATHS": "1", "OMP_NUM_THREADS": str(args.threads)}
    out = Path(args.out)
    prov = bench_provenance(__file__, argv)
    results: list[dict] = []
    if args.append and out.with_suffix(".json").exists():
        results = [r for r in json.loads(out.with_suffix(".json").read_text())["results"] if r["rows"] not in args.rows]
    for n in args.rows:
        params, users, items = size_params(base, n, args.threads, args.train_steps)
        work = Path(args.work) / f"rows{n}"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        write_params(work, params)
        full = daily(work, env, ingest=True)
        failed = next((x.stage for x in full if x.error), None)
        r = {"rows": n, "users": users, "items": items, "full": [x.__dict__ for x in full], "failed": failed,
             "data_path": data_path(full), "train_full_s": training_s(full), "train_steps": args.train_steps,
             "train_input": params.train.input,
             "ndcg50": {"day1_full": {} if failed else quality(work)},
             "provenance": {k: prov[k] for k in ("command", "date", "commit")}}
        if failed is not None and (failed.split("@")[0] in DATA_PATH or failed.startswith("pretrain")):
            results.append(r)   # no shards to train on: nothing more to measure at this size
            _write(sorted(results, key=lambda x: x["rows"]), out, prov)
            continue
        rates = [training_rate(work, params, env, procs, threads) for procs, threads in RATE_RUNS]
        r["rates"] = rates
        one_core, one_proc, ddp = (x["positives_per_s"] for x in rates)
        r["ddp_speedup"] = ddp / one_core            # two processes on two cores against one on one core
        r["ddp_vs_one_process"] = ddp / one_proc     # ... against one process with both cores' threads
        r["projection"] = projection(positives(work), base.finetune.epochs, max(ddp, one_proc),
                                     args.cores_per_worker, args.budget_minutes)
        if args.next_day and failed is None:
            uncapped, _, _ = size_params(base, n, args.threads)
            day2 = {"window.end_date": shift(20220425, 11)}
            write_params(work, uncapped.override({**day2, "train.mode": "incremental"}, source="incremental day"))
            incr = daily(work, env, ingest=True)   # the ingest stage is a daily feed: it adds the new day
            r["ndcg50"]["day2_incremental"] = quality(work)
            # the same next day retrained from scratch: the quality yardstick
            write_params(work, uncapped.override({**day2, "train.mode": "full"}, source="next day in full"))
            retrain = daily(work, env, ingest=False, data=False, publish=False)
            r["ndcg50"]["day2_full"] = quality(work)
            r.update({"incremental": [x.__dict__ for x in incr], "next_day_full": [x.__dict__ for x in retrain],
                      "train_incr_s": training_s(incr), "train_next_day_full_s": training_s(retrain),
                      "incremental_days": params.train.incremental_days,
                      "incremental_epochs": params.train.incremental_epochs})
        results.append(r)
        results.sort(key=lambda x: x["rows"])
        shutil.rmtree(work / "data", ignore_errors=True)
        _write(results, out, prov)  # after every size: a long run still leaves its results
    return 0


def _stages(rows: list[dict]) -> list[StageTime]:
    return [StageTime(**x) for x in rows]


def _rates(r: dict) -> str:
    lines = ["| processes | threads | steps per rank | positives | training s | positives/s | stage s | peak RSS MiB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {x['procs']} | {x.get('threads', '')} | {x['steps_per_rank']} | {x['positives']:,} | "
              f"{x['train_seconds']:.1f} | {x['positives_per_s']:,.0f} | {x['stage_seconds']:.1f} | {x['peak_mib']:.0f} |"
              for x in r["rates"]]
    pr = r["projection"]
    against = (f"; against one process with both cores' threads **{r['ddp_vs_one_process']:.2f}x**"
               if "ddp_vs_one_process" in r else "")
    return ("\n".join(lines) + f"\n\n2 processes (a core each) / 1 process on one core: **{r['ddp_speedup']:.2f}x** "
            f"(target {DDP_TARGET}x){against}. "
            f"Projection: {pr['day_positives']:,} positives x {pr['epochs']} epochs in {pr['budget_minutes']:.0f} min "
            f"needs {pr['positives_per_s_needed']:,.0f} positives/s; one {pr['cores_per_worker']}-core worker trains "
            f"{pr['per_worker_positives_per_s']:,.0f}/s: **{pr['workers']} worker(s)**.\n")


def _section(r: dict) -> str:
    full, q = _stages(r["full"]), r["ndcg50"]
    text = (f"## {r['rows']:,} interactions ({r['users']:,} users, {r['items']:,} items, 12 days; "
            f"window 8 train + 2 test)\n\n")
    if "provenance" in r:  # sizes appended by a later command say which one produced them
        text += "measured by `{command}`, {date}, commit {commit}\n\n".format(**r["provenance"])
    capped = f", training capped at {r['train_steps']} steps" if r.get("train_steps") else ""
    capped += f", training input {r.get('train_input', 'memory')}"
    text += f"### Every stage{capped}\n\n{table(full)}\n\n"
    if "rates" in r:
        text += f"### Fine-tuning throughput, 1 and 2 processes\n\n{_rates(r)}\n"
    if "incremental" not in r:
        return text
    return text + (
        f"### Next day, incremental (warm start, newest {r.get('incremental_days', 1)} day(s), "
        f"{r.get('incremental_epochs', 1)} epoch(s))\n\n{table(_stages(r['incremental']))}\n\n"
        f"### The same next day, retrained in full (training, index and evaluation only)\n\n"
        f"{table(_stages(r['next_day_full']))}\n\n"
        f"sass macro NDCG@50: day 2 incremental {q['day2_incremental']['sass']:.4f} vs full "
        f"{q['day2_full']['sass']:.4f} (popular {q['day2_full']['popular']:.4f}).\n")


def _write(results: list[dict], out: Path, prov: dict) -> None:
    t = DATA_PATH_TARGET
    summary = ["| rows | data path s | data path peak RSS MiB | every stage s | peak RSS MiB | positives/s 1 process "
               "1 thread | 1 process 2 threads | 2 processes | 2 processes / 1 on one core | workers for the day |",
               "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        f, d = r["full"], r.get("data_path") or data_path(_stages(r["full"]))
        rates = r.get("rates")
        tail = (" | ".join(f"{x['positives_per_s']:,.0f}" for x in rates) + f" | {r['ddp_speedup']:.2f}x | "
                f"{r['projection']['workers']} |" if rates else "— | — | — | — | — |")
        summary.append(f"| {r['rows']:,} | {d['seconds']:.0f} | {d['peak_mib']:.0f} | {sum(x['seconds'] for x in f):.0f} "
                       f"| {max(x['peak_mib'] for x in f):.0f} | " + tail)
    growth = ""
    by_rows = {r["rows"]: (r.get("data_path") or data_path(_stages(r["full"]))) for r in results}
    if 10_000_000 in by_rows and t["rows"] in by_rows:
        ratio = by_rows[t["rows"]]["peak_mib"] / by_rows[10_000_000]["peak_mib"]
        growth = (f"\n\nData-path peak RSS at {t['rows']:,} rows / at 10,000,000: **{ratio:.2f}x** "
                  f"(target at most {t['rss_growth']}x).")
    body = (f"Targets: a {t['rows']:,}-row day from ingest to training shards within {t['minutes']} minutes and "
            f"{t['peak_mib'] // 1024} GiB peak RSS on 2 cores; its data-path peak RSS at most {t['rss_growth']}x that "
            f"of 10M rows; 2 training processes at least {DDP_TARGET}x the positives/s of 1.\n\n"
            + "\n".join(summary) + growth + "\n\n" + "\n".join(_section(r) for r in results))
    print(body)
    write_results(out, "Scale on synthetic data", prov, body, {"results": results})


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
