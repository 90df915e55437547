"""The cascade in the daily evaluation: a row with a pre-ranker is scored as it is served (retrieval + rank), and its
retrieval order is scored beside it on the same pairs, with the paired CI of what the pre-ranker adds and the
GAUC of both orders on the exposed test rows.

The rows' metrics (what the gate compares) are the served lists'; ``metrics.json["cascade"]`` holds the rest, which
the run report shows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ..params_schema import Params
from ..rank.cascade import CascadeRecommender, PairScorer, Reranker
from ..rank.stage import exposure_gauc, load_reranker
from .significance import compare_rows

log = logging.getLogger("evaluate")


def rerankers(rank_dir: Path | None, rows: list[str]) -> dict[str, Reranker]:
    """The pre-ranker of each of ``rows`` that has one under ``rank_dir`` (models/rank); none when the stage was
    off (``off.json``) or not given."""
    if rank_dir is None or not rank_dir.is_dir() or (rank_dir / "off.json").exists():
        return {}
    return {row: load_reranker(rank_dir, row) for row in rows if (rank_dir / row).is_dir()}


def cascade_section(row: str, base: Any, reranker: Reranker, retrieval_pairs: dict[str, dict],
                    served_pairs: dict[str, dict], retrieval: dict[str, Any], test: pd.DataFrame, params: Params,
                    metric: str) -> dict[str, Any]:
    """metrics.json's ``cascade[row]``: retrieval order's results, the paired CI of served − retrieval on the
    headline metric (all pairs), GAUC on the exposed test rows, the features."""
    ev = params.evaluate
    delta = compare_rows({"served": served_pairs, "retrieval": retrieval_pairs}, "served", metric, n_boot=ev.n_boot,
                         level=ev.level, seed=ev.seed)["retrieval"]
    scorer = PairScorer(base.models, base.bank)
    trained = set(base.bank.scenarios)
    gauc = exposure_gauc(reranker, scorer, test[test["scenario"].isin(trained)])
    return {"top_k": int(params.rank.top_k), "features": list(reranker.names), "retrieval": retrieval,
            "delta": delta, "metric": metric, "gauc": gauc}


def served(base: Any, reranker: Reranker, params: Params) -> CascadeRecommender:
    return CascadeRecommender(base, reranker, params.rank.top_k)
