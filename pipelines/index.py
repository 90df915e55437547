"""Stage `index`: one scenario's FAISS index for every row that may be published (the candidate sass and
the challenger, publish.challenger), over the item tower's scenario vectors: indexes/<row>/<scenario>.

A declared scenario skipped today (too few training rows) gets ``skipped.json`` instead of ``index.faiss``,
naming the scenario that serves it (sass_retrieval.index.routing); the stage succeeds.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from sass_retrieval.data.features import skipped_scenarios
from sass_retrieval.rows import CANDIDATE

from .common import bank_for, load_run, parser, safe_path, setup_logging, write_json

log = logging.getLogger("index")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = parser(__doc__)
    p.add_argument("--scenario", required=True)
    p.add_argument("--row", action="append", default=None,
                   help="row to index, repeatable (default: sass and publish.challenger)")
    p.add_argument("--models", default="models", help="folder of models/<row>/ (models.checkpoint.row_checkpoint)")
    p.add_argument("--features", default="data/features")
    p.add_argument("--out", default="indexes", help="writes <out>/<row>/<scenario>/")
    args = p.parse_args(argv)
    from sass_retrieval.index.faiss_index import set_threads
    from sass_retrieval.index.routing import mark_skipped
    from sass_retrieval.models.checkpoint import load_row_model

    run = load_run(args.params)
    rows = args.row or [CANDIDATE, run.params.publish.challenger]
    skipped = skipped_scenarios(run.params.scenarios.names, run.scenarios, run.names).get(args.scenario)
    if skipped is not None:
        log.warning("scenario %s skipped today (%s): skipped.json, no index; served by the %r index",
                    args.scenario, skipped.reason, skipped.served_by)
        for row in dict.fromkeys(rows):
            mark_skipped(safe_path(args.out) / row / args.scenario, skipped)
        return 0
    set_threads(run.params.train.threads)
    bank = bank_for(run, args.features, serving_only=True)
    if args.scenario not in bank.per:
        from sass_retrieval.errors import MissingFile

        raise MissingFile(f"{args.features}: scenario {args.scenario}: no split output; run `sass split "
                          f"--scenario {args.scenario}` first")
    for row in dict.fromkeys(rows):
        model, manifest = load_row_model(safe_path(args.models), row, args.scenario)
        build_one(run, bank, model, manifest, row, args.scenario, safe_path(args.out) / row / args.scenario)
    return 0


def build_one(run, bank, model, manifest, row: str, s: str, out) -> None:
    from sass_retrieval.evaluate.embedding_recommender import (
        embed_items,
        embed_users,
        prior_weight,
        serving_prior,
    )
    from sass_retrieval.index.faiss_index import (
        build_index,
        describe,
        recall_against_exact,
        save_index,
    )
    from sass_retrieval.index.routing import clear_skipped

    t0 = time.perf_counter()
    clear_skipped(out)
    pool = bank.per[s].pool
    info = {"row": row, "scenario": s, "pool": int(len(pool)), "model_sha256": manifest["sha256"]}
    if len(pool):
        vecs = embed_items(model, bank, s, pool)
        cfg = run.params.index
        prior = serving_prior(model, bank, s, pool)
        index = build_index(vecs, bank.item_ids[pool], cfg, prior)
        save_index(index, out / "index.faiss")
        # Recall of the built index against exact search, with this scenario's users as queries.
        users = bank.per[s].pos_user
        rng = np.random.default_rng(0)
        q_rows = rng.choice(np.unique(users), size=min(1000, len(np.unique(users))), replace=False) if len(users) else pool[:0]
        if len(q_rows):
            q = embed_users(model, bank, s, q_rows)
            info["recall@50_vs_exact"] = float(recall_against_exact(index, vecs, bank.item_ids[pool], q, 50, prior))
        info.update(kind=describe(index), requested_kind=cfg.kind,
                    prior_weight=prior_weight(model, s))
    else:
        log.warning("scenario %s has an empty pool; no %s index written", s, row)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    write_json(out / "build.json", info)
    log.info("index %s/%s: %s", row, s, info)


if __name__ == "__main__":
    from sass_retrieval.errors import run_main

    raise SystemExit(run_main(main))
