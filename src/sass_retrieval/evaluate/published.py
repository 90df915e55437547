"""The model in service, re-scored on this run's evaluation pairs: what the publish gate compares against.

Each day has its own test window, so the number recorded when the model was published is not comparable
with today's; scoring the published model on today's pairs is, and it pairs with today's rows for the
bootstrap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ..models.bank import FeatureBank
from ..models.checkpoint import CheckpointError, load_row_models
from ..publish import current_version, served_row
from .embedding_recommender import EmbeddingRecommender

log = logging.getLogger("evaluate")


def score_published(published_root: Path, bank: FeatureBank,
                    score: Callable[[EmbeddingRecommender], dict]) -> dict | None:
    """``score`` of the version in service under ``published_root`` (its served row's models, this bank).

    None when nothing is published or its config no longer fits (e.g. the scenario list changed), in which
    case the gate falls back to the recorded number."""
    current = current_version(published_root)
    if current is None or not (current / "models" / served_row(current)).is_dir():
        return None
    try:
        models = load_row_models(current / "models", served_row(current), list(bank.scenarios))
        config = next(iter(models.values())).cfg
        if list(config.scenarios) != list(bank.scenarios):
            log.warning("published model has scenarios %s, this run %s: not re-scored", config.scenarios,
                        bank.scenarios)
            return None
        return score(EmbeddingRecommender(models, bank))
    except (CheckpointError, RuntimeError, KeyError) as exc:
        log.warning("published model could not be re-scored on this window: %s", exc)
        return None
