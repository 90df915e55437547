"""rank.select: importance, per-request latency, nested sets and the choice under a latency budget."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from rank.world import SCENARIOS, make_frame, make_items, zero_score

from sass_retrieval.rank.features import FEATURE_NAMES, RankStats, training_rows
from sass_retrieval.rank.model import RankModelConfig
from sass_retrieval.rank.select import choose, importance, nested_sets, request_latency_ms, select_features
from sass_retrieval.rank.train import RankSettings, fit_ranker

FAST = RankSettings(epochs=2, batch_size=512, lr=0.01, patience=1, seed=0)
CFG = RankModelConfig(emb_dim=4, hidden=(16,))


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame, RankStats]:
    items = make_items(seed=8)
    frame = make_frame(items, days=5, rows_per_day=1200, seed=8)
    days = sorted(frame.date.unique())
    rows = training_rows(frame, items, days, zero_score)
    stats = RankStats.from_frame(frame[frame.date < days[-1]], items)
    return rows[rows.date < days[-1]], rows[rows.date == days[-1]], stats


def test_nested_sets_keep_the_retrieval_score_and_follow_the_order() -> None:
    order = list(reversed(FEATURE_NAMES))           # retrieval_score first here; any order works
    sets = nested_sets(order)
    assert [len(s) for s in sets] == [3, 5, 7, 9, 11, 13]
    assert all("retrieval_score" in s for s in sets)
    assert all(set(a) < set(b) for a, b in zip(sets, sets[1:], strict=False))
    assert set(sets[0]) == {"retrieval_score", order[1], order[2]}
    assert set(nested_sets(["upload_type", "video_type", "retrieval_score", "duration_bucket"] +
                           [n for n in FEATURE_NAMES if n not in ("upload_type", "video_type", "retrieval_score",
                                                                  "duration_bucket")])[0]) == \
        {"upload_type", "video_type", "retrieval_score"}


def test_choose_best_within_budget_ties_to_the_smaller_set_and_smallest_when_none_fits() -> None:
    table = [{"size": 3, "valid_gauc": 0.700, "latency_ms": 1.0}, {"size": 5, "valid_gauc": 0.7205, "latency_ms": 2.0},
             {"size": 7, "valid_gauc": 0.7210, "latency_ms": 3.0}, {"size": 13, "valid_gauc": 0.80, "latency_ms": 9.0}]
    assert choose(table, budget_ms=5.0) == 1        # 0.7205 ties 0.7210 (< 0.001): the smaller set
    assert choose(table, budget_ms=10.0) == 3
    assert choose(table, budget_ms=1.5) == 0
    assert choose(table, budget_ms=0.1) == 0        # none fits: the smallest set
    assert choose([{"size": 3, "valid_gauc": float("nan"), "latency_ms": 1.0},
                   {"size": 5, "valid_gauc": 0.6, "latency_ms": 1.0}], 5.0) == 1


def test_request_latency_is_measured_at_one_thread_and_restores_threads(world) -> None:
    train, valid, stats = world
    model, _ = fit_ranker(train, valid, ["user_tag_ctr", "retrieval_score"], SCENARIOS, FAST, CFG)
    torch.set_num_threads(2)
    ms = request_latency_ms(stats, model, "a", n_candidates=200, repeats=20)
    assert torch.get_num_threads() == 2
    assert 0.0 < ms < 1000.0
    torch.set_num_threads(1)


def test_permutation_importance_finds_the_taste_feature(world) -> None:
    train, valid, _ = world
    names = ["user_tag_ctr", "user_tag_clicks", "upload_type", "retrieval_score"]
    model, _ = fit_ranker(train, valid, names, SCENARIOS, FAST, CFG)
    perm = importance(model, valid, "permutation", names)
    assert perm["user_tag_ctr"] + perm["user_tag_clicks"] > 0.05
    assert perm["retrieval_score"] == pytest.approx(0.0, abs=1e-9)         # a constant column: shuffling it is a no-op
    se = importance(model, valid, "se", names)
    assert set(se) == set(names) and all(0 < v < 1 for v in se.values())


def test_select_features_respects_the_budget(world) -> None:
    train, valid, stats = world
    models: dict = {}
    names, table = select_features(train, valid, SCENARIOS, FAST, CFG, stats, budget_ms=1e9, kind="se", models=models)
    assert [r["size"] for r in table] == [3, 5, 7, 9, 11, 13]
    assert sum(r["chosen"] for r in table) == 1 and all(r["within_budget"] for r in table)
    chosen = next(r for r in table if r["chosen"])
    assert chosen["names"] == names and "retrieval_score" in names
    assert chosen["valid_gauc"] >= max(r["valid_gauc"] for r in table) - 0.001
    assert set(table[-1]["importance"]) == set(FEATURE_NAMES)
    assert tuple(names) in models
    # a budget no set meets: the smallest set, flagged out of budget
    small = [["user_tag_ctr", "retrieval_score"], ["user_tag_ctr", "user_tag_clicks", "retrieval_score"]]
    names, table = select_features(train, valid, SCENARIOS, FAST, CFG, stats, budget_ms=1e-9, kind="se", sets=small)
    assert names == small[0] and not any(r["within_budget"] for r in table) and table[0]["chosen"]


def test_select_features_keeps_a_faster_set_when_the_slower_one_is_over_budget(world, monkeypatch) -> None:
    """Latency made deterministic (1 ms per feature): the budget alone decides between the sets."""
    import sass_retrieval.rank.select as select

    train, valid, stats = world
    monkeypatch.setattr(select, "request_latency_ms", lambda stats, model, scenario: float(len(model.names)))
    sets = [["upload_type", "retrieval_score"], ["user_tag_ctr", "user_tag_clicks", "retrieval_score"]]
    names, table = select_features(train, valid, SCENARIOS, FAST, CFG, stats, budget_ms=2.5, kind="se", sets=sets)
    assert table[1]["valid_gauc"] > table[0]["valid_gauc"] + 0.05          # the slower set is better...
    assert names == sets[0] and [r["within_budget"] for r in table] == [True, False]   # ...but over budget
    names, _ = select_features(train, valid, SCENARIOS, FAST, CFG, stats, budget_ms=3.5, kind="se", sets=sets)
    assert names == sets[1]
