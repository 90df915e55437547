"""Stage `rerank`: the list re-ranker of every row that may be published (the candidate sass and the challenger):
models/rerank/<row>/ (the frozen evaluator, the generator and its hypernetwork, the report) and models/rerank/stats/
(the window's statistics the evaluator reads). Publish copies the served row's re-ranker into the version, and
`sass serve` builds each request's list with it under the request's goal weights (sass_retrieval.rerank).

With rerank.enabled false, or a window of fewer than 3 training days, the stage writes models/rerank/off.json only
(with the reason), and the service serves the upstream order.
"""

from __future__ import annotations

import logging
import time

from sass_retrieval.rows import CANDIDATE
from sass_retrieval.run import load_run, safe_path

from .base import row_model_parser, setup_logging

log = logging.getLogger("rerank")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = row_model_parser(__doc__, "models/rerank").parse_args(argv)
    from sass_retrieval.atomic import staged_dir
    from sass_retrieval.rank.days import off_reason, write_off

    run = load_run(args.params)
    out = safe_path(args.out)
    reason = off_reason(run.params.rerank.enabled, len(run.window.train_dates), "rerank.enabled", "the re-ranker")
    if reason:
        write_off(out, "rerank", reason)
        log.warning("no re-ranker today (%s): %s/off.json, the upstream order is served", reason, out)
        return 0

    import torch

    from sass_retrieval.data.store import read_items
    from sass_retrieval.evaluate.embedding_recommender import EmbeddingRecommender
    from sass_retrieval.models.bank import bank_for
    from sass_retrieval.rank.features import RankStats
    from sass_retrieval.rerank.stage import EVENT_LABELS, fit_rerank, save_list_reranker, save_stats
    from sass_retrieval.run import read_mapped

    torch.set_num_threads(run.params.train.threads)
    t0 = time.perf_counter()
    w = run.window
    frame = read_mapped(run, w.train_start, w.train_end, ["user_id", "video_id", "date", "is_click", *EVENT_LABELS])
    items = read_items(run.store)
    stats = RankStats.from_frame(frame, items)
    bank = bank_for(run, args.features, serving_only=True)
    with staged_dir(out) as tmp:
        save_stats(stats, tmp)
        for row in dict.fromkeys([CANDIDATE, run.params.publish.challenger]):
            t = time.perf_counter()
            rec = EmbeddingRecommender.for_row(row, bank, safe_path(args.models), safe_path(args.indexes),
                                               run.params.index, list(run.scenarios.reported))
            reranker, report = fit_rerank(run.params, frame, items, w.train_dates, rec.top_scored,
                                          list(bank.scenarios), stats, progress=True)
            save_list_reranker(reranker, report, tmp / row)
            held = report["held_out"]
            log.info("%s: re-ranker trained in %.1fs; held-out lists at the default weights: %s", row,
                     time.perf_counter() - t, ", ".join(f"{g} {held['generated'][g]:.3f} (upstream "
                                                        f"{held['upstream'][g]:.3f})" for g in held["generated"]))
    log.info("rerank stage done in %.1fs", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
