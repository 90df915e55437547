"""Quality benchmark: BENCHMARK.md on KuaiRand-Pure for every reference row (+ the torch-rechub peer).

    python bench/quality.py --data-dir ../shared/data/kuairand_pure --end-date 20220505 \
        --train-days 8 --test-days 3 --seeds 0 1 2

Prints the NDCG@50 and HitRate@50 tables (mean ± std over seeds, per scenario, macro, micro) and writes
them to bench/results/quality.{md,json}. Every number comes from the product's own code path
(sass_retrieval.experiment): importer, split, trainer, FAISS index, protocol.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see sass_retrieval/__init__.py
import torch  # noqa: E402
import yaml
from bench_cli import bench_parser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sass_retrieval.config import make_window, set_dotted  # noqa: E402
from sass_retrieval.experiment import (  # noqa: E402
    aggregate,
    format_agg,
    prepare_kuairand,
    provenance,
    run_rows,
    write_results,
)


def parse_sets(items: list[str]) -> list[tuple[str, object]]:
    return [(k, yaml.safe_load(v)) for k, v in (s.split("=", 1) for s in items)]


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "quality")
    p.add_argument("--end-date", type=int, default=20220505, help="last day of data (end of the test window)")
    p.add_argument("--train-days", type=int, default=8)
    p.add_argument("--test-days", type=int, default=3)
    p.add_argument("--scenarios", default="1,0,4,6,2", help="reported scenarios (tabs)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", default="popular,dssm_mixed,dssm_single,sass_base,sass")
    p.add_argument("--peer", default="example,uniform", help="torch-rechub DSSM variants ('' to skip)")
    p.add_argument("--set", action="append", default=[], help="override params, e.g. finetune.alpha=0")
    p.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = p.parse_args(argv)
    prov = provenance(sys.argv)  # at start: the code that produced the numbers, not what is checked out later
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("faiss.loader", "sass_retrieval.train.loop", "sass_retrieval.train.finetune"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    params = yaml.safe_load(Path(args.params).read_text())
    for k, v in parse_sets(args.set):
        set_dotted(params, k, v)
    torch.set_num_threads(int(params.get("train", {}).get("threads", 2)))
    work = Path(args.work)
    window = make_window(args.end_date, args.train_days, args.test_days)
    declared = args.scenarios.split(",") + ["other"]
    prep = prepare_kuairand(Path(args.data_dir), work, window, declared,
                            int(params["scenarios"]["min_scenario_rows"]), int(params["features"]["seq_len"]))
    rows = [r for r in args.rows.split(",") if r]
    per_seed = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        res = run_rows(prep, copy.deepcopy(params), rows, seed, work)
        if args.peer:
            sys.path.insert(0, str(ROOT / "bench"))
            from peer_rows import run_peer_rows

            res.update(run_peer_rows(prep, args.peer.split(","), seed))
        per_seed.append(res)
    agg = aggregate(per_seed)
    ndcg, hr = format_agg(agg, "ndcg@50"), format_agg(agg, "hit_rate@50")
    body = (f"Window: train {window.train_start}..{window.train_end}, test {window.test_start}..{window.test_end}; "
            f"seeds {args.seeds}; overrides {args.set or 'none'}; total {time.perf_counter() - t0:.0f}s.\n\n"
            f"## NDCG@50 (mean ± std over seeds)\n\n{ndcg}\n\n## HitRate@50\n\n{hr}\n")
    print(body)
    write_results(Path(args.out), "Quality on KuaiRand-Pure (BENCHMARK.md, dev split)", prov, body,
                  {"window": window.__dict__, "seeds": args.seeds, "overrides": args.set, "aggregate": agg,
                   "per_seed": per_seed})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
