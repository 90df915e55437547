"""COLD's feature selection: rank the features by importance, then keep the best set that fits the budget.

A pre-ranker runs on every request, so a feature is worth what it adds to ranking quality per
millisecond of serving: COLD trains on every feature once, ranks them (the SE block's mean field weights,
or the validation GAUC lost when a feature's column is shuffled), retrains nested sets of the most
important ones and measures each set's validation GAUC and its per-request latency (features + model for
one request of ``top_k`` candidates, one torch thread, as a serving worker runs). The chosen set is the
best validation GAUC among the sets within the latency budget; sets within 0.001 GAUC of that best count
as equal and the smallest wins (cheaper to serve, fewer counts to keep fresh). The retrieval score is in
every set: without it the pre-ranker would throw away what retrieval knows.

When no set fits the budget the smallest set is chosen (its row says within_budget false and a warning is
logged) rather than failing the daily run: latency on a busy build machine is noisy, and serving the
smallest pre-ranker is still the cheapest correct answer; the report shows the table.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch

from ..errors import BadInputError
from .features import FEATURE_NAMES, RankStats, feature_matrix, validate_names
from .model import PreRanker, RankModelConfig
from .train import RankSettings, fit_ranker, mean_field_weights, validation_gauc

log = logging.getLogger(__name__)

ALWAYS = "retrieval_score"
SET_SIZES = (3, 5, 7, 9, 11)      # nested sets of the most important features, then all of them
GAUC_TIE = 0.001                  # validation GAUC differences below this count as a tie
PERMUTATION_SEED = 0


def importance(model: PreRanker, valid_rows: pd.DataFrame, kind: Literal["se", "permutation"],
               names: Sequence[str]) -> dict[str, float]:
    """Importance of each of ``names`` (features of ``model``): the SE block's mean weight on the validation
    rows, or the validation GAUC lost when the feature's column is shuffled (seeded)."""
    names = validate_names(names)
    absent = [n for n in names if n not in model.names]
    if absent:
        raise BadInputError(f"importance: feature(s) {', '.join(absent)} not in the model")
    if kind == "se":
        weights = mean_field_weights(model, valid_rows)
        return {n: float(weights[n]) for n in names}
    if kind == "permutation":
        base, _ = validation_gauc(model, valid_rows)
        rng = np.random.default_rng(PERMUTATION_SEED)
        out = {}
        for n in names:
            shuffled = valid_rows.copy()
            shuffled[n] = shuffled[n].to_numpy()[rng.permutation(len(shuffled))]
            g, _ = validation_gauc(model, shuffled)
            out[n] = float(base - g)
        return out
    raise BadInputError(f"importance: kind {kind!r}: must be se or permutation")


def request_latency_ms(stats: RankStats, model: PreRanker, scenario: str, n_candidates: int = 200,
                       repeats: int = 200) -> float:
    """Median wall time (ms) of one request: ``feature_matrix`` of n candidates for the most active user,
    then ``model.score``, with torch at one thread (restored afterwards)."""
    rng = np.random.default_rng(0)
    user = stats.users[int(np.argmax(stats.user_exposures))] if len(stats.users) else 0
    pool = stats.items.video_id if len(stats.items.video_id) else np.arange(n_candidates, dtype=np.int64)
    videos = rng.choice(pool, n_candidates, replace=len(pool) < n_candidates)
    users = np.full(n_candidates, user, dtype=np.int64)
    score = rng.normal(size=n_candidates).astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        for i in range(repeats + 10):
            t0 = time.perf_counter()
            model.score(feature_matrix(stats, scenario, users, videos, score, model.names), scenario)
            if i >= 10:                                        # the first calls warm caches up
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return 1000.0 * statistics.median(times)


def nested_sets(order: Sequence[str]) -> list[list[str]]:
    """The sets COLD compares: the top 3, 5, ... features of ``order`` (most important first), the retrieval
    score always in, then every feature; each set in catalogue order."""
    others = [n for n in order if n != ALWAYS]
    sizes = sorted({min(k, len(order)) for k in SET_SIZES} | {len(order)})
    sets = []
    for k in sizes:
        chosen = set(others[:k - 1]) | {ALWAYS}
        sets.append([n for n in FEATURE_NAMES if n in chosen])
    return sets


def _key(g: float) -> float:
    return g if g == g else -math.inf


def choose(table: list[dict], budget_ms: float) -> int:
    """Index of the chosen row: best GAUC within budget, ties (< GAUC_TIE) to the smaller set; none within
    budget: the smallest set."""
    fits = [i for i, r in enumerate(table) if r["latency_ms"] <= budget_ms]
    if not fits:
        return min(range(len(table)), key=lambda i: (table[i]["size"], -_key(table[i]["valid_gauc"])))
    best = max(_key(table[i]["valid_gauc"]) for i in fits)
    near = [i for i in fits if _key(table[i]["valid_gauc"]) >= best - GAUC_TIE]
    return min(near, key=lambda i: (table[i]["size"], -_key(table[i]["valid_gauc"])))


def select_features(train_rows: pd.DataFrame, valid_rows: pd.DataFrame, scenarios: Sequence[str],
                    settings: RankSettings, cfg: RankModelConfig, stats: RankStats, budget_ms: float,
                    kind: Literal["se", "permutation"], sets: Sequence[Sequence[str]] | None = None,
                    models: dict | None = None) -> tuple[list[str], list[dict]]:
    """COLD selection. Returns the chosen names and the table: one row per set with its size, names,
    validation GAUC, latency (ms per request of 200 candidates), within_budget, chosen, best_epoch and the
    features' importance (from the all-features model; absent when ``sets`` are given).

    ``sets`` (params rank.feature_sets as lists) replaces the importance-ranked nested sets; ``models``, when
    a dict, receives each set's trained (model, report) keyed by the tuple of its names, so the caller need
    not retrain the chosen set."""
    if len(valid_rows) == 0:
        raise BadInputError("rank validation rows: no rows (feature selection needs a validation day)")
    latency_scenario = str(valid_rows["scenario"].astype(str).value_counts().idxmax())
    trained: dict[tuple[str, ...], tuple[PreRanker, dict]] = {}

    def fit(names: Sequence[str]) -> tuple[PreRanker, dict]:
        key = tuple(names)
        if key not in trained:
            trained[key] = fit_ranker(train_rows, valid_rows, names, scenarios, settings, cfg)
        return trained[key]

    imp: dict[str, float] = {}
    if sets is None:
        full, _ = fit(FEATURE_NAMES)
        imp = importance(full, valid_rows, kind, FEATURE_NAMES)
        order = sorted(FEATURE_NAMES, key=lambda n: (-imp[n], FEATURE_NAMES.index(n)))
        candidates = nested_sets(order)
    else:
        candidates = [validate_names(s, "rank.feature_sets") for s in sets]
        if not candidates:
            raise BadInputError("rank.feature_sets: must name at least one set")
    table = []
    for names in candidates:
        model, report = fit(names)
        latency = request_latency_ms(stats, model, latency_scenario)
        table.append({"size": len(names), "names": list(names), "valid_gauc": report["valid_gauc"],
                      "latency_ms": latency, "within_budget": latency <= budget_ms, "chosen": False,
                      "best_epoch": report["best_epoch"],
                      **({"importance": {n: imp[n] for n in names}} if imp else {})})
    pick = choose(table, budget_ms)
    table[pick]["chosen"] = True
    if not table[pick]["within_budget"]:
        log.warning("rank: no feature set fits the latency budget of %.2f ms per request; the smallest set "
                    "(%d features, %.2f ms) is chosen", budget_ms, table[pick]["size"], table[pick]["latency_ms"])
    if models is not None:
        models.update(trained)
    return list(table[pick]["names"]), table

