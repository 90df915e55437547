"""Stage `rank`: the pre-ranker of every row that may be published (the candidate sass and the challenger), trained
on the window's logged exposures: models/rank/<row>/ (model, feature set, report) and models/rank/stats/ (the
window's cross-feature statistics, shared). Evaluation, the publish gate and `sass serve` rescore each row's
retrieved top rank.top_k with its pre-ranker (sass_retrieval.rank.cascade).

With rank.enabled false, or a window of fewer than 3 training days, the stage writes models/rank/off.json only (with
the reason), and every later stage serves retrieval order.
"""

from __future__ import annotations

import logging
import time

from sass_retrieval.rows import CANDIDATE
from sass_retrieval.run import load_run, safe_path

from .base import row_model_parser, setup_logging

log = logging.getLogger("rank")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = row_model_parser(__doc__, "models/rank").parse_args(argv)
    from sass_retrieval.atomic import staged_dir
    from sass_retrieval.rank.days import off_reason, write_off

    run = load_run(args.params)
    out = safe_path(args.out)
    reason = off_reason(run.params.rank.enabled, len(run.window.train_dates), "rank.enabled", "the pre-ranker")
    if reason:
        write_off(out, "rank", reason)
        log.warning("no pre-ranker today (%s): %s/off.json, retrieval order is served", reason, out)
        return 0

    import torch

    from sass_retrieval.data.store import read_items
    from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
    from sass_retrieval.models.bank import bank_for
    from sass_retrieval.rank.cascade import PairScorer
    from sass_retrieval.rank.features import RankStats
    from sass_retrieval.rank.stage import fit_row, rank_rows, row_split, save_reranker, save_stats
    from sass_retrieval.run import read_mapped

    torch.set_num_threads(run.params.train.threads)
    t0 = time.perf_counter()
    w = run.window
    frame = read_mapped(run, w.train_start, w.train_end, ["user_id", "video_id", "date", "is_click"])
    items = read_items(run.store)
    exposures = rank_rows(frame, items, w.train_dates) if run.params.rank.train_on == "exposures" else None
    stats = RankStats.from_frame(frame, items)
    bank = bank_for(run, args.features, serving_only=True)
    models_dir = safe_path(args.models)
    with staged_dir(out) as tmp:
        save_stats(stats, tmp)
        for row in dict.fromkeys([CANDIDATE, run.params.publish.challenger]):
            t = time.perf_counter()
            # the row as it is served: its FAISS files (index stage), whose candidates the pre-ranker rescores
            rec = EmbeddingRecommender.for_row(row, bank, models_dir, safe_path(args.indexes), run.params.index,
                                               list(run.scenarios.reported))
            rows = row_split(run.params, exposures, frame, items, w.train_dates, rec.top_scored,
                             PairScorer(rec.models, bank))
            log.info("%s: %d training and %d held-out rows (%s) with their features in %.1fs", row, len(rows.train),
                     len(rows.valid), run.params.rank.train_on, time.perf_counter() - t)
            reranker, report = fit_row(rows, list(bank.scenarios), stats, run.params, progress=True)
            save_reranker(reranker, report, tmp / row)
            log.info("%s: pre-ranker on %s, held-out GAUC %.4f (%.1fs)", row, ", ".join(reranker.names),
                     report["fit"].get("valid_gauc", float("nan")), time.perf_counter() - t)
    log.info("rank stage done in %.1fs", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
