"""Slices: scenario-cold pairs, tail ground truth, and scoring every slice from one ranking."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sass_retrieval.evaluate.protocol import EvalSet, build_eval_set, evaluate
from sass_retrieval.evaluate.slices import (
    build_slices,
    evaluate_slices,
    scenario_cold_mask,
    slice_summary,
    tail_thresholds,
)


def frame(rows):
    """rows: (user, video, scenario, is_click)."""
    return pd.DataFrame(rows, columns=["user_id", "video_id", "scenario", "is_click"])


class PerUser:
    """Deterministic and prefix-consistent: a fixed permutation of the pool per (scenario, user)."""

    def __init__(self, es):
        self.es = es
        self.calls = 0

    def top_items(self, scenario, user_ids, k):
        self.calls += 1
        out = np.full((len(user_ids), k), -1, dtype=np.int64)
        for i, u in enumerate(user_ids):
            perm = np.random.default_rng([int(u), len(scenario), ord(scenario[0])]).permutation(
                self.es.pools[scenario])[:k]
            out[i, : perm.size] = perm
        return out


def cold_fixture():
    """Scenario a: users 1..4; b is the other scenario, "other" the merged rare ones."""
    rows = []
    rows += [(1, 100 + i, "a", 0) for i in range(2)] + [(1, 200 + i, "b", 0) for i in range(5)]  # cold in a
    rows += [(2, 100 + i, "a", 0) for i in range(5)] + [(2, 200 + i, "b", 0) for i in range(9)]  # 5 in a: not cold
    rows += [(3, 100, "a", 1)] + [(3, 200 + i, "b", 0) for i in range(4)]  # too little elsewhere
    rows += [(4, 200 + i, "b", 1) for i in range(3)] + [(4, 300 + i, "other", 0) for i in range(2)]  # 0 in a, 5 elsewhere
    train = frame(rows)
    test = frame([(u, 150, "a", 1) for u in (1, 2, 3, 4)] + [(1, 250, "b", 1), (4, 251, "b", 1)])
    return train, build_eval_set(train, test, ["a", "b"])


def test_scenario_cold_counts_rows_of_any_label_and_other_scenarios_include_merged_ones():
    train, es = cold_fixture()
    assert es.pairs["a"].tolist() == [1, 2, 3, 4]
    mask = scenario_cold_mask(es, train)
    assert mask["a"].tolist() == [True, False, False, True]
    # in b: user 1 has 5 rows in b (not cold), user 4 has 3 in b and only 2 elsewhere
    assert es.pairs["b"].tolist() == [1, 4]
    assert mask["b"].tolist() == [False, False]
    assert scenario_cold_mask(es, train, cold_max=10, cold_min_other=2)["b"].tolist() == [True, True]


def test_build_slices_subsets_pairs_and_keeps_pools_and_every_scenario():
    train, es = cold_fixture()
    slices = build_slices(es, train)
    assert list(slices) == ["all", "scenario_cold", "tail_truth"]
    assert slices["all"] is es
    cold = slices["scenario_cold"]
    assert cold.scenarios == es.scenarios and cold.pools is es.pools and cold.train_clicked is es.train_clicked
    assert cold.pairs["a"].tolist() == [1, 4] and cold.truth["a"] == [{150}, {150}]
    assert cold.pairs["b"].tolist() == [] and cold.truth["b"] == []
    assert slice_summary(slices)["scenario_cold"] == {"a": 2, "b": 0}
    assert slice_summary(slices)["all"] == {"a": 4, "b": 2}
    with pytest.raises(ValueError, match=">= 0"):
        build_slices(es, train, cold_max=-1)


def test_tail_truth_is_below_the_median_over_the_clicked_videos():
    # clicked videos of a: 11, 12, 13 with 1, 3, 5 training clicks in a -> median 3 -> tail = {10, 11} and
    # any video never clicked in a (0 clicks). Clicks of 10 in b do not count for a.
    rows = [(9, 10, "a", 0), (1, 10, "a", 0)]
    rows += [(9, 11, "a", 1)]
    rows += [(u, 12, "a", 1) for u in (21, 22, 23)]
    rows += [(u, 13, "a", 1) for u in (21, 22, 23, 24, 25)]
    rows += [(u, 10, "b", 1) for u in (21, 22, 23, 24, 25, 26)] + [(6, 20, "b", 0)]
    train = frame(rows)
    test = frame([
        (1, 10, "a", 1), (1, 12, "a", 1),   # user 1: G = {10, 12} -> tail {10}
        (6, 13, "a", 1),                    # user 6: G = {13} -> no tail video: dropped
        (9, 99, "a", 1),                    # user 9: 99 outside the pool, 0 clicks -> tail (a miss)
        (6, 20, "b", 1),                    # b: clicked {10: 6} -> median 6 -> tail {20}
    ])
    es = build_eval_set(train, test, ["a", "b"])
    th = tail_thresholds(es, train)
    assert th["a"]["median"] == 3.0 and th["b"]["median"] == 6.0
    tail = build_slices(es, train)["tail_truth"]
    assert tail.pairs["a"].tolist() == [1, 9]
    assert tail.truth["a"] == [{10}, {99}]
    assert tail.pairs["b"].tolist() == [6] and tail.truth["b"] == [{20}]
    assert es.truth["a"][0] == {10, 12}  # the input is not modified


def test_a_scenario_without_training_clicks_has_an_empty_tail_that_evaluates_to_nan():
    # b: 3 videos exposed, none clicked -> median 0 -> nothing is below it
    rows = [(1, 10, "a", 1), (2, 10, "a", 1), (1, 11, "a", 0), (1, 20, "b", 0), (1, 21, "b", 0), (1, 22, "b", 0)]
    train = frame(rows)
    test = frame([(2, 11, "a", 1), (2, 21, "b", 1)])
    es = build_eval_set(train, test, ["a", "b"])
    slices = build_slices(es, train)
    assert tail_thresholds(es, train)["b"]["median"] == 0.0
    assert slice_summary(slices)["tail_truth"] == {"a": 1, "b": 0}
    res = evaluate(slices["tail_truth"], PerUser(es), ks=(1, 2), keep_pairs=True)
    assert math.isnan(res["per_scenario"]["b"]["ndcg@2"])
    assert res["macro"]["ndcg@2"] == res["per_scenario"]["a"]["ndcg@2"]  # b left out of macro
    assert res["micro"]["ndcg@2"] == res["per_scenario"]["a"]["ndcg@2"]


def random_world(seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 3000
    train = frame(list(zip(rng.integers(0, 120, n).tolist(), rng.zipf(1.6, n).clip(max=300).tolist(),
                           rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1]).tolist(),
                           (rng.random(n) < 0.3).astype(int).tolist(), strict=True)))
    m = 1200
    test = frame(list(zip(rng.integers(0, 130, m).tolist(), rng.zipf(1.6, m).clip(max=300).tolist(),
                          rng.choice(["a", "b", "c"], m, p=[0.6, 0.3, 0.1]).tolist(),
                          (rng.random(m) < 0.5).astype(int).tolist(), strict=True)))
    return train, build_eval_set(train, test, ["a", "b", "c"])


def test_evaluate_slices_ranks_once_and_equals_separate_evaluations():
    train, es = random_world()
    slices = build_slices(es, train, cold_max=8, cold_min_other=3)
    summary = slice_summary(slices)
    assert all(0 < summary[name]["a"] < summary["all"]["a"] for name in ("scenario_cold", "tail_truth"))
    rec = PerUser(es)
    together = evaluate_slices(slices, rec, ks=(5, 20), batch_size=16, keep_pairs=True)
    assert rec.calls == sum(-(-len(es.pairs[s]) // 16) for s in es.scenarios)  # only the "all" pairs, once
    for name, sl in slices.items():
        alone = evaluate(sl, PerUser(es), ks=(5, 20), batch_size=16, keep_pairs=True)
        np.testing.assert_equal(together[name]["per_scenario"], alone["per_scenario"])  # NaN == NaN here
        np.testing.assert_equal(together[name]["macro"], alone["macro"])
        for s in sl.scenarios:
            for m, v in alone["per_pair"][s].items():
                np.testing.assert_array_equal(together[name]["per_pair"][s][m], v)


def test_evaluate_slices_falls_back_for_a_slice_with_other_pools():
    train, es = random_world(1)
    other = EvalSet(scenarios=["a"], pairs={"a": es.pairs["a"][:5]}, truth={"a": es.truth["a"][:5]},
                    pools={"a": es.pools["a"][::-1].copy()}, train_clicked=dict(es.train_clicked))
    res = evaluate_slices({"all": es, "odd": other}, PerUser(es), ks=(5,))
    np.testing.assert_equal(res["odd"], evaluate(other, PerUser(es), ks=(5,)))
    assert evaluate_slices({}, PerUser(es)) == {}
