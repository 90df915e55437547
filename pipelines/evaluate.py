"""Stage `evaluate`: every reference row through the one protocol (docs/benchmark.md); metrics and plots for DVC.

Rows: evaluate.rows, plus the challenger (publish.challenger) and evaluate.benchmark_rows (on demand), each
scored on every slice (all, scenario_cold, tail_truth); the model in service is re-scored on the same pairs,
and the candidate is tested against every other row by a paired bootstrap (sass_retrieval.evaluate.daily).
Params: evaluate.cold_max / cold_min_other (slices), evaluate.n_boot / level / seed (bootstrap).
A scenario skipped today has no metric row: metrics.json lists it under ``skipped``.
"""

from __future__ import annotations

import logging
import time

from sass_retrieval.models.bank import bank_for
from sass_retrieval.run import load_run, safe_path

from .base import parser, setup_logging

log = logging.getLogger("evaluate")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--models", default="models")
    p.add_argument("--indexes", default="indexes")
    p.add_argument("--features", default="data/features")
    p.add_argument("--rank", default="models/rank", help="the rank stage's pre-rankers (rows with one are scored "
                   "as served: retrieval + rank)")
    p.add_argument("--rerank", default="models/rerank", help="the rerank stage's re-rankers (their lists are "
                   "measured against the upstream order)")
    p.add_argument("--metrics", default="metrics/metrics.json")
    p.add_argument("--plots", default="plots")
    p.add_argument("--per-pair", default="metrics/per_pair.npz",
                   help="per-pair headline metrics of every slice and row (npz); empty to skip")
    args = p.parse_args(argv)
    from sass_retrieval.evaluate.daily import evaluate_run
    from sass_retrieval.evaluate.outputs import write_outputs
    from sass_retrieval.index.faiss_index import set_threads

    t0 = time.perf_counter()
    run = load_run(args.params)
    set_threads(run.params.train.threads)
    bank = bank_for(run, args.features, serving_only=True)
    day = evaluate_run(run, bank, safe_path(args.models), safe_path(args.indexes), safe_path(args.rank),
                       safe_path(args.rerank))
    print(day.table)
    write_outputs(day, safe_path(args.metrics), safe_path(args.per_pair) if args.per_pair else None,
                  safe_path(args.plots))
    log.info("evaluation done in %.1fs", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
