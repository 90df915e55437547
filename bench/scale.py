"""Scale: the daily pipeline on synthetic data at growing sizes, wall time and peak memory per stage,
and the cost of one incremental day against a full retrain.

    python bench/scale.py --rows 1000000 10000000

For each size: a full run (ingest .. publish, rows `popular` and `sass`; the reference rows are a
benchmark concern, not part of the daily cost), then the next day as `train.mode: incremental`
(warm start from the published model, `train.incremental_epochs`). Every stage is its own process
under /usr/bin/time. Writes bench/results/scale.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stage_timer import StageTime, run_stage, table  # noqa: E402

from sass_retrieval.config import shift  # noqa: E402
from sass_retrieval.experiment import provenance, write_results  # noqa: E402

NAMES = ["s0", "s1", "s2", "s3", "s4"]


def daily(work: Path, env: dict[str, str], ingest: bool) -> list[StageTime]:
    plan = ([("ingest", ["-m", "pipelines.ingest"])] if ingest else []) + [("validate", ["-m", "pipelines.validate"])]
    plan += [(f"split@{s}", ["-m", "pipelines.split", "--scenario", s]) for s in NAMES]
    plan += [("pairs", ["-m", "pipelines.split", "--pairs"]), ("pretrain", ["-m", "pipelines.pretrain", "--no-progress"]),
             ("finetune", ["-m", "pipelines.train", "--row", "sass", "--no-progress"])]
    plan += [(f"index@{s}", ["-m", "pipelines.index", "--scenario", s]) for s in NAMES]
    plan += [("evaluate", ["-m", "pipelines.evaluate"]), ("publish", ["-m", "pipelines.publish"])]
    return [run_stage(name, cmd, work, env) for name, cmd in plan]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default=str(ROOT / "bench" / ".work" / "scale"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale"))
    args = p.parse_args(argv)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    env = {"SASS_ALLOW_EXTERNAL_PATHS": "1", "OMP_NUM_THREADS": str(args.threads)}
    results, sections = [], []
    for n in args.rows:
        params = yaml.safe_load(yaml.safe_dump(base))
        users, items = max(3000, n // 50), max(1500, n // 200)
        params["data"]["synthetic"].update({"rows": n, "users": users, "items": items, "days": 12})
        params["validation"]["min_rows_per_day"] = 100
        params["window"] = {"end_date": shift(20220425, 10), "train_days": 8, "test_days": 2}
        params["finetune"].update({"epochs": 1, "early_stopping": False, "batch_size": 2048})
        params["pretrain"].update({"epochs": 1, "batch_size": 2048})
        params["train"].update({"threads": args.threads, "incremental_epochs": 1})
        params["evaluate"]["rows"] = ["popular", "sass"]
        work = Path(args.work) / f"rows{n}"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        full = daily(work, env, ingest=True)
        params["window"]["end_date"] = shift(20220425, 11)
        params["train"]["mode"] = "incremental"
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        incr = daily(work, env, ingest=False)
        train_full = sum(r.seconds for r in full if r.stage in ("pretrain", "finetune"))
        train_incr = sum(r.seconds for r in incr if r.stage in ("pretrain", "finetune"))
        results.append({"rows": n, "users": users, "items": items, "full": [r.__dict__ for r in full],
                        "incremental": [r.__dict__ for r in incr], "train_full_s": train_full, "train_incr_s": train_incr})
        sections.append(f"## {n:,} interactions ({users:,} users, {items:,} items, 12 days; window 8 train + 2 test)\n\n"
                        f"### Full run\n\n{table(full)}\n\n### Next day, incremental (warm start)\n\n{table(incr)}\n\n"
                        f"Training (pretrain + finetune): full {train_full:.0f} s, incremental {train_incr:.0f} s.\n")
        shutil.rmtree(work / "data", ignore_errors=True)
        _write(results, sections, Path(args.out))  # after every size: a long run still leaves its results
    return 0


def _write(results: list[dict], sections: list[str], out: Path) -> None:
    summary = ["| rows | full pipeline s | peak RSS MiB | incremental day s | training full / incremental s |",
               "|---:|---:|---:|---:|---:|"]
    for r in results:
        f, i = r["full"], r["incremental"]
        summary.append(f"| {r['rows']:,} | {sum(x['seconds'] for x in f):.0f} | {max(x['peak_mib'] for x in f):.0f} | "
                       f"{sum(x['seconds'] for x in i):.0f} | {r['train_full_s']:.0f} / {r['train_incr_s']:.0f} |")
    body = ("Targets: 10M interactions in at most 30 minutes and 8 GiB.\n\n" + "\n".join(summary) + "\n\n"
            + "\n".join(sections))
    print(body)
    write_results(out, "Scale on synthetic data", provenance(sys.argv), body, {"results": results})


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    raise SystemExit(main())
