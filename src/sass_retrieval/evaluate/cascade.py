"""The cascade in the daily evaluation: a row with a pre-ranker is scored both ways on the same pairs, through the
pre-ranker (retrieval + rank) and in retrieval order, with the paired CI of what the pre-ranker adds and the GAUC
of both orders on the exposed test rows.

The pre-ranker is served only when it measurably helps: its macro gain's interval lies above 0 (:func:`serves`).
A pre-ranker that ranks the exposures better can still order retrieval's candidates worse, so the rank stage
proposes and this evidence decides, as the publish gate decides between rows. The row's metrics (what the gate
compares) are those of the order that will be served; ``metrics.json["cascade"]`` holds both, which the run
report shows, and publish copies the pre-ranker only when ``served`` is true.
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


def serves(delta_macro: dict[str, Any]) -> bool:
    """Serve the pre-ranker when its macro gain over retrieval order is measurable: the interval is above 0."""
    return bool(delta_macro.get("significant")) and float(delta_macro.get("diff", 0.0)) > 0


def cascade_section(base: Any, reranker: Reranker, retrieval_pairs: dict[str, dict], rescored_pairs: dict[str, dict],
                    retrieval: dict[str, Any], test: pd.DataFrame, params: Params, metric: str) -> dict[str, Any]:
    """metrics.json's ``cascade[row]``: retrieval order's results, the paired CI of rescored − retrieval on the
    headline metric (all pairs), whether the pre-ranker is served, GAUC on the exposed test rows, the features."""
    ev = params.evaluate
    delta = compare_rows({"rescored": rescored_pairs, "retrieval": retrieval_pairs}, "rescored", metric,
                         n_boot=ev.n_boot, level=ev.level, seed=ev.seed)["retrieval"]
    scorer = PairScorer(base.models, base.bank)
    trained = set(base.bank.scenarios)
    gauc = exposure_gauc(reranker, scorer, test[test["scenario"].isin(trained)])
    retrieval = {k: v for k, v in retrieval.items() if k != "per_pair"}
    return {"top_k": int(params.rank.top_k), "features": list(reranker.names), "retrieval": retrieval,
            "delta": delta, "metric": metric, "served": serves(delta["macro"]), "gauc": gauc}


def served(base: Any, reranker: Reranker, params: Params) -> CascadeRecommender:
    return CascadeRecommender(base, reranker, params.rank.top_k)
