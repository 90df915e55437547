"""Data-path figures: split of the shared KuaiRand data, and 10M synthetic rows generated, ingested, split.

    python bench/data_bench.py --synthetic-rows 10000000

Each stage runs as its own process (the same `python -m pipelines.<stage>` that dvc.yaml runs) under
/usr/bin/time; writes bench/results/data.{md,json}.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import bench_parser  # noqa: E402
from stage_timer import StageTime, dvc_plan, run_stage, table  # noqa: E402

from sass_retrieval.experiment import provenance, write_results  # noqa: E402


def project(work: Path, params: dict) -> Path:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


def data_path(work: Path, env: dict[str, str]) -> list[StageTime]:
    """Ingest (which generates the synthetic source), validate, split every scenario and the pairs."""
    return [run_stage(name, cmd, work, env) for name, cmd in dvc_plan(work, {"ingest", "validate", "split", "pairs"})]


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "data")
    p.add_argument("--synthetic-rows", type=int, default=10_000_000)
    p.add_argument("--synthetic-users", type=int, default=200_000)
    p.add_argument("--synthetic-items", type=int, default=50_000)
    args = p.parse_args(argv)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    env = {"SASS_ALLOW_EXTERNAL_PATHS": "1"}

    kr = dict(base)
    kr["data"] = {**base["data"], "source": "kuairand", "kuairand_dir": str(Path(args.data_dir).resolve())}
    kr["window"] = {"end_date": 20220505, "train_days": 8, "test_days": 3}
    kr["scenarios"] = {"names": ["1", "0", "4", "6", "2", "other"], "min_scenario_rows": 1000}
    w1 = project(Path(args.work) / "kuairand", kr)
    k_rows = data_path(w1, env)
    split_total = sum(r.seconds for r in k_rows if r.stage.split("@")[0] in ("split", "pairs"))

    syn = dict(base)
    syn["data"] = {**base["data"], "source": "synthetic",
                   "synthetic": {**base["data"]["synthetic"], "rows": args.synthetic_rows, "users": args.synthetic_users,
                                 "items": args.synthetic_items}}
    syn["validation"] = {**base.get("validation", {}), "min_rows_per_day": 1000}
    w2 = project(Path(args.work) / "synthetic", syn)
    s_rows = data_path(w2, env)

    body = (f"## KuaiRand-Pure (185,061 rows), dev window\n\n{table(k_rows)}\n\n"
            f"Split (all scenarios + pretraining pairs, one process each): **{split_total:.1f} s** (target < 30 s).\n\n"
            f"## Synthetic, {args.synthetic_rows:,} rows ({args.synthetic_users:,} users, {args.synthetic_items:,} items)\n\n"
            f"{table(s_rows)}\n\nTarget: generate + ingest + split under 10 minutes and 8 GiB.\n")
    print(body)
    payload = {"kuairand": [r.__dict__ for r in k_rows], "synthetic": [r.__dict__ for r in s_rows],
               "synthetic_rows": args.synthetic_rows}
    write_results(Path(args.out), "Data path: ingest, validate, split", provenance(sys.argv), body, payload)
    shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
