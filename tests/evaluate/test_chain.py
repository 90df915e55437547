"""Chain consistency (evaluate.chain): the teacher's top-k over the pool with the protocol's exclusions, and the
share of it retrieval's list contains, on hand-made ids."""

from __future__ import annotations

import numpy as np
import pytest

from sass_retrieval.evaluate.chain import chain_consistency, chain_consistency_per_request, teacher_top


def test_the_share_of_the_teachers_ids_in_retrievals_list_per_request_and_averaged() -> None:
    teacher = np.array([[1, 2, 3, 4],
                        [5, 6, 7, 8],
                        [9, 10, -1, -1],      # a pool of two left after the exclusions
                        [-1, -1, -1, -1]])    # nothing left: no value
    retrieval = np.array([[4, 3, 99, 1, 2, -1],
                          [8, 50, 51, 52, -1, -1],
                          [10, 11, 12, -1, -1, -1],
                          [1, 2, 3, 4, 5, 6]])
    per = chain_consistency_per_request(teacher, retrieval)
    np.testing.assert_allclose(per[:3], [1.0, 0.25, 0.5])
    assert np.isnan(per[3])
    assert chain_consistency(teacher, retrieval) == pytest.approx((1.0 + 0.25 + 0.5) / 3)
    # the -1 slots of retrieval never match a -1 of the teacher
    assert chain_consistency(np.array([[-1, 7]]), np.array([[-1, -1]])) == 0.0
    assert np.isnan(chain_consistency(np.full((2, 3), -1), np.zeros((2, 5), dtype=np.int64)))
    with pytest.raises(ValueError, match="one row per request"):
        chain_consistency(teacher, retrieval[:2])


def _teacher(scores_of: dict[int, np.ndarray], calls: list[int]):
    """A teacher whose score of (user, video) is a fixed table; records the chunk sizes it was asked for."""
    def score(scenario: str, users: np.ndarray, pool: np.ndarray) -> np.ndarray:
        assert scenario == "s0"
        calls.append(len(users))
        return np.stack([scores_of[int(u)][pool] for u in users])
    return score


def test_teacher_top_ranks_the_pool_chunk_by_chunk_and_drops_the_excluded_videos() -> None:
    rng = np.random.default_rng(0)
    n_users, n_videos = 7, 40
    table = {u: rng.normal(size=n_videos) for u in range(100, 100 + n_users)}
    pool = np.arange(5, 35)
    users = np.arange(100, 100 + n_users)
    exclude = {100: np.array([int(pool[np.argmax(table[100][pool])]), 999]), 103: pool[:25]}
    calls: list[int] = []
    top = teacher_top(_teacher(table, calls), "s0", users, pool, k=5, exclude=exclude, chunk=3)
    assert calls == [3, 3, 1]
    assert top.shape == (n_users, 5)
    for i, u in enumerate(users):
        left = np.array([v for v in pool if v not in set(exclude.get(int(u), np.zeros(0)).tolist())])
        best = left[np.argsort(-table[int(u)][left], kind="stable")][:5]
        np.testing.assert_array_equal(top[i], best)
    assert exclude[100][0] not in top[0]
    small = teacher_top(_teacher(table, []), "s0", users[3:4], pool, k=8, exclude=exclude)
    assert (small[0, 5:] == -1).all() and (small[0, :5] >= 30).all(), "five videos left: -1 pads the rest"
    tiny = teacher_top(_teacher(table, []), "s0", users[:1], pool[:2], k=4)
    assert (tiny[0, 2:] == -1).all() and set(tiny[0, :2]) == set(pool[:2].tolist())


def test_a_teacher_of_the_wrong_shape_is_named() -> None:
    with pytest.raises(ValueError, match="scenario 's0': the teacher returned scores of shape"):
        teacher_top(lambda s, u, p: np.zeros((len(u), len(p) + 1)), "s0", np.arange(3), np.arange(10))


def test_retrieval_that_holds_the_teachers_picks_scores_one() -> None:
    rng = np.random.default_rng(1)
    table = {u: rng.normal(size=300) for u in range(5)}
    pool = np.arange(300)
    top20 = teacher_top(_teacher(table, []), "s0", np.arange(5), pool, k=20)
    top200 = teacher_top(_teacher(table, []), "s0", np.arange(5), pool, k=200)
    assert chain_consistency(top20, top200) == 1.0
    worst = np.stack([pool[np.argsort(table[u])][:200] for u in range(5)])   # the teacher's 200 worst
    assert chain_consistency(top20, worst) == 0.0
