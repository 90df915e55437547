import math

import numpy as np
import pytest

from sass_retrieval.evaluate.metrics import (
    as_csr,
    hit_rate_at_k,
    membership,
    metrics_at_ks,
    ndcg_at_k,
    recall_at_k,
)

L2_3 = math.log2(3)
L2_4 = 2.0


def test_hits_at_ranks_1_and_3_with_three_truth_items():
    ranked = np.array([[10, 11, 12, 13, 14]])
    truth = [{10, 12, 99}]  # 99 never ranked (e.g. outside the pool): a miss counted in |G|
    assert hit_rate_at_k(ranked, truth, 1)[0] == 1.0
    assert recall_at_k(ranked, truth, 1)[0] == pytest.approx(1 / 3)
    assert ndcg_at_k(ranked, truth, 1)[0] == pytest.approx(1.0)  # IDCG over min(3, 1) = 1 hit
    assert recall_at_k(ranked, truth, 2)[0] == pytest.approx(1 / 3)
    assert ndcg_at_k(ranked, truth, 2)[0] == pytest.approx(1 / (1 + 1 / L2_3))
    assert recall_at_k(ranked, truth, 3)[0] == pytest.approx(2 / 3)
    expected = (1 + 1 / L2_4) / (1 + 1 / L2_3 + 1 / L2_4)
    assert ndcg_at_k(ranked, truth, 3)[0] == pytest.approx(expected)
    assert ndcg_at_k(ranked, truth, 5)[0] == pytest.approx(expected)  # IDCG still over 3 hits
    assert recall_at_k(ranked, truth, 5)[0] == pytest.approx(2 / 3)


def test_rows_are_independent_and_vectorised():
    ranked = np.array(
        [
            [1, 2, 3, 4],
            [5, 6, 7, 8],
            [9, -1, -1, -1],
            [4, 3, 2, 1],
        ]
    )
    truth = [{2}, {100, 101}, {9, 5}, {1, 2, 3, 4}]
    ndcg = ndcg_at_k(ranked, truth, 4)
    hr = hit_rate_at_k(ranked, truth, 4)
    rec = recall_at_k(ranked, truth, 4)
    np.testing.assert_allclose(hr, [1, 0, 1, 1])
    np.testing.assert_allclose(rec, [1, 0, 0.5, 1])
    np.testing.assert_allclose(ndcg, [1 / L2_3, 0, 1 / (1 + 1 / L2_3), 1])
    # hit at rank 2 only, k=1 -> nothing
    assert hit_rate_at_k(ranked, truth, 1)[0] == 0.0


def test_empty_slots_never_hit_and_only_first_k_columns_count():
    ranked = np.array([[-1, -1, 7]])
    truth = [{7, -1}]
    assert hit_rate_at_k(ranked, truth, 2)[0] == 0.0
    assert hit_rate_at_k(ranked, truth, 3)[0] == 1.0


def test_repeated_item_counts_once():
    ranked = np.array([[7, 7, 8]])
    truth = [{7, 8}]
    assert recall_at_k(ranked, truth, 3)[0] == pytest.approx(1.0)
    dcg = 1 + 1 / L2_4
    assert ndcg_at_k(ranked, truth, 3)[0] == pytest.approx(dcg / (1 + 1 / L2_3))


def test_empty_truth_scores_zero():
    ranked = np.array([[1, 2]])
    for f in (hit_rate_at_k, recall_at_k, ndcg_at_k):
        assert f(ranked, [set()], 2)[0] == 0.0


def test_csr_truth_equals_list_of_sets():
    ranked = np.array([[1, 2, 3], [4, 5, 6]])
    sets = [{3, 9}, {4}]
    csr = (np.array([0, 2, 3]), np.array([3, 9, 4]))
    for k in (1, 2, 3):
        np.testing.assert_allclose(ndcg_at_k(ranked, sets, k), ndcg_at_k(ranked, csr, k))
        np.testing.assert_allclose(recall_at_k(ranked, sets, k), recall_at_k(ranked, csr, k))
    indptr, indices = as_csr(sets)
    assert indptr.tolist() == [0, 2, 3]
    assert sorted(indices[:2].tolist()) == [3, 9]


def test_metrics_at_ks_matches_single_functions():
    rng = np.random.default_rng(0)
    n, m = 50, 30
    ranked = np.stack([rng.permutation(60)[:m] for _ in range(n)])
    truth = [set(rng.choice(60, size=rng.integers(1, 8), replace=False).tolist()) for _ in range(n)]
    out = metrics_at_ks(ranked, truth, (5, 20, 10))
    assert set(out) == {f"{m}@{k}" for m in ("hit_rate", "recall", "ndcg") for k in (5, 10, 20)}
    for k in (5, 10, 20):
        np.testing.assert_allclose(out[f"ndcg@{k}"], ndcg_at_k(ranked, truth, k))
        np.testing.assert_allclose(out[f"recall@{k}"], recall_at_k(ranked, truth, k))
        np.testing.assert_allclose(out[f"hit_rate@{k}"], hit_rate_at_k(ranked, truth, k))
    # against a plain per-row reference implementation
    for i in range(n):
        top = ranked[i, :10].tolist()
        hits = [r for r, v in enumerate(top, start=1) if v in truth[i]]
        dcg = sum(1 / math.log2(r + 1) for r in hits)
        idcg = sum(1 / math.log2(r + 1) for r in range(1, min(len(truth[i]), 10) + 1))
        assert out["ndcg@10"][i] == pytest.approx(dcg / idcg)
        assert out["recall@10"][i] == pytest.approx(len(hits) / len(truth[i]))


def test_membership_and_validation():
    ranked = np.array([[1, 2, -1], [2, 3, 1]])
    np.testing.assert_array_equal(
        membership(ranked, [{2}, {1, 3}]), [[False, True, False], [False, True, True]]
    )
    with pytest.raises(ValueError, match="fewer than k"):
        ndcg_at_k(ranked, [{1}, {2}], 4)
    with pytest.raises(ValueError, match="rows"):
        ndcg_at_k(ranked, [{1}], 2)
