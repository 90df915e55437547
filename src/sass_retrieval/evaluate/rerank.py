"""The re-ranker in the daily evaluation: on the test days' evaluation pairs, the served row's upstream top
``rerank.candidates`` become the generator's lists at the default weights, set beside the upstream order's first
``rerank.length``: every goal's utility (the frozen evaluator), the share of requests whose list the evaluator
prefers (paired CI against 50%), and NDCG@length on the test days' clicks (paired CI). metrics.json's
``rerank[row]``; the run report shows it. Nothing here decides what is served: the lists answer the business's
weights, and the numbers say what those weights cost in clicks (rerank.measure holds the definitions)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..params_schema import Params
from ..rank.cascade import PairScorer
from ..rerank.measure import better_than, ndcg_per_pair, pooled_utilities, served, test_slates, upstream_lists
from ..rerank.stage import ListReranker, load_list_reranker
from .protocol import EvalSet, Recommender
from .significance import paired_bootstrap

log = logging.getLogger("evaluate")


def list_rerankers(rerank_dir: Path | None, rows: list[str]) -> dict[str, ListReranker]:
    """The re-ranker of each of ``rows`` under ``rerank_dir`` (models/rerank); none when the stage was off."""
    if rerank_dir is None or not rerank_dir.is_dir() or (rerank_dir / "off.json").exists():
        return {}
    return {row: load_list_reranker(rerank_dir, row) for row in rows if (rerank_dir / row).is_dir()}


def rerank_section(es: EvalSet, upstream: Recommender, base: Any, reranker: ListReranker, params: Params
                   ) -> dict[str, Any]:
    """metrics.json's ``rerank[row]``; ``upstream`` is what the row serves before re-ranking (retrieval or the
    cascade), ``base`` its retrieval recommender (its towers give the evaluator's retrieval-score feature)."""
    ev = params.evaluate
    tests = test_slates(es, upstream, PairScorer(base.models, base.bank), reranker.evaluator, reranker.candidates)
    tests = {s: t for s, t in tests.items() if len(t.users)}
    length = reranker.length
    w = reranker.weights()
    before = {s: upstream_lists(t.slate, length) for s, t in tests.items()}
    after = {s: reranker.lists(t.slate, w) for s, t in tests.items()}
    better = better_than(tests, after, before, w, reranker.scales)
    boot = {"n_boot": ev.n_boot, "level": ev.level, "seed": ev.seed}
    share = paired_bootstrap(better, {s: np.full_like(v, 0.5) for s, v in better.items()}, **boot)
    sub = es.only(tests)
    ndcg_before = ndcg_per_pair(sub, {s: served(tests[s].slate, before[s]) for s in tests}, length)
    ndcg_after = ndcg_per_pair(sub, {s: served(tests[s].slate, after[s]) for s in tests}, length)
    return {"weights": dict(reranker.defaults), "candidates": reranker.candidates, "length": length,
            "requests": {s: len(t.users) for s, t in tests.items()},
            "utilities": {"upstream": pooled_utilities(tests, before), "reranked": pooled_utilities(tests, after)},
            "better_share": {s: {**c, "share": 0.5 + c["diff"]} for s, c in share.items()},
            "ndcg": {"metric": f"ndcg@{length}",
                     "upstream": float(np.mean([v.mean() for v in ndcg_before.values()])),
                     "reranked": float(np.mean([v.mean() for v in ndcg_after.values()])),
                     "delta": paired_bootstrap(ndcg_after, ndcg_before, **boot)}}
