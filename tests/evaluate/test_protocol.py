import math

import numpy as np
import pandas as pd
import pytest

from sass_retrieval.evaluate.protocol import EvalSet, build_eval_set, evaluate, format_table


def frame(rows):
    """rows: (user, video, scenario, is_click)."""
    df = pd.DataFrame(rows, columns=["user_id", "video_id", "scenario", "is_click"])
    df["date"] = 20220425
    return df


class Fixed:
    """Returns a fixed ranking per scenario (the same for every user), truncated/padded to k."""

    def __init__(self, lists):
        self.lists = lists
        self.calls = []

    def top_items(self, scenario, user_ids, k):
        self.calls.append((scenario, len(user_ids), k))
        top = np.full(k, -1, dtype=np.int64)
        lst = np.asarray(self.lists[scenario], dtype=np.int64)[:k]
        top[: lst.size] = lst
        return np.tile(top, (len(user_ids), 1))


# ---- build_eval_set -----------------------------------------------------------------------------


def test_pair_needs_a_train_interaction():
    train = frame([(1, 100, "a", 0)])  # user 1: one non-clicked exposure is enough
    test = frame([(1, 101, "a", 1), (2, 101, "a", 1)])  # user 2 has no train interaction
    es = build_eval_set(train, test, ["a"])
    assert es.pairs["a"].tolist() == [1]
    assert es.truth["a"] == [{101}]


def test_train_interaction_may_be_in_another_scenario():
    train = frame([(1, 100, "b", 0), (1, 102, "a", 0)])
    test = frame([(1, 101, "a", 1)])
    es = build_eval_set(train, test, ["a", "b"])
    assert es.pairs["a"].tolist() == [1]
    assert es.pairs["b"].tolist() == []


def test_pair_needs_a_test_click_in_that_scenario():
    train = frame([(1, 100, "a", 1), (1, 200, "b", 1), (2, 100, "a", 0)])
    test = frame(
        [
            (1, 101, "a", 0),  # exposure without click in a: no pair (1, a)
            (1, 201, "b", 1),  # click in b: pair (1, b)
            (2, 102, "a", 1),
            (2, 103, "a", 1),
            (2, 104, "b", 0),
        ]
    )
    es = build_eval_set(train, test, ["a", "b"])
    assert es.pairs["a"].tolist() == [2]
    assert es.truth["a"] == [{102, 103}]
    assert es.pairs["b"].tolist() == [1]
    assert es.truth["b"] == [{201}]


def test_label_chooses_the_ground_truth_and_keeps_the_train_click_removal():
    train = frame([(1, 100, "a", 1), (2, 100, "a", 0)])
    test = frame([(1, 100, "a", 1), (1, 101, "a", 1), (1, 102, "a", 0), (2, 103, "a", 1), (2, 104, "a", 0)])
    test["long_view"] = [1, 0, 1, 0, 1]   # 102 and 104: long-viewed without a click; 100: clicked in train
    es = build_eval_set(train, test, ["a"], label="long_view")
    assert es.pairs["a"].tolist() == [1, 2]
    assert es.truth["a"] == [{102}, {104}]
    assert es.pools["a"].tolist() == build_eval_set(train, test, ["a"]).pools["a"].tolist()
    with pytest.raises(ValueError, match="is_like"):
        build_eval_set(train, test, ["a"], label="is_like")


def test_only_keeps_some_scenarios_as_built_for_them():
    train = frame([(1, 100, "a", 1), (2, 200, "b", 0), (2, 201, "b", 1)])
    test = frame([(1, 101, "a", 1), (2, 202, "b", 1)])
    sub, direct = build_eval_set(train, test, ["a", "b"]).only(["b"]), build_eval_set(train, test, ["b"])
    assert sub.scenarios == direct.scenarios == ["b"]
    assert sub.pairs["b"].tolist() == direct.pairs["b"].tolist() and sub.truth == direct.truth
    assert sub.pools["b"].tolist() == direct.pools["b"].tolist() and sub.train_clicked.keys() == direct.train_clicked.keys()


def test_truth_excludes_videos_clicked_in_train_in_any_scenario():
    train = frame(
        [
            (1, 100, "b", 1),  # clicked in b in train
            (1, 101, "a", 0),  # only exposed in train: stays in G
            (2, 100, "a", 1),  # another user's click does not matter for user 1
        ]
    )
    test = frame([(1, 100, "a", 1), (1, 101, "a", 1), (1, 102, "a", 1)])
    es = build_eval_set(train, test, ["a"])
    assert es.truth["a"] == [{101, 102}]
    assert es.train_clicked[1].tolist() == [100]
    assert es.train_clicked[2].tolist() == [100]


def test_pair_with_empty_truth_after_removal_is_dropped():
    train = frame([(1, 100, "a", 1), (2, 100, "a", 1)])
    test = frame([(1, 100, "a", 1), (2, 100, "a", 1), (2, 105, "a", 1)])
    es = build_eval_set(train, test, ["a"])
    assert es.pairs["a"].tolist() == [2]
    assert es.truth["a"] == [{105}]


def test_pool_is_train_exposures_of_the_scenario_any_label():
    train = frame([(1, 100, "a", 0), (1, 101, "a", 1), (2, 102, "b", 1), (3, 103, "other", 1)])
    test = frame([(1, 104, "a", 1), (1, 105, "a", 1)])  # test-only videos are not in the pool
    es = build_eval_set(train, test, ["a", "b"])
    assert es.pools["a"].tolist() == [100, 101]
    assert es.pools["b"].tolist() == [102]
    assert "other" not in es.pools and "other" not in es.pairs
    assert es.scenarios == ["a", "b"]


def test_pairs_sorted_and_truth_aligned():
    train = frame([(u, 1, "a", 0) for u in (9, 3, 5)])
    test = frame([(9, 90, "a", 1), (3, 30, "a", 1), (5, 50, "a", 1), (5, 51, "a", 1)])
    es = build_eval_set(train, test, ["a"])
    assert es.pairs["a"].tolist() == [3, 5, 9]
    assert es.truth["a"] == [{30}, {50, 51}, {90}]


# ---- evaluate ------------------------------------------------------------------------------------


def test_truth_outside_pool_is_a_miss_that_counts():
    train = frame([(1, 100, "a", 0), (1, 101, "a", 0)])
    test = frame([(1, 100, "a", 1), (1, 999, "a", 1)])  # 999 never exposed in a in train
    es = build_eval_set(train, test, ["a"])
    assert es.truth["a"] == [{100, 999}]
    res = evaluate(es, Fixed({"a": [100, 101]}), ks=(1, 2))
    row = res["per_scenario"]["a"]
    assert row["hit_rate@1"] == 1.0
    assert row["recall@1"] == pytest.approx(0.5)
    assert row["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_train_clicked_items_are_removed_and_next_moves_up():
    # user 1 clicked 100 and 101 in train (101 in another scenario); the fixed list is 100, 101, 102, 103
    train = frame([(1, 100, "a", 1), (1, 101, "b", 1), (1, 101, "a", 0), (1, 102, "a", 0), (1, 103, "a", 0)])
    test = frame([(1, 102, "a", 1)])
    es = build_eval_set(train, test, ["a"])
    rec = Fixed({"a": [100, 101, 102, 103]})
    res = evaluate(es, rec, ks=(1,))
    # 100 and 101 removed -> 102 is at rank 1
    assert res["per_scenario"]["a"]["hit_rate@1"] == 1.0
    assert res["per_scenario"]["a"]["ndcg@1"] == 1.0
    # asked for k_max + number of the user's train clicks inside the pool (100, 101 -> 2)
    assert rec.calls == [("a", 1, 3)]


def test_request_size_uses_batch_max_capped_at_pool():
    train = frame(
        [(1, v, "b", 1) for v in range(10, 20)]  # user 1: 10 train clicks, all in pool of a
        + [(1, v, "a", 0) for v in range(10, 20)]
        + [(2, 10, "a", 0)]
    )
    test = frame([(1, 50, "a", 1), (2, 11, "a", 1)])
    es = build_eval_set(train, test, ["a"])
    rec = Fixed({"a": list(range(10, 20))})
    evaluate(es, rec, ks=(2,), batch_size=1)
    assert rec.calls == [("a", 1, 2 + 10), ("a", 1, 2)]
    rec = Fixed({"a": list(range(10, 20))})
    evaluate(es, rec, ks=(2,), batch_size=2)
    assert rec.calls == [("a", 2, 12)]


def test_two_users_hand_computed_metrics_at_each_k():
    train = frame([(1, v, "a", 0) for v in range(1, 7)] + [(2, 1, "a", 1)])
    test = frame(
        [
            (1, 1, "a", 1),
            (1, 3, "a", 1),
            (1, 99, "a", 1),  # |G| = 3 for user 1, hits at ranks 1 and 3
            (2, 3, "a", 1),  # user 2: 1 removed from list -> 3 at rank 2
        ]
    )
    es = build_eval_set(train, test, ["a"])
    res = evaluate(es, Fixed({"a": [1, 2, 3, 4, 5, 6]}), ks=(1, 2, 3))
    row = res["per_scenario"]["a"]
    assert row["pairs"] == 2 and row["pool"] == 6
    d2, d3 = 1 / math.log2(3), 1 / math.log2(4)
    u1 = {1: (1, 1 / 3, 1.0), 2: (1, 1 / 3, 1 / (1 + d2)), 3: (1, 2 / 3, (1 + d3) / (1 + d2 + d3))}
    u2 = {1: (0, 0, 0), 2: (1, 1, d2), 3: (1, 1, d2)}
    for k in (1, 2, 3):
        assert row[f"hit_rate@{k}"] == pytest.approx((u1[k][0] + u2[k][0]) / 2)
        assert row[f"recall@{k}"] == pytest.approx((u1[k][1] + u2[k][1]) / 2)
        assert row[f"ndcg@{k}"] == pytest.approx((u1[k][2] + u2[k][2]) / 2)


def test_macro_vs_micro():
    # scenario a: 3 pairs, all hit at rank 1; scenario b: 1 pair, miss
    train = frame([(u, 1, "a", 0) for u in (1, 2, 3, 4)] + [(4, 7, "b", 0), (4, 8, "b", 0)])
    test = frame([(1, 1, "a", 1), (2, 1, "a", 1), (3, 1, "a", 1), (4, 7, "b", 1), (4, 5, "other", 1)])
    es = build_eval_set(train, test, ["a", "b"])
    res = evaluate(es, Fixed({"a": [1], "b": [8]}), ks=(1,))
    assert res["per_scenario"]["a"]["hit_rate@1"] == 1.0
    assert res["per_scenario"]["b"]["hit_rate@1"] == 0.0
    assert res["macro"]["hit_rate@1"] == pytest.approx(0.5)
    assert res["micro"]["hit_rate@1"] == pytest.approx(0.75)
    assert set(res["per_scenario"]) == {"a", "b"}  # "other" is not reported


def test_batching_does_not_change_results():
    rng = np.random.default_rng(1)
    rows_tr = [
        (int(u), int(v), s, int(rng.random() < 0.3))
        for u, v, s in zip(
            rng.integers(0, 40, 600), rng.integers(0, 80, 600), rng.choice(["a", "b"], 600), strict=True
        )
    ]
    rows_te = [
        (int(u), int(v), s, int(rng.random() < 0.5))
        for u, v, s in zip(
            rng.integers(0, 40, 300), rng.integers(0, 80, 300), rng.choice(["a", "b"], 300), strict=True
        )
    ]
    es = build_eval_set(frame(rows_tr), frame(rows_te), ["a", "b"])

    class Shuffled:
        def top_items(self, scenario, user_ids, k):
            out = np.full((len(user_ids), k), -1, dtype=np.int64)
            for i, u in enumerate(user_ids):
                perm = np.random.default_rng(int(u)).permutation(es.pools[scenario])[:k]
                out[i, : perm.size] = perm
            return out

    r1 = evaluate(es, Shuffled(), ks=(5, 10), batch_size=3)
    r2 = evaluate(es, Shuffled(), ks=(5, 10), batch_size=1000)
    for s in ("a", "b"):
        for m, v in r1["per_scenario"][s].items():
            assert v == pytest.approx(r2["per_scenario"][s][m])
    assert r1["per_scenario"]["a"]["pairs"] > 0


def test_recommender_contract_is_checked():
    train = frame([(1, 100, "a", 0)])
    test = frame([(1, 100, "a", 1)])
    es = build_eval_set(train, test, ["a"])
    with pytest.raises(ValueError, match="outside the pool"):
        evaluate(es, Fixed({"a": [555]}), ks=(1,))
    with pytest.raises(ValueError, match="twice"):
        evaluate(es, Fixed({"a": [100, 100]}), ks=(2,))


def test_empty_scenario_is_nan_and_left_out_of_macro():
    es = EvalSet(
        scenarios=["a", "b"],
        pairs={"a": np.array([1]), "b": np.array([], dtype=np.int64)},
        truth={"a": [{5}], "b": []},
        pools={"a": np.array([5]), "b": np.array([6])},
        train_clicked={},
    )
    res = evaluate(es, Fixed({"a": [5], "b": [6]}), ks=(1,))
    assert math.isnan(res["per_scenario"]["b"]["ndcg@1"])
    assert res["macro"]["ndcg@1"] == 1.0 and res["micro"]["ndcg@1"] == 1.0


def test_format_table():
    train = frame([(1, 1, "a", 0), (1, 2, "b", 0)])
    test = frame([(1, 1, "a", 1), (1, 2, "b", 1)])
    es = build_eval_set(train, test, ["a", "b"])
    res = {"fixed": evaluate(es, Fixed({"a": [1], "b": [2]}))}
    table = format_table(res)
    assert "| model | a (pairs 1, pool 1) | b (pairs 1, pool 1) | macro | micro |" in table
    assert "| fixed | 1.0000 / 1.0000 |" in table
    assert "ndcg@50 / hit_rate@50" in table
    other = {"x": {"per_scenario": {"a": {"pairs": 2, "pool": 1}}, "macro": {}, "micro": {}}}
    with pytest.raises(ValueError, match="not comparable"):
        format_table({**res, **other})


# ---- keep_pairs, rank_pairs / score_rankings ------------------------------------------------------


def random_eval_set(seed: int = 1, users: int = 40, videos: int = 80, scenarios=("a", "b")):
    rng = np.random.default_rng(seed)
    rows_tr = [
        (int(u), int(v), s, int(rng.random() < 0.3))
        for u, v, s in zip(rng.integers(0, users, 600), rng.integers(0, videos, 600),
                           rng.choice(list(scenarios), 600), strict=True)
    ]
    rows_te = [
        (int(u), int(v), s, int(rng.random() < 0.5))
        for u, v, s in zip(rng.integers(0, users, 300), rng.integers(0, videos, 300),
                           rng.choice(list(scenarios), 300), strict=True)
    ]
    return frame(rows_tr), build_eval_set(frame(rows_tr), frame(rows_te), list(scenarios))


class PerUser:
    """A deterministic, prefix-consistent ranking of the pool per (scenario, user)."""

    def __init__(self, es):
        self.es = es

    def top_items(self, scenario, user_ids, k):
        out = np.full((len(user_ids), k), -1, dtype=np.int64)
        for i, u in enumerate(user_ids):
            perm = np.random.default_rng([int(u), ord(scenario[0])]).permutation(self.es.pools[scenario])[:k]
            out[i, : perm.size] = perm
        return out


def test_keep_pairs_aggregates_are_the_means_of_per_pair_values():
    _, es = random_eval_set()
    res = evaluate(es, PerUser(es), ks=(5, 10), batch_size=7, keep_pairs=True)
    scored = [s for s in es.scenarios if len(es.pairs[s])]
    assert scored == ["a", "b"]
    for s in es.scenarios:
        pp = res["per_pair"][s]
        assert set(pp) == {f"{m}@{k}" for m in ("hit_rate", "recall", "ndcg") for k in (5, 10)}
        for m, values in pp.items():
            assert values.dtype == np.float64 and values.shape == (len(es.pairs[s]),)
            assert res["per_scenario"][s][m] == values.mean()
    for m in res["macro"]:
        assert res["macro"][m] == pytest.approx(np.mean([res["per_pair"][s][m].mean() for s in scored]), abs=1e-15)
        pooled = np.concatenate([res["per_pair"][s][m] for s in scored])
        assert res["micro"][m] == pytest.approx(pooled.mean(), abs=1e-15)
    # without keep_pairs: the same aggregates, no per-pair arrays
    plain = evaluate(es, PerUser(es), ks=(5, 10), batch_size=1000)
    assert "per_pair" not in plain
    assert plain["per_scenario"] == res["per_scenario"] and plain["macro"] == res["macro"]


def test_per_pair_values_are_aligned_with_pairs():
    train = frame([(u, 1, "a", 0) for u in (9, 3, 5)] + [(u, 2, "a", 0) for u in (9, 3, 5)])
    test = frame([(9, 2, "a", 1), (3, 1, "a", 1), (5, 7, "a", 1)])
    es = build_eval_set(train, test, ["a"])
    assert es.pairs["a"].tolist() == [3, 5, 9]
    res = evaluate(es, Fixed({"a": [1, 2]}), ks=(1, 2), keep_pairs=True)
    pp = res["per_pair"]["a"]
    assert pp["hit_rate@1"].tolist() == [1.0, 0.0, 0.0]  # user 3 hits at rank 1, 5 never, 9 at rank 2
    assert pp["ndcg@2"].tolist() == pytest.approx([1.0, 0.0, 1 / math.log2(3)])


def test_empty_scenario_keeps_empty_per_pair_arrays():
    es = EvalSet(
        scenarios=["a", "b"],
        pairs={"a": np.array([1]), "b": np.array([], dtype=np.int64)},
        truth={"a": [{5}], "b": []},
        pools={"a": np.array([5]), "b": np.array([6])},
        train_clicked={},
    )
    res = evaluate(es, Fixed({"a": [5], "b": [6]}), ks=(1,), keep_pairs=True)
    assert res["per_pair"]["b"]["ndcg@1"].shape == (0,)
    assert math.isnan(res["per_scenario"]["b"]["ndcg@1"]) and res["per_scenario"]["b"]["pairs"] == 0
    assert res["macro"]["ndcg@1"] == 1.0 and res["micro"]["ndcg@1"] == 1.0


def test_rank_then_score_is_evaluate():
    from sass_retrieval.evaluate.protocol import rank_pairs, score_rankings

    _, es = random_eval_set(seed=4)
    ranked = rank_pairs(es, PerUser(es), 10, batch_size=5)
    for s in es.scenarios:
        assert ranked[s].shape == (len(es.pairs[s]), 10)
        # train-clicked videos never appear; empty slots only at the end
        for u, row in zip(es.pairs[s], ranked[s], strict=True):
            assert not set(row.tolist()) & set(es.train_clicked.get(int(u), np.empty(0)).tolist())
            valid = row >= 0
            assert (valid[:-1] >= valid[1:]).all()
    assert score_rankings(es, ranked, (5, 10)) == evaluate(es, PerUser(es), ks=(5, 10))
    with pytest.raises(ValueError, match="expected"):
        score_rankings(es, {s: r[:, :3] for s, r in ranked.items()}, (5,))
