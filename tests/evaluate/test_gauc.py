"""gauc: per-user AUC weighted by impressions, against a brute-force pair count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sass_retrieval.evaluate.gauc import gauc, gauc_by, gauc_within


def brute_gauc(users, labels, scores) -> float:
    num = den = 0.0
    for u in set(users.tolist()):
        m = users == u
        pos, neg = scores[m & (labels == 1)], scores[m & (labels == 0)]
        if len(pos) == 0 or len(neg) == 0:
            continue
        pairs = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
        num += m.sum() * pairs / (len(pos) * len(neg))
        den += m.sum()
    return num / den if den else float("nan")


@pytest.mark.parametrize("seed", range(6))
def test_gauc_equals_brute_force_on_random_data_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    users = rng.integers(0, 25, n)
    labels = rng.integers(0, 2, n)
    scores = rng.integers(0, 6, n).astype(float) if seed % 2 else rng.normal(size=n)   # many ties on odd seeds
    assert gauc(users, labels, scores) == pytest.approx(brute_gauc(users, labels, scores), abs=1e-12)


def test_perfect_reversed_and_tied_orders() -> None:
    users = np.array([1, 1, 1, 2, 2, 2])
    labels = np.array([1, 0, 0, 0, 1, 1])
    assert gauc(users, labels, np.array([3.0, 2, 1, 1, 2, 3])) == 1.0
    assert gauc(users, labels, -np.array([3.0, 2, 1, 1, 2, 3])) == 0.0
    assert gauc(users, labels, np.zeros(6)) == 0.5


def test_users_with_one_label_are_skipped_and_weights_are_impressions() -> None:
    # user 1: AUC 1 over 2 rows; user 2: AUC 0 over 4 rows; user 3: only clicks (skipped)
    users = np.array([1, 1, 2, 2, 2, 2, 3, 3])
    labels = np.array([1, 0, 1, 0, 0, 0, 1, 1])
    scores = np.array([1.0, 0, 0, 1, 2, 3, 5, 6])
    assert gauc(users, labels, scores) == pytest.approx((2 * 1.0 + 4 * 0.0) / 6)


def test_edge_cases() -> None:
    assert math.isnan(gauc(np.array([]), np.array([]), np.array([])))
    assert math.isnan(gauc(np.array([1, 1]), np.array([1, 1]), np.array([0.1, 0.2])))
    with pytest.raises(ValueError, match="NaN"):
        gauc(np.array([1, 1]), np.array([1, 0]), np.array([np.nan, 0.2]))
    with pytest.raises(ValueError, match="labels"):
        gauc(np.array([1, 1]), np.array([2, 0]), np.array([0.1, 0.2]))


def test_per_group_and_pooled_over_requests() -> None:
    rng = np.random.default_rng(3)
    n = 400
    groups = rng.choice(["a", "b"], n)
    users = rng.integers(0, 10, n)
    labels = rng.integers(0, 2, n)
    scores = rng.normal(size=n)
    by = gauc_by(groups, users, labels, scores)
    assert list(by) == ["a", "b"]
    for g in by:
        m = groups == g
        assert by[g] == pytest.approx(brute_gauc(users[m], labels[m], scores[m]))
    keys = np.array([f"{g}/{u}" for g, u in zip(groups, users, strict=True)])
    assert gauc_within(groups, users, labels, scores) == pytest.approx(brute_gauc(keys, labels, scores))
