"""The pre-ranker's candidate rows: retrieval's top-K per request, labelled by the day's clicks, earlier clicks out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sass_retrieval.rank.candidates import _keys, candidate_rows, request_rows

ITEMS = pd.DataFrame({"video_id": np.arange(1, 31, dtype=np.int64), "author_id": np.arange(1, 31) % 5,
                      "tag": np.arange(1, 31) % 3, "video_type": "NORMAL", "upload_type": "ShortImport",
                      "video_duration_ms": np.full(30, 20_000.0)})


def fixed_retrieval(scenario: str, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every user gets videos 1, 2, 3, ... in that order, scores falling."""
    ids = np.tile(np.arange(1, k + 1, dtype=np.int64), (len(users), 1))
    ids[ids > 30] = -1
    return np.where(ids > 0, 1.0 / np.maximum(ids, 1), -np.inf).astype(np.float32), ids


def test_a_request_keeps_every_click_and_some_negatives_and_drops_earlier_clicks() -> None:
    users = np.array([7, 9], dtype=np.int64)
    before = np.sort(_keys(np.array([7, 7]), np.array([1, 2])))          # user 7 clicked videos 1 and 2 earlier
    today = np.sort(_keys(np.array([7, 9, 9]), np.array([4, 3, 25])))    # 25 is outside a top 10
    u, v, score, label = request_rows(fixed_retrieval, "s0", users, 10, before, today, 3, np.random.default_rng(0))
    rows = pd.DataFrame({"u": u, "v": v, "score": score, "label": label})
    seven = rows[rows.u == 7]
    assert not set(seven.v) & {1, 2}, "videos clicked before the day are not candidates"
    assert set(seven.v) <= set(range(3, 13)), "the top 10 after the removal: videos 3 .. 12"
    assert seven.label.sum() == 1 and set(seven[seven.label == 1].v) == {4}
    nine = rows[rows.u == 9]
    assert set(nine[nine.label == 1].v) == {3}, "a click outside the top K is not a candidate"
    assert (rows.groupby("u").label.apply(lambda x: (x == 0).sum()) == 3).all(), "3 sampled negatives each"
    np.testing.assert_allclose(rows.score, 1.0 / rows.v)


def test_candidate_rows_label_each_day_with_its_own_clicks_and_count_only_earlier_days() -> None:
    frame = pd.DataFrame({
        "user_id": [1, 1, 2, 1, 2, 2],
        "video_id": [5, 6, 5, 3, 4, 7],
        "scenario": ["s0"] * 6,
        "date": [20220101, 20220101, 20220101, 20220102, 20220102, 20220103],
        "is_click": [1, 0, 1, 1, 1, 1],
    })
    rows = candidate_rows(frame, ITEMS, [20220101, 20220102, 20220103], fixed_retrieval, 8, 2, seed=0)
    assert set(rows["date"]) == {20220102, 20220103}, "the first day has no earlier day for its features"
    pos = rows[rows.is_click == 1]
    assert set(zip(pos.date, pos.user_id, pos.video_id, strict=True)) == {(20220102, 1, 3), (20220102, 2, 4),
                                                                          (20220103, 2, 7)}
    day3 = rows[(rows.date == 20220103) & (rows.user_id == 2)]
    assert not set(day3.video_id) & {4, 5}, "user 2 clicked 5 and 4 before day 3"
    # day 2's features count day 1 only: user 1 clicked one video of tag 2 (video 5) then, none of another tag
    u1 = rows[(rows.date == 20220102) & (rows.user_id == 1)]
    assert len(u1) == 3
    np.testing.assert_array_equal(u1.user_tag_clicks, (u1.video_id % 3 == 2).astype(np.float32))
    again = candidate_rows(frame, ITEMS, [20220102, 20220103], fixed_retrieval, 8, 2, seed=0)
    pd.testing.assert_frame_equal(rows.reset_index(drop=True), again.reset_index(drop=True))


def test_no_request_at_all_is_an_error() -> None:
    frame = pd.DataFrame({"user_id": [1], "video_id": [5], "scenario": ["s0"], "date": [20220101], "is_click": [1]})
    with pytest.raises(ValueError, match="no training requests"):
        candidate_rows(frame, ITEMS, [20220101], fixed_retrieval, 8, 2, seed=0)
