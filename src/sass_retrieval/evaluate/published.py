"""The model in service, re-scored on this run's evaluation pairs: what the publish gate compares against.

Each day has its own test window, so the number recorded when the model was published is not comparable
with today's; scoring the published model on today's pairs is, and it pairs with today's rows for the
bootstrap.

What is re-scored is what the version serves: a version holding its row's pre-ranker (``rank/<row>/`` and
``rank/stats/``, publish_run.rank_sources) is scored through the cascade (retrieval's top ``rank.top_k``
rescored, rank.cascade.CascadeRecommender), as `sass serve` answers from it; the gate then compares served
with served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..models.bank import FeatureBank
from ..models.checkpoint import CheckpointError, load_row_models
from ..publish import RANK_DIR, current_version, served_rank_top_k, served_row
from .embedding_recommender import EmbeddingRecommender

log = logging.getLogger("evaluate")


def served_recommender(version: Path, row: str, base: EmbeddingRecommender, scenarios: list[str],
                       rank_top_k: int | None = None) -> Any:
    """``base`` as ``version`` serves it: through its pre-ranker when it has one (``rank_top_k`` candidates,
    default the number it was published with), else ``base`` itself (retrieval order).

    A pre-ranker that can not be loaded, or does not know every scenario, is a RuntimeError: the caller
    then falls back to the recorded number rather than compare the gate against another order."""
    if not (version / RANK_DIR / row).is_dir():
        return base
    from ..params_schema import Rank
    from ..rank.cascade import CascadeRecommender
    from ..rank.stage import load_reranker

    try:
        reranker = load_reranker(version / RANK_DIR, row)
    except Exception as exc:  # noqa: BLE001 - torch, parquet, json: any failure means "not re-scored"
        raise RuntimeError(f"{version / RANK_DIR / row}: the pre-ranker could not be loaded: "
                           f"{type(exc).__name__}: {exc}") from exc
    missing = sorted(set(scenarios) - set(reranker.model.scenarios))
    if missing:
        raise RuntimeError(f"{version / RANK_DIR / row}: the pre-ranker does not know scenarios {missing}")
    top_k = rank_top_k or served_rank_top_k(version) or int(Rank().top_k)
    return CascadeRecommender(base, reranker, top_k)


def score_published(published_root: Path, bank: FeatureBank, score: Callable[[Any], dict],
                    rank_top_k: int | None = None) -> dict | None:
    """``score`` of the version in service under ``published_root`` (its served row's models, this bank),
    through its pre-ranker when it has one (:func:`served_recommender`; ``rank_top_k``: params rank.top_k,
    None: the number the version was published with).

    None when nothing is published or its config no longer fits (e.g. the scenario list changed), in which
    case the gate falls back to the recorded number."""
    current = current_version(published_root)
    if current is None or not (current / "models" / served_row(current)).is_dir():
        return None
    row = served_row(current)
    try:
        models = load_row_models(current / "models", row, list(bank.scenarios))
        config = next(iter(models.values())).cfg
        if list(config.scenarios) != list(bank.scenarios):
            log.warning("published model has scenarios %s, this run %s: not re-scored", config.scenarios,
                        bank.scenarios)
            return None
        rec = served_recommender(current, row, EmbeddingRecommender(models, bank), list(bank.scenarios),
                                 rank_top_k)
        return score(rec)
    except (CheckpointError, RuntimeError, KeyError) as exc:
        log.warning("published model could not be re-scored on this window: %s", exc)
        return None
