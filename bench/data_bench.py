"""Data-path figures: split of the shared KuaiRand data, and 10M synthetic rows generated, ingested, split.

    python bench/data_bench.py --synthetic-rows 10000000
    python bench/data_bench.py --sources synthetic --synthetic-rows 20000   # a smoke run

Each stage runs as its own process (the same `python -m pipelines.<stage>` that dvc.yaml runs) under
/usr/bin/time; writes bench/results/data.{md,json}.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_cli import KUAIRAND_TABS, bench_parser, bench_provenance  # noqa: E402
from stage_timer import StageTime, dvc_plan, run_stage, table  # noqa: E402

from sass_retrieval.config import load_params  # noqa: E402
from sass_retrieval.experiment import write_results  # noqa: E402

if TYPE_CHECKING:
    from sass_retrieval.params_schema import Params

SOURCES = ("kuairand", "synthetic")


def project(work: Path, params: Params) -> Path:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params.to_dict(), sort_keys=False))
    return work


def data_path(work: Path, env: dict[str, str]) -> list[StageTime]:
    """Ingest (which generates the synthetic source), validate, split every scenario and the pairs, shards."""
    return [run_stage(name, cmd, work, env)
            for name, cmd in dvc_plan(work, {"ingest", "validate", "split", "pairs", "shards"})]


def source_params(base: Params, source: str, args) -> Params:
    """The params of one source: KuaiRand-Pure's dev window and tabs, or the generator at the asked size."""
    if source == "kuairand":
        return base.override({"data.source": "kuairand", "data.kuairand_dir": str(Path(args.data_dir).resolve()),
                              "window.end_date": 20220505, "window.train_days": 8, "window.test_days": 3,
                              "scenarios.names": [*KUAIRAND_TABS.split(","), "other"],
                              "scenarios.min_scenario_rows": 1000}, source="kuairand data path")
    return base.override({"data.source": "synthetic", "data.synthetic.rows": args.synthetic_rows,
                          "data.synthetic.users": args.synthetic_users, "data.synthetic.items": args.synthetic_items,
                          "validation.min_rows_per_day": 1000}, source="synthetic data path")


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "data")
    p.add_argument("--sources", default=",".join(SOURCES), help="comma list of kuairand, synthetic")
    p.add_argument("--synthetic-rows", type=int, default=10_000_000)
    p.add_argument("--synthetic-users", type=int, default=200_000)
    p.add_argument("--synthetic-items", type=int, default=50_000)
    p.add_argument("--params", default=str(ROOT / "params.yaml"), help="the params both sources start from")
    args = p.parse_args(argv)
    sources = [s for s in args.sources.split(",") if s]
    if not sources or set(sources) - set(SOURCES):
        p.error(f"--sources: a comma list of {', '.join(SOURCES)}")
    prov = bench_provenance(__file__, argv)
    base = load_params(args.params)
    env = {"SASS_ALLOW_EXTERNAL_PATHS": "1"}
    timed = {s: data_path(project(Path(args.work) / s, source_params(base, s, args)), env) for s in sources}
    parts = []
    if "kuairand" in timed:
        split_total = sum(r.seconds for r in timed["kuairand"] if r.stage.split("@")[0] in ("split", "pairs"))
        parts.append(f"## KuaiRand-Pure (185,061 rows), dev window\n\n{table(timed['kuairand'])}\n\n"
                     f"Split (all scenarios + pretraining pairs, one process each): **{split_total:.1f} s** "
                     "(target < 30 s).\n")
    if "synthetic" in timed:
        parts.append(f"## Synthetic, {args.synthetic_rows:,} rows ({args.synthetic_users:,} users, "
                     f"{args.synthetic_items:,} items)\n\n{table(timed['synthetic'])}\n\n"
                     "Target: generate + ingest + split under 10 minutes and 8 GiB.\n")
    body = "\n".join(parts)
    print(body)
    payload: dict[str, Any] = {s: [r.__dict__ for r in rows] for s, rows in timed.items()}
    payload["synthetic_rows"] = args.synthetic_rows
    write_results(Path(args.out), "Data path: ingest, validate, split", prov, body, payload)
    shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
