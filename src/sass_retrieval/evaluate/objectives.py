"""Scoring against the other objectives' ground truth (long views, likes): the multi-objective rows' tables.

Clicks are the main table. For each other objective every row is scored on the pairs that objective's
labels define, over the scenarios with enough of them for a mean to mean something; each multi-objective
row is also scored at that objective's weight alone, which is what a request naming it gets.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd

from ..data.schema import OBJECTIVES
from ..models.multitask import weighted
from .protocol import Recommender, build_eval_set, evaluate

log = logging.getLogger("evaluate")


def objective_tables(recs: Mapping[str, Recommender], multi_objective: list[str], train: pd.DataFrame,
                     test: pd.DataFrame, reported: list[str], ks: list[int], min_pairs: int) -> dict[str, dict]:
    """Every row scored with each non-click objective's ground truth, for the scenarios with at least
    ``min_pairs`` pairs for it; each row of ``multi_objective`` also at that objective's weight alone.

    ``{objective: {"scenarios": [...], "pairs": {s: n}, "too_few": {s: n}, "rows": {row: protocol result}}}``."""
    out: dict[str, dict] = {}
    for name, col in OBJECTIVES.items():
        if name == "click":
            continue
        full = build_eval_set(train, test, reported, label=col)
        pairs = {s: len(full.pairs[s]) for s in reported}
        keep = [s for s in reported if pairs[s] >= min_pairs]
        entry = {"scenarios": keep, "pairs": {s: pairs[s] for s in keep},
                 "too_few": {s: n for s, n in pairs.items() if n < min_pairs}, "rows": {}}
        if keep:
            es = full.only(keep)
            for row, rec in recs.items():
                entry["rows"][row] = evaluate(es, rec, ks)
            for row in multi_objective:   # the same models and indexes at this objective's weight alone
                with weighted(recs[row].models.values(), {name: 1.0}):
                    entry["rows"][f"{row} ({name} only)"] = evaluate(es, recs[row], ks)
        out[name] = entry
        log.info("objective %s: %d scenario(s) with >= %d pairs %s", name, len(keep), min_pairs, keep)
    return out
