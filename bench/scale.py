"""Scale: the daily pipeline on synthetic data at growing sizes, wall time and peak memory per stage,
and the cost of one incremental day against a full retrain.

    python bench/scale.py --rows 1000000 10000000

For each size: a full run (every stage of dvc.yaml but the params check and the run report: what the daily
run trains, the candidate `sass` and its challenger (publish.challenger), scored beside `popular`;
evaluate.benchmark_rows stays empty, the reference rows are a benchmark concern, not part of the daily cost),
then the next day as `train.mode: incremental` (its ingest adds the day to the store, as the daily feed does;
warm start from the published model, `train.incremental_epochs` over the newest `train.incremental_days`),
then the same next day retrained in full, so the incremental day's quality is compared on the same
evaluation pairs. Every stage is its own process under /usr/bin/time. Writes bench/results/scale.{md,json}.
"""

from __future__ import annotations

import json
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
DATA = {"validate", "split", "pairs"}
TRAINING = {"pretrain", "finetune", "challenger", "reference"}   # dvc.yaml's training stages


def daily(work: Path, env: dict[str, str], ingest: bool, data: bool = True, publish: bool = True) -> list[StageTime]:
    """The daily stages, dvc.yaml's commands resolved for the work folder's params: every stage but UNTIMED,
    so whatever the daily run trains (the candidate, the challenger, any stage added later) is trained here;
    without ingest, the data stages or publish when asked."""
    groups = set(load_graph(work, str(ROOT / "dvc.yaml")).groups()) - UNTIMED
    groups -= set() if ingest else {"ingest"}
    groups -= set() if data else DATA
    groups -= set() if publish else {"publish"}
    return [run_stage(name, cmd, work, env) for name, cmd in dvc_plan(work, groups)]


def quality(work: Path) -> dict[str, float]:
    """Macro NDCG@50 of every row this run evaluated (the protocol of docs/benchmark.md, synthetic window)."""
    m = json.loads((work / "metrics" / "metrics.json").read_text())
    return {row: res["macro"]["ndcg@50"] for row, res in m["rows"].items()}


def training_s(rows: list[StageTime]) -> float:
    return sum(r.seconds for r in rows if r.stage.split("@")[0] in TRAINING)


def size_params(base: Params, n: int, threads: int) -> tuple[Params, int, int]:
    """The benchmark's params for ``n`` interactions (users and items grow with it), and those counts."""
    users, items = max(3000, n // 50), max(1500, n // 200)
    return base.override({
        "data.synthetic.rows": n, "data.synthetic.users": users, "data.synthetic.items": items,
        "data.synthetic.days": 12, "validation.min_rows_per_day": 100,
        "window.end_date": shift(20220425, 10), "window.train_days": 8, "window.test_days": 2,
        "finetune.epochs": 1, "finetune.early_stopping": False, "finetune.batch_size": 2048,
        "pretrain.epochs": 1, "pretrain.batch_size": 2048, "train.threads": threads, "train.incremental_epochs": 1,
        "evaluate.rows": ["popular", "sass"], "evaluate.benchmark_rows": []}, source=f"scale {n} rows"), users, items


def write_params(work: Path, params: Params) -> None:
    (work / "params.yaml").write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "scale", kuairand=False)
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--full-only", action="store_true", help="only the first (full) day: for the largest sizes")
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
        params, users, items = size_params(base, n, args.threads)
        work = Path(args.work) / f"rows{n}"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        write_params(work, params)
        full = daily(work, env, ingest=True)
        r = {"rows": n, "users": users, "items": items, "full": [x.__dict__ for x in full],
             "train_full_s": training_s(full), "ndcg50": {"day1_full": quality(work)},
             "provenance": {k: prov[k] for k in ("command", "date", "commit")},
             "incremental_days": params.train.incremental_days,
             "incremental_epochs": params.train.incremental_epochs}
        if not args.full_only:
            day2 = {"window.end_date": shift(20220425, 11)}
            write_params(work, params.override({**day2, "train.mode": "incremental"}, source="incremental day"))
            incr = daily(work, env, ingest=True)   # the ingest stage is a daily feed: it adds the new day
            r["ndcg50"]["day2_incremental"] = quality(work)
            # the same next day retrained from scratch: the quality yardstick
            write_params(work, params.override({**day2, "train.mode": "full"}, source="next day in full"))
            retrain = daily(work, env, ingest=False, data=False, publish=False)
            r["ndcg50"]["day2_full"] = quality(work)
            r.update({"incremental": [x.__dict__ for x in incr], "next_day_full": [x.__dict__ for x in retrain],
                      "train_incr_s": training_s(incr), "train_next_day_full_s": training_s(retrain)})
        results.append(r)
        results.sort(key=lambda x: x["rows"])
        shutil.rmtree(work / "data", ignore_errors=True)
        _write(results, out, prov)  # after every size: a long run still leaves its results
    return 0


def _stages(rows: list[dict]) -> list[StageTime]:
    return [StageTime(**x) for x in rows]


def _section(r: dict) -> str:
    full, q = _stages(r["full"]), r["ndcg50"]
    text = (f"## {r['rows']:,} interactions ({r['users']:,} users, {r['items']:,} items, 12 days; "
            f"window 8 train + 2 test)\n\n")
    if "provenance" in r:  # sizes appended by a later command say which one produced them
        text += "measured by `{command}`, {date}, commit {commit}\n\n".format(**r["provenance"])
    text += f"### Full run\n\n{table(full)}\n\n"
    if "incremental" not in r:
        return text + (f"Training (pretrain + finetune) {r['train_full_s']:.0f} s; sass macro NDCG@50 "
                       f"{q['day1_full']['sass']:.4f} (popular {q['day1_full']['popular']:.4f}). "
                       "Full day only (`--full-only`).\n")
    return text + (
        f"### Next day, incremental (warm start, newest {r.get('incremental_days', 1)} day(s), "
        f"{r.get('incremental_epochs', 1)} epoch(s))\n\n{table(_stages(r['incremental']))}\n\n"
        f"### The same next day, retrained in full (training, index and evaluation only)\n\n"
        f"{table(_stages(r['next_day_full']))}\n\n"
        f"Training (pretrain + finetune): day 1 full {r['train_full_s']:.0f} s; day 2 incremental "
        f"{r['train_incr_s']:.0f} s vs full {r['train_next_day_full_s']:.0f} s. sass macro NDCG@50: day 1 full "
        f"{q['day1_full']['sass']:.4f}; day 2 incremental {q['day2_incremental']['sass']:.4f} vs full "
        f"{q['day2_full']['sass']:.4f} (popular {q['day2_full']['popular']:.4f}).\n")


def _write(results: list[dict], out: Path, prov: dict) -> None:
    summary = ["| rows | full pipeline s | peak RSS MiB | training s | incremental day s "
               "| day-2 training incremental / full s | day-2 sass NDCG@50 incremental / full | popular |",
               "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        f, q = r["full"], r["ndcg50"]
        head = (f"| {r['rows']:,} | {sum(x['seconds'] for x in f):.0f} | {max(x['peak_mib'] for x in f):.0f} | "
                f"{r['train_full_s']:.0f} |")
        if "incremental" in r:
            summary.append(head + f" {sum(x['seconds'] for x in r['incremental']):.0f} | "
                           f"{r['train_incr_s']:.0f} / {r['train_next_day_full_s']:.0f} | "
                           f"{q['day2_incremental']['sass']:.4f} / {q['day2_full']['sass']:.4f} | "
                           f"{q['day2_full']['popular']:.4f} |")
        else:
            summary.append(head + " — | — | — | — |")
    body = ("Targets: 10M interactions in at most 30 minutes and 8 GiB.\n\n" + "\n".join(summary) + "\n\n"
            + "\n".join(_section(r) for r in results))
    print(body)
    write_results(out, "Scale on synthetic data", prov, body, {"results": results})


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
